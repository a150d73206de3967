"""What a build's output depends on, as comparable strings.

The **stamp** decides whether a build has anything to do at all, from stat calls alone (the
no-op cron run); the **render fingerprint** decides whether a real build renders every
newsletter again. The parser's fingerprint, which keys the parse cache, is `feeds.inputs`'.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import feeds
from feeds import inputs
from feeds.config import Settings

# What rendering uses, besides the templates and the libraries: a change in any of these
# re-renders every newsletter; an edit anywhere else in the package does not. A test checks
# that this lists every module of the package the generators import, but for the settings and
# the errors: settings reach the output through their values (see render_fingerprint).
RENDER_MODULES = (
    "feeds.newsletter",
    "feeds.issue",
    "feeds.message",
    "feeds.links",
    "feeds.identity",
    "feeds.syndicate",
    "feeds.archive",
    "feeds.feedlinks",
    "feeds.search",
    "feeds.entry",
    "feeds.credits",
    "feeds.site",
    "feeds.templating",
    "feeds.catalog",
    "feeds.textutil",
    "feeds.model",
)
# The libraries rendering uses: an upgrade of any re-renders everything.
RENDER_LIBRARIES = ("feedgen", "jinja2", "markupsafe", "premailer", "cssutils", "lxml")
PACKAGE = Path(feeds.__file__).resolve().parent


def render_fingerprint(settings: Settings) -> str:
    """What every rendered file depends on besides the digests: the settings that reach the
    output, the rendering code, the templates and the libraries' versions."""
    parts: list[object] = [
        repr(settings.site),
        repr(settings.newsletter),
        # Of the endpoint's settings, only its address reaches a page or an email.
        settings.web.public_url,
        str(settings.paths.templates),
        inputs.module_fingerprint(RENDER_MODULES),
        _tree_stat(settings.paths.templates),
        _library_versions(),
    ]
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


def _tree_stat(root: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of the files under `root`, bytecode caches and hidden files
    aside."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in names:
            if not name.startswith(".") and not name.endswith(".pyc"):
                path = os.path.join(folder, name)
                st = os.stat(path)
                out.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def _library_versions() -> list[str]:
    """The rendering libraries' installed versions, as the names of their dist-info folders.

    Read from the folder listing rather than `importlib.metadata`, which costs a no-op cron
    run more than all the rest of its work.
    """
    import importlib.util

    folders = set()
    for name in RENDER_LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            folders.add(os.path.dirname(os.path.dirname(spec.origin)))
    prefixes = tuple(f"{name}-" for name in RENDER_LIBRARIES)
    found = []
    for folder in sorted(folders):
        for entry in os.listdir(folder):
            if entry.endswith(".dist-info") and entry.lower().startswith(prefixes):
                found.append(entry.lower())
    return sorted(found)


# The folders of each period's search index that hold its data files (Pagefind's layout).
SEARCH_DATA = ("index", "filter", "fragment")


def stamp(settings: Settings, listing: inputs.Scan) -> str:
    """Everything a build's output depends on, as one comparable string, from stat calls only:
    the input files, the settings, the templates, the package's own files and the rendering
    libraries (an edit anywhere makes the next build a real one; whether it re-renders the
    newsletters is `render_fingerprint`'s to say), and the output folders' mtimes (a folder's
    mtime changes when a file in it is created, removed or renamed, so deleting output files
    by hand makes the next build a real one).
    """
    output_dir = settings.paths.output
    archive = output_dir / "feeds" / "archive"
    try:
        # One folder per feed holds its archive documents (feeds.archive).
        per_feed = sorted(Path(e.path) for e in os.scandir(archive) if e.is_dir())
    except OSError:
        per_feed = []
    # The search index: a folder per period (feeds.search_build), each with its data folders.
    per_period: list[Path] = []
    try:
        for entry in os.scandir(output_dir / "pagefind"):
            if entry.is_dir():
                per_period += [Path(entry.path)] + [Path(entry.path) / sub for sub in SEARCH_DATA]
    except OSError:
        pass
    per_period.sort()
    marks = []
    for folder in (
        output_dir, output_dir / "feeds", output_dir / "newsletter", archive, *per_feed,
        output_dir / "pagefind", *per_period,
    ):
        try:
            marks.append(os.stat(folder).st_mtime_ns)
        except OSError:
            marks.append(-1)
    return repr([
        str(settings.paths.input), str(output_dir), marks, repr(settings.site),
        repr(settings.newsletter), repr(settings.web), str(settings.paths.templates),
        _tree_stat(settings.paths.templates), _tree_stat(PACKAGE), _library_versions(),
        listing,
    ])
