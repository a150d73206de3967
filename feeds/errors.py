"""The project's one error family.

Every error a user can cause carries where it happened (file, line) and a hint for what to do,
so the CLI can print one clear line instead of a traceback and exit non-zero for cron.
"""

from __future__ import annotations


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

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ParseError(FeedsError):
    """A digest file that cannot be read as a digest at all (empty, binary, undecodable)."""


class ConfigError(FeedsError):
    """feeds.toml, the environment or the subscriber list is wrong."""


class StateError(FeedsError):
    """The state database is unusable or locked by another run."""


class LockedError(StateError):
    """Another build or send holds the lock."""


class OutputError(FeedsError):
    """A file under output/ could not be written."""


class DeliveryError(FeedsError):
    """Sending failed in a way that stops the run (not a per-recipient failure)."""
