"""The Jinja environment the newsletter and the site render with: one set of options for both,
and compiled templates kept between runs.

Compiling the newsletter's and the site's templates took about 0.1 s of every build, the same
work each time: Jinja's bytecode cache keeps the compiled code in its own per-user folder of the
system's temporary directory (created private, and refused if anyone else owns it). Jinja checks
each entry against the template's path and source; what it does not check, its own version and
the options below, is in the entry's file name, so a cache made by other code is never read.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

# Bumped by hand if the environment changes in a way the options below do not show.
_CACHE_VERSION = 1


def environment(
    folder: Path,
    *,
    autoescape: bool | Callable[[str | None], bool],
    finalize: Callable[[Any], Any] | None = None,
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
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=autoescape,
        finalize=finalize,
        bytecode_cache=_bytecode_cache(options, autoescape, finalize),
        **options,
    )
    return env


def _bytecode_cache(
    options: dict[str, Any],
    autoescape: bool | Callable[[str | None], bool],
    finalize: Callable[[Any], Any] | None,
) -> jinja2.BytecodeCache | None:
    import jinja2

    # The escaping rule and whether there is a finalizer are compiled in: a rule that is a
    # function is named by its answers for the suffixes we render.
    escaping = [
        autoescape(name) if callable(autoescape) else autoescape
        for name in ("x.html", "x.txt", "x.opml", None)
    ]
    key = repr(
        (_CACHE_VERSION, jinja2.__version__, sorted((k, repr(v)) for k, v in options.items()),
         escaping, finalize is not None)
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
