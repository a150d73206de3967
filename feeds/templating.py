"""The Jinja environment the newsletter and the site render with: one set of options for both,
and compiled templates kept between runs.

Compiling the newsletter's and the site's templates took about 0.1 s of every build, the same
work each time: Jinja's bytecode cache keeps the compiled code in its own per-user folder of the
system's temporary directory (created private, and refused if anyone else owns it). Jinja checks
each entry against the template's path and source. Compiled code also depends on what Jinja
does not check: its own version, the Python that runs it, the environment's options, and the
code of the filters and the finalizer (Jinja computes constant expressions through them when it
compiles). All of that is in the entry's file name, the code as a hash of the source files it
lives in, this one included; so an entry is only ever read by an environment that would have
compiled the same code.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feeds.errors import TemplateError

if TYPE_CHECKING:
    import jinja2
    import jinja2.bccache

# Each template's output escaped: every template, none, or those with these suffixes.
Escaping = bool | tuple[str, ...]


def environment(
    folder: Path,
    *,
    autoescape: Escaping,
    finalize: Callable[[Any], Any] | None = None,
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> jinja2.Environment:
    """An environment loading templates from `folder`: undefined names are errors, block tags
    leave no blank lines, and a template's last newline stays."""
    import jinja2

    options: dict[str, Any] = {
        "undefined": jinja2.StrictUndefined,
        "keep_trailing_newline": True,
        "trim_blocks": True,
        "lstrip_blocks": True,
    }
    filters = dict(filters or {})
    escaping = (
        autoescape
        if isinstance(autoescape, bool)
        else jinja2.select_autoescape(enabled_extensions=autoescape, default=False)
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=escaping,
        finalize=finalize,
        bytecode_cache=_bytecode_cache(options, autoescape, finalize, filters),
        **options,
    )
    env.filters.update(filters)
    return env


def render(env: jinja2.Environment, name: str, **context: Any) -> str:
    """Template `name` of `env` rendered with `context`.

    Templates are the operator's to change, so what goes wrong in one is the operator's to fix:
    a syntax error, a missing template, a name it does not know or an error raised by its own
    code is a TemplateError naming the template's file and line, not a traceback."""
    import jinja2

    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error: {exc.message}", path=exc.filename or name, line=exc.lineno
        ) from exc
    except jinja2.TemplateNotFound as exc:
        raise _not_found(exc, env) from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc, env, name) from exc
    except Exception as exc:
        frame = _template_frame(exc, env)
        if frame is None:
            # Raised by our code, not by the template's: a bug, with its traceback.
            raise
        path, line = frame
        raise TemplateError(
            f"the template failed: {type(exc).__name__}: {exc}", path=path, line=line
        ) from exc


def source(env: jinja2.Environment, name: str) -> str:
    """The text of `name` in `env`'s folder (a stylesheet the templates include)."""
    import jinja2

    assert env.loader is not None
    try:
        text: str = env.loader.get_source(env, name)[0]
    except jinja2.TemplateNotFound as exc:
        raise _not_found(exc, env) from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc, env, name) from exc
    return text


def _not_found(exc: jinja2.TemplateNotFound, env: jinja2.Environment) -> TemplateError:
    return TemplateError(
        f"template {exc.name!r} not found", path=_folder(env),
        hint="copy it from the templates that come with digest-feeds",
    )


def _not_utf8(exc: UnicodeDecodeError, env: jinja2.Environment, name: str) -> TemplateError:
    """The template that is not UTF-8: `name`'s, or one it includes (the error does not say
    which, so the folder is searched for the first file that does not decode)."""
    folder = Path(_folder(env))
    culprit = folder / name
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as found:
            culprit, exc = path, found
            break
        except OSError:
            continue
    return TemplateError(
        f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(culprit),
        hint="save the templates as UTF-8",
    )


def syntax_errors(folder: Path) -> list[TemplateError]:
    """Every template under `folder` that does not parse, and every stylesheet or script
    beside them that is not UTF-8 (for `feeds check`). `init/` holds the files `feeds init`
    fills in, not Jinja templates; `web/static/` is served as it is."""
    import jinja2

    env = jinja2.Environment()
    found: list[TemplateError] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts = path.relative_to(folder).parts
        if parts[0] == "init" or parts[:2] == ("web", "static"):
            continue
        if path.suffix not in (".html", ".txt", ".opml", ".css", ".js"):
            continue
        try:
            text = path.read_bytes().decode("utf-8")
            if path.suffix not in (".css", ".js"):
                env.parse(text, path.name, str(path))
        except jinja2.TemplateSyntaxError as exc:
            found.append(TemplateError(
                f"template syntax error: {exc.message}", path=str(path), line=exc.lineno
            ))
        except UnicodeDecodeError as exc:
            found.append(TemplateError(
                f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path),
                hint="save the templates as UTF-8",
            ))
        except OSError as exc:
            found.append(TemplateError(f"cannot read: {exc.strerror}", path=str(path)))
    return found


def _folder(env: jinja2.Environment) -> str:
    paths = getattr(env.loader, "searchpath", None) or ["templates"]
    return str(paths[0])


def _template_frame(exc: BaseException, env: jinja2.Environment) -> tuple[str, int] | None:
    """Where in a template `exc` was raised: the file and line of the innermost traceback frame
    that is a template's (Jinja rewrites those frames to the template's file and line). None
    when there is none, or when the error was raised in this package's own code (a filter the
    template called): that is a bug, not the template's fault."""
    folders = [f"{Path(p).resolve()}/" for p in getattr(env.loader, "searchpath", [])]
    package = f"{Path(__file__).resolve().parent}/"
    found: tuple[str, int] | None = None
    ours = False
    tb = exc.__traceback__
    while tb is not None:
        filename = str(Path(tb.tb_frame.f_code.co_filename).resolve())
        # (An installed package keeps its templates inside it: a template's frame first.)
        if any(filename.startswith(folder) for folder in folders):
            found, ours = (tb.tb_frame.f_code.co_filename, tb.tb_lineno), False
        else:
            ours = filename.startswith(package)
        tb = tb.tb_next
    return None if ours else found


def _bytecode_cache(
    options: dict[str, Any],
    autoescape: Escaping,
    finalize: Callable[[Any], Any] | None,
    filters: dict[str, Callable[..., Any]],
) -> jinja2.BytecodeCache | None:
    import jinja2

    code = {"": finalize, **filters}
    key = repr(
        (
            jinja2.__version__,
            sys.implementation.cache_tag,
            _source_hash(__file__),
            sorted((name, repr(value)) for name, value in options.items()),
            autoescape,
            sorted(
                (name, getattr(fn, "jinja_pass_arg", None), _source_hash(fn.__code__.co_filename))
                for name, fn in code.items()
                if fn is not None
            ),
            finalize is not None,
        )
    )
    tag = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]

    class Kept(jinja2.FileSystemBytecodeCache):
        """Jinja's cache, except that a cache never fails a render: an entry that cannot be
        read (damaged, or its folder cleaned away by the system) is compiled again, one that
        cannot be written is not kept."""

        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # anything wrong with an entry: compile the template instead
                bucket.reset()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    try:
        return Kept(pattern=f"digest-feeds-{tag}-%s.cache")
    except (OSError, RuntimeError):
        # No private temporary folder to be had: templates are compiled each time, as before.
        return None


@functools.lru_cache(maxsize=32)
def _source_hash(filename: str) -> str:
    try:
        return hashlib.sha256(Path(filename).read_bytes()).hexdigest()
    except OSError:
        # No source file to read (a zipped install): known by its name alone.
        return filename
