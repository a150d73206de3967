"""What the commands of the command line share: global options, one error line, the clock,
progress.

A `FeedsError` becomes one line, `error: FILE[:LINE]: message (hint)`, and exit status 1, so cron
mails the failure and never a traceback; SQLite's errors on the state database and any other
file error read the same.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from feeds.config import Settings
from feeds.config_file import load_settings
from feeds.errors import FeedsError, display_path

if TYPE_CHECKING:
    from feeds.audience import Audience


class Failed(click.ClickException):
    """A user error, shown as `error: ...` like every other error line of the tool."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class PathArg(click.Path):
    """`click.Path` whose refusals read like every other error line (`error: out.txt: is a
    file; --output needs a folder`, exit status 1), not click's usage text: a path of the
    wrong kind is a problem with a file, not with how the command was typed."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            option = isinstance(param, click.Option) and param.opts
            needs = f"{param.opts[0]} needs" if option and param else "this needs"
            path = Path(value)
            if not path.exists():
                why = "does not exist"
            elif path.is_dir() and not self.dir_okay:
                why = f"is a folder; {needs} a file"
            elif not path.is_dir() and not self.file_okay:
                why = f"is a file; {needs} a folder"
            else:
                why = exc.format_message()
            raise Failed(f"{display_path(value)}: {why}") from None


@contextmanager
def user_errors(state: Path | None = None) -> Iterator[None]:
    """Our errors, and SQLite's on the state database at `state`, as one line each."""
    import sqlite3

    try:
        yield
    except FeedsError as exc:
        lines = [str(exc), *getattr(exc, "failures", ())]
        raise Failed("\nerror: ".join(lines)) from exc
    except sqlite3.Error as exc:
        if state is None:
            raise
        from feeds.state import explain

        raise Failed(str(explain(exc, state))) from exc
    except OSError as exc:
        # The last line of defence: a file the tool could not read or write, in one line.
        where = f"{display_path(exc.filename)}: " if exc.filename else ""
        raise Failed(f"{where}{exc.strerror or exc}") from exc


def now() -> datetime:
    return datetime.now().astimezone()


class Session:
    """The global options of one invocation; settings are read on first use."""

    def __init__(self, config: Path | None, verbose: int) -> None:
        self.config = config
        self.verbose = verbose
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            with user_errors():
                self._settings = load_settings(self.config)
        return self._settings

    def log(self, message: str) -> None:
        if self.verbose:
            click.echo(message, err=True)

    @contextmanager
    def audience(self) -> Iterator[Audience]:
        """The subscribers table, with its errors (and SQLite's) reported as one line."""
        from feeds.audience import Audience

        state = self.settings.paths.state
        with user_errors(state), Audience.open(state) as audience:
            yield audience


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
                self._bar = click.progressbar(length=total, label="sending", file=sys.stderr)
                self._bar.__enter__()
            self._bar.update(done - self._done)
            self._done = done
        elif time.monotonic() >= self._next_line and done < total:
            click.echo(f"sending: {done} of {total} done", err=True)
            self._next_line = time.monotonic() + 10.0

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
