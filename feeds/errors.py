"""The project's one error family.

Every error a user can cause carries where it happened (file, line) and a hint for what to do,
so the CLI can print one clear line instead of a traceback and exit non-zero for cron.
"""

from __future__ import annotations

import os


def display_path(path: str | os.PathLike[str]) -> str:
    """A file name as a message shows it: as is when every character is visible and none is a
    space, else quoted and escaped like a Python string (`'a\\nb.txt'`).

    A name is the one part of a message that comes from outside: a line break in it could
    forge a line of its own (`error: ...`) in the mail cron sends, and a bidi override could
    make it read backwards.
    """
    text = os.fspath(path)
    if text and text.isprintable() and " " not in text:
        return text
    return repr(text)


class FeedsError(Exception):
    """Base class: something the user can act on."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in a worker process and raised again in the build: its file, line and hint
        # (every attribute) come along, not the message alone.
        return (self.__class__, (self.message,), self.__dict__)

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            path = display_path(self.path)
            where = f"{path}:{self.line}: " if self.line is not None else f"{path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ParseError(FeedsError):
    """A digest file that cannot be read as a digest at all (empty, binary, undecodable)."""


class ConfigError(FeedsError):
    """feeds.toml, the environment or the subscriber list is wrong."""


class TemplateError(FeedsError):
    """A template of `[paths] templates` that cannot be loaded or rendered."""


class StateError(FeedsError):
    """The state database is unusable or locked by another run."""


class LockedError(StateError):
    """Another build or send holds the lock."""

    # Seconds the other process has held it, when known.
    held_for: float = 0.0


class OutputError(FeedsError):
    """A file under output/ could not be written."""


class DeliveryError(FeedsError):
    """Sending failed in a way that stops the run (not a per-recipient failure)."""

    # What the send did before it stopped that cron must hear of, one line each (`ADDRESS:
    # reply`): a 550 just before the relay went away still suppressed its address.
    failures: tuple[str, ...] = ()


class Unsealed(Exception):
    """Not an error: a build of the recent digests alone (`feeds.seal`) met a change that
    reaches the earlier ones, and is done again over every digest."""
