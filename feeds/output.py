"""Writing under output/: atomically, and only what changed.

A reader (a web server, a feed fetcher, rsync) must never see half a file, and a build killed at
any moment must leave the previous complete output in place. So every file is written to a
temporary file in the same folder, flushed to disk, and renamed over the old one; a file whose
bytes did not change is not touched at all, which keeps mtimes, ETags and rsync runs quiet.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from feeds.errors import OutputError

# Temporary files start with this prefix; a killed build may leave some, the next one removes them.
TEMP_PREFIX = ".feeds-tmp-"


def write_files(root: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write `files` (POSIX paths relative to `root`) whose bytes differ; return those written.

    Each file is replaced atomically. Durability comes in one step for the whole batch: every
    changed file goes to a temporary file first, all are flushed to disk (one `sync` for a large
    batch instead of an fsync per file, which cost a full build tens of seconds), then all are
    renamed into place and the folders synced, so a power cut leaves old or new files, never
    empty ones.
    """
    pending: list[tuple[str, Path, str]] = []
    mode = _file_mode()
    try:
        for rel in sorted(files):
            data = files[rel]
            target = resolve(root, rel)
            if _same_bytes(target, data):
                continue
            pending.append((rel, target, _write_temporary(target, data, mode)))
        if len(pending) > _SYNC_EACH_UP_TO:
            os.sync()
        else:
            for _rel, _target, tmp in pending:
                _fsync(tmp)
        folders: set[Path] = set()
        for _rel, target, tmp in pending:
            os.replace(tmp, target)
            folders.add(target.parent)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a temporary file beside the real ones.
        for _rel, _target, tmp in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    for folder in sorted(folders):
        _sync_folder(folder)
    return [rel for rel, _target, _tmp in pending]


# Up to this many changed files, each is fsynced; beyond, one `sync` flushes them all. A daily
# build changes a few dozen files: fsyncing those is cheaper than `sync`, which also waits for
# every other process's dirty pages on a shared server.
_SYNC_EACH_UP_TO = 64


def write_new(path: Path, data: bytes) -> None:
    """Write a new file, whole or not at all, readable as a plain `open()` would make it;
    FileExistsError if there is one (never over another). Written to a temporary file beside
    it and linked into place: a disk that fills up midway, or a reader of the folder while it
    is written, never sees half of it."""
    tmp = _write_temporary(path, data, _file_mode())
    try:
        _fsync(tmp)
        os.link(tmp, path)  # FileExistsError, atomically, if the name is taken
    except FileExistsError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror}", path=str(path)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_private(path: Path, data: bytes) -> None:
    """Write one file readable by its owner only (0600), atomically: subscriber addresses and
    personal unsubscribe links are not for other users of the machine."""
    try:
        private_folder(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror}", path=str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write: {exc.strerror}", path=str(path)) from exc
        raise


def private_folder(folder: Path) -> None:
    """Create `folder` and any missing parent readable by its owner only (0700); `mkdir`'s
    own `parents` would create the parents with the default mode."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


# Which state database's record the newsletters under output/ were sent from (its creation
# stamp, `feeds.state.CREATED`): written by a build into an output folder that is its own
# (`belongs_to`), and replaced only by a fresh start. A state database lost and made anew cannot
# take it over, so the loss is seen even when every newsletter file is rewritten after it (a
# template change), which the files' mtimes alone could not tell.
PUBLISHER = ".feeds-state"
# What it says of an output no database here published (found without the record, its
# newsletters older than the database that built it): only a fresh start names one then.
NOBODY = "none"


def publisher(root: Path) -> str | None:
    """The stamp `claim` wrote into `root`; None when there is none (or it cannot be read)."""
    try:
        text = (root / PUBLISHER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    stamp = text.strip()
    return stamp or None


def belongs_to(root: Path, created: str) -> bool:
    """Whether the newsletters published in `root` were sent from the state database created
    at `created`: the one `root` names, or, in an output that names none (published before it
    did, or copied without its hidden files), a database no younger than the oldest newsletter
    there. An output with no newsletter belongs to any."""
    named = publisher(root)
    if named is not None:
        return named == created
    try:
        oldest = min(
            (e.stat().st_mtime for e in os.scandir(root / "newsletter")
             if e.name.endswith(".eml")),
            default=None,
        )
    except OSError:
        return True
    return oldest is None or oldest >= float(created) - 1


def claim(root: Path, stamp: str) -> list[str]:
    """Record `stamp` as the publisher of `root`: by a build, for an output that names none and
    belongs to it (`belongs_to`, decided before it writes anything), or by a fresh start; the
    file written, if any (as `write_files` says)."""
    return write_files(root, {PUBLISHER: f"{stamp}\n".encode()})


def remove_files(root: Path, paths: Iterable[str]) -> list[str]:
    """Delete files (relative to `root`) that are no longer produced; return those removed."""
    removed: list[str] = []
    for rel in sorted(set(paths)):
        target = resolve(root, rel)
        try:
            target.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot remove: {exc.strerror}", path=str(target)) from exc
        removed.append(rel)
    return removed


def check_folder(root: Path) -> None:
    """Refuse an output that is a file: every read and write under it would fail, each naming
    a file inside it. Said by the build, not when the settings are read, so that
    `feeds build --output DIR` still works around it."""
    if root.is_file():
        raise OutputError("[paths] output is a file, not a folder", path=str(root))


def remove_temporaries(root: Path) -> list[Path]:
    """Delete temporary files a killed build left behind (only ours, by their prefix)."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for folder, _dirs, names in os.walk(root):
        for name in names:
            if name.startswith(TEMP_PREFIX):
                path = Path(folder) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def resolve(root: Path, rel: str) -> Path:
    """`root / rel`, refusing paths that would land outside `root` (a generator bug)."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or not pure.parts or any(p in ("", ".", "..") for p in pure.parts):
        raise OutputError(f"refusing to write outside the output folder: {rel!r}")
    return root.joinpath(*pure.parts)


def _same_bytes(target: Path, data: bytes) -> bool:
    try:
        if target.stat().st_size != len(data):
            return False
        return target.read_bytes() == data
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot read: {exc.strerror}", path=str(target)) from exc


def _write_temporary(target: Path, data: bytes, mode: int) -> str:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror}", path=str(target)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # mkstemp creates 0600; published files must be readable by the web server.
            os.fchmod(handle.fileno(), mode)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write: {exc.strerror}", path=str(target)) from exc
        raise
    return tmp


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems cannot sync a folder; the rename is still atomic.
        pass
    finally:
        os.close(fd)


def _file_mode() -> int:
    """What a plain `open(path, "w")` would create: 0666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def existing(root: Path, paths: Iterable[str]) -> set[str]:
    """Which of these relative paths exist: one directory listing per folder, not a stat each."""
    folders: dict[str, set[str]] = {}
    found: set[str] = set()
    for rel in paths:
        folder, _, name = rel.rpartition("/")
        if folder not in folders:
            try:
                folders[folder] = set(os.listdir(root / folder))
            except OSError:
                folders[folder] = set()
        if name in folders[folder]:
            found.add(rel)
    return found
