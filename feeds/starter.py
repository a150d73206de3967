"""`feeds init` and `feeds add`: a new site folder in one command, a digest added in one.

A site folder holds a commented feeds.toml (every key with its default), digests/ with one
sample, and deploy/ with a systemd service and timer and a crontab line that run `feeds run`
there. Nothing is ever overwritten. A digest added is parsed first and saved under its date,
`YYYY-MM-DD.txt` (`-2`, `-3` ... when the day has one already), so that its date never moves.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from feeds.config import DEFAULT_TEMPLATES, Settings
from feeds.errors import ConfigError, ParseError, display_path
from feeds.model import Digest
from feeds.output import write_new

INIT = DEFAULT_TEMPLATES / "init"
DEPLOY = ("digest-feeds.service", "digest-feeds.timer", "crontab")


def samples() -> Path:
    """The sample digests: the package's copy when installed, the checkout's otherwise."""
    installed = Path(__file__).resolve().parent / "samples"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "digests"


def init(folder: Path) -> list[Path]:
    """Create a ready site folder; the files written. Refuses, writing nothing, when any of
    them exists."""
    folder = folder.resolve()
    sample = sorted(samples().glob("????-??-??.txt"))[-1]
    feeds_command = Path(sys.executable).parent / "feeds"
    plan: dict[Path, str] = {
        folder / "feeds.toml": (INIT / "feeds.toml").read_text(encoding="utf-8"),
        folder / "digests" / sample.name: sample.read_text(encoding="utf-8"),
    }
    for name in DEPLOY:
        text = (INIT / name).read_text(encoding="utf-8")
        # A folder may hold a space: quoted for the shell (cron) and in systemd's ExecStart,
        # which both take single quotes; WorkingDirectory= takes the path as it is.
        plan[folder / "deploy" / name] = text.format(
            folder=folder, quoted_folder=shlex.quote(str(folder)),
            feeds=shlex.quote(str(feeds_command)),
        )
    taken = [path for path in plan if path.exists()]
    if taken:
        raise ConfigError(
            "already exists; nothing was written", path=str(taken[0]),
            hint="choose an empty folder, or move the existing files aside",
        )
    for path, text in plan.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create(path, text.encode("utf-8"))
    return list(plan)


@dataclass(frozen=True)
class Added:
    path: Path
    digest: Digest


def add(settings: Settings, data: bytes, *, source: str, now: datetime) -> Added:
    """Parse a digest's text and save it into the input folder under its date, never over a
    file; a text in which no entry is recognized is refused."""
    from feeds.parse import parse_text
    from feeds.textutil import decode

    text = decode(data, path=source)
    tz = settings.site.tz
    digest = parse_text(text, source=source, tz=tz)
    if not digest.items:
        raise ParseError(
            "no entry recognized: not added", path=source,
            hint="a digest has numbered entries such as `1、[LG] Title`",
        )
    day = (digest.date or now).astimezone(tz)
    suffix = "-weekly" if digest.format == "weekly" else ""
    folder = settings.paths.input
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        name = f"{day:%Y-%m-%d}{suffix}{'' if n == 1 else f'-{n}'}.txt"
        try:
            _create(folder / name, data)
        except FileExistsError:
            n += 1
            continue
        # An undated text is dated by its file name from now on, as it was today.
        return Added(folder / name, parse_text(text, source=str(folder / name), tz=tz,
                                               filename=name))


def _create(path: Path, data: bytes) -> None:
    """Write a new file whole or not at all, never over another (FileExistsError): a digest
    half written (a full disk) would be published and mailed by the next run."""
    write_new(path, data)


def describe(added: Added) -> list[str]:
    digest = added.digest
    lines = [
        f"added {display_path(added.path)}: {digest.id}, {digest.date:%Y-%m-%d %H:%M %Z}, "
        f"{len(digest.items)} entries"
        if digest.date else f"added {display_path(added.path)}: {len(digest.items)} entries"
    ]
    lines += [f"warning: {display_path(added.path)}:{w.line}: {w.message}"
              for w in digest.warnings]
    return lines
