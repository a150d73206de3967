"""The `feeds` command: its entry point, and what `build` and `run` do.

cron starts `feeds run` every few minutes and nearly always finds nothing to do, so start-up is
most of what such a run costs, and click alone takes longer to import than the no-op build
takes to decide. `main()` therefore recognizes the few exact argument shapes cron uses (the
global `--config`/`-c` and `-v` options, then `build` or `run` with no options of their own)
and calls the same functions the click commands call, without importing click. Any other
command line goes to the click layer in `feeds.commands`, unchanged.

Only this layer reads the clock, the environment and the config file. Heavy libraries are
imported inside the functions, where a no-op run does not reach them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feeds.config import Settings, load_settings
from feeds.errors import FeedsError

if TYPE_CHECKING:
    from feeds.commands import cli as cli

# The shared functions below report errors the way click reports a `ClickException`.
_ERROR_PREFIX = "Error: "


def echo(message: str = "", *, err: bool = False) -> None:
    """One line to stdout (or stderr), flushed: cron's mail keeps the order of both streams."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{message}\n")
    stream.flush()


def fail(exc: FeedsError) -> int:
    """Report a user error in one line, as click does, and give the exit status."""
    echo(f"{_ERROR_PREFIX}{exc}", err=True)
    return 1


def now() -> datetime:
    return datetime.now().astimezone()


def default_config() -> Path | None:
    candidate = Path("feeds.toml")
    return candidate if candidate.is_file() else None


class Session:
    """The global options of one invocation; settings are read on first use."""

    def __init__(self, config: Path | None, verbose: int) -> None:
        self.config = config
        self.verbose = verbose
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """Raises `FeedsError` if the config file is unreadable or wrong."""
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    def log(self, message: str) -> None:
        if self.verbose:
            echo(message, err=True)


def build_command(
    session: Session,
    *,
    input_dir: Path | None = None,
    output_dir: Path | None = None,
    wait: float = 0.0,
    force: bool = False,
) -> int:
    """`feeds build`: returns the exit status."""
    try:
        from feeds.build import build

        settings = with_paths(session.settings, input_dir, output_dir)
        report = build(settings, now=now(), log=session.log, force=force, wait=wait)
    except FeedsError as exc:
        return fail(exc)
    for line in report.summary_lines(verbose=session.verbose > 0):
        echo(line)
    return 1 if report.failed else 0


def with_paths(settings: Settings, input_dir: Path | None, output_dir: Path | None) -> Settings:
    from dataclasses import replace

    paths = settings.paths
    if input_dir is not None:
        paths = replace(paths, input=input_dir.resolve())
    if output_dir is not None:
        paths = replace(paths, output=output_dir.resolve())
    return replace(settings, paths=paths)


def run_command(session: Session, *, wait: float = 0.0) -> int:
    """`feeds run`: build, then send what is due; returns the exit status."""
    from feeds.build import build
    from feeds.errors import LockedError

    try:
        settings = session.settings
    except FeedsError as exc:
        return fail(exc)
    moment = now()
    problems: list[str] = []
    try:
        report = build(settings, now=moment, log=session.log, wait=wait)
    except LockedError as exc:
        session.log(f"skipped: {exc}")
        return 0
    except FeedsError as exc:
        echo(f"feeds run: build failed: {exc}", err=True)
        return 1
    if session.verbose:
        for line in report.summary_lines(verbose=True):
            echo(line, err=True)
    if report.failed:
        more = f" and {len(report.errors) - 1} more (-v)" if len(report.errors) > 1 else ""
        problems.append(f"build: {report.errors[0]}{more}")
    summary = "nothing to send"
    # The delivery stack (smtplib, email, ssl) is imported only when there is a list to send to.
    if settings.paths.subscribers.exists():
        from feeds.build import load_context
        from feeds.deliver import send_due

        try:
            with Progress(enabled=session.verbose > 0) as progress:
                tally = send_due(
                    settings, lambda: load_context(settings, now=moment), now=moment,
                    progress=progress, log=session.log,
                )
        except LockedError as exc:
            session.log(f"send skipped: {exc}")
        except FeedsError as exc:
            problems.append(f"send: {exc}")
        else:
            summary = tally.summary()
            for note in tally.notes:
                session.log(f"warning: {note}")
            if not tally.ok:
                problems.append(f"send: {summary}")
    else:
        session.log(f"no subscriber list at {settings.paths.subscribers}: nothing sent")
    if problems:
        echo("feeds run failed: " + "; ".join(problems), err=True)
        return 1
    session.log(f"send: {summary}")
    return 0


class Progress:
    """A progress bar on a terminal, a log line every ten seconds otherwise (cron's mail)."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._tty = sys.stderr.isatty()
        self._bar: Any = None
        self._done = 0
        self._next_line = 0.0

    def __enter__(self) -> Progress:
        import time

        self._next_line = time.monotonic() + 10.0
        return self

    def __call__(self, done: int, total: int) -> None:
        import time

        if not self._enabled or total <= 0:
            return
        if self._tty:
            if self._bar is None:
                import click

                self._bar = click.progressbar(length=total, label="sending", file=sys.stderr)
                self._bar.__enter__()
            self._bar.update(done - self._done)
            self._done = done
        elif time.monotonic() >= self._next_line and done < total:
            echo(f"sending: {done} of {total} done", err=True)
            self._next_line = time.monotonic() + 10.0

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def fast_args(argv: Sequence[str]) -> tuple[str, Path | None, int] | None:
    """(command, config, verbosity) if `argv` is one of cron's plain shapes, else None.

    Accepted: any order of `--config PATH`, `--config=PATH`, `-c PATH` (once) and `-v`, `-vv`,
    `--verbose`; then `build` (optionally followed by its own `-v` flags, which mean the same)
    or `run`, and nothing more. Whatever else, or anything click would judge differently (a
    config path that is a folder, an empty one), is None: click parses it.
    """
    words = list(argv)
    config: str | None = None
    verbose = 0
    while words and words[0] not in ("build", "run"):
        word = words.pop(0)
        flags = _verbosity(word)
        if flags:
            verbose += flags
            continue
        if word.startswith("--config="):
            value: str | None = word.removeprefix("--config=")
        elif word in ("--config", "-c") and words:
            value = words.pop(0)
        else:
            return None
        if config is not None or not value or value.startswith("-"):
            return None
        config = value
    if not words:
        return None
    command, rest = words[0], words[1:]
    for word in rest:
        flags = _verbosity(word) if command == "build" else 0
        if not flags:
            return None
        verbose += flags
    path = Path(config) if config is not None else None
    if path is not None and path.is_dir():
        return None
    return command, path, verbose


def _verbosity(word: str) -> int:
    """How many times `word` says -v: `--verbose`, `-v`, `-vv`, ...; 0 if it is something else."""
    if word == "--verbose":
        return 1
    if word.startswith("-") and set(word[1:]) == {"v"}:
        return len(word) - 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    shape = fast_args(args)
    if shape is None:
        from feeds.commands import cli

        cli(args, prog_name="feeds")
        return
    command, config, verbose = shape
    session = Session(config if config is not None else default_config(), verbose)
    try:
        code = build_command(session) if command == "build" else run_command(session)
    except KeyboardInterrupt:
        # As click does: close the terminal's ^C echo, say so, exit 1.
        echo(err=True)
        echo("Aborted!", err=True)
        code = 1
    except BrokenPipeError:
        # As click does (`feeds -v build | head`): exit 1 quietly. Python would flush stdout
        # again at exit and print a second error, so stdout now goes nowhere.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


def __getattr__(name: str) -> Any:
    # `feeds.cli.cli`, the click group, is built only when asked for.
    if name == "cli":
        from feeds.commands import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
