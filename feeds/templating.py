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
