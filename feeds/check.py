"""`feeds check`: everything a run depends on, checked without changing anything.

The configuration (loaded and validated by feeds.config_file before this runs), what sending needs
(signing secret, password, sender), the subscriber list row by row, and every input digest
through the parser. Each finding names its file and line. Errors are what would make a run fail
or lose something; warnings are what a run works around (a duplicate subscriber, a line the
parser did not understand).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from feeds.config import PASSWORD_ENV, Settings
from feeds.errors import FeedsError, display_path

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    where: str
    message: str

    def __str__(self) -> str:
        # The one format of every error line the tool prints: `error: FILE[:LINE]: message`.
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    subscribers: int = 0
    digests: int = 0
    smtp_reply: str | None = None
    # The state database's size and what the ledger holds, when there is one.
    state: str | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def failed(self, *, strict: bool = False) -> bool:
        return bool(self.errors or (strict and self.warnings))

    def summary(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        counts = f"{n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}"
        smtp = f", SMTP {self.smtp_reply}" if self.smtp_reply else ""
        state = f"\nstate: {self.state}" if self.state else ""
        return (
            f"checked the configuration, {self.subscribers} subscribers and "
            f"{self.digests} digests{smtp}: {counts}{state}"
        )


def check(settings: Settings, *, smtp: bool = False) -> CheckReport:
    report = CheckReport()
    _check_sending(settings, report)
    categories = _check_digests(settings, report)
    _check_subscribers(settings, report, categories)
    _check_templates(settings, report)
    if smtp and not report.errors:
        _check_smtp(settings, report)
    _check_state(settings, report)
    return report


def _check_state(settings: Settings, report: CheckReport) -> None:
    """How big the state database is (read-only: nothing is created or migrated)."""
    import sqlite3

    from feeds.retention import state_size

    try:
        size = state_size(settings.paths.state)
    except sqlite3.Error as exc:
        report.findings.append(
            Finding("error", display_path(settings.paths.state), f"cannot be read: {exc}")
        )
        return
    report.state = size.describe() if size is not None else None


def _where(settings: Settings) -> str:
    return display_path(settings.source) if settings.source else "(built-in settings)"


def _check_sending(settings: Settings, report: CheckReport) -> None:
    from feeds.addressing import check_sending

    try:
        check_sending(settings)
    except FeedsError as exc:
        where = display_path(exc.path) if exc.path else _where(settings)
        report.findings.append(Finding("error", where, _text(exc)))
    if settings.smtp.username and not settings.smtp.password:
        report.findings.append(
            Finding(
                "error",
                _where(settings),
                f"[smtp] username is set but {PASSWORD_ENV} is not in the environment",
            )
        )


def _check_digests(settings: Settings, report: CheckReport) -> set[str]:
    """Parse every input digest the build would read; returns the category codes seen."""
    from feeds.inputs import scan
    from feeds.parse import parse_file

    folder = settings.paths.input
    categories: set[str] = set()
    try:
        found = scan(folder)
    except FeedsError as exc:
        report.findings.append(Finding("error", display_path(folder), exc.message))
        return categories
    for path, why in found.refused:
        report.findings.append(Finding("error", display_path(path), why))
    for name, _, _ in found.files:
        path = folder / name
        try:
            digest = parse_file(path, tz=settings.site.tz)
        except FeedsError as exc:
            report.findings.append(Finding("error", _at(display_path(path), exc.line), _text(exc)))
            continue
        report.digests += 1
        categories.update(i.category for i in digest.items if i.category)
        for warning in digest.warnings:
            report.findings.append(
                Finding("warning", f"{display_path(path)}:{warning.line}", warning.message)
            )
        if not digest.items:
            report.findings.append(
                Finding("error", f"{display_path(path)}:1", "no entry recognized: not published")
            )
    return categories


def _check_subscribers(settings: Settings, report: CheckReport, categories: set[str]) -> None:
    from feeds.subscribers import load_subscribers

    path = settings.paths.subscribers
    if not path.exists():
        report.findings.append(
            Finding(
                "warning", display_path(path),
                "no subscriber list file: only subscribers in the state database get mail",
            )
        )
        return
    try:
        people = load_subscribers(path)
    except FeedsError as exc:
        report.findings.append(Finding("error", display_path(path), _text(exc)))
        return
    report.subscribers = len(people.subscribers)
    for problem in people.problems:
        report.findings.append(
            Finding(problem.severity, f"{display_path(path)}:{problem.line}", problem.message)
        )
    if not categories:
        return
    known = {c.casefold() for c in categories}
    for person in people.subscribers:
        unknown = sorted(c for c in person.categories if c.casefold() not in known)
        if unknown:
            report.findings.append(
                Finding(
                    "warning",
                    f"{display_path(path)}:{person.line}",
                    f"category {', '.join(unknown)} appears in no digest "
                    f"(known: {' '.join(sorted(categories))})",
                )
            )


def _check_templates(settings: Settings, report: CheckReport) -> None:
    """Templates that do not parse: every build would fail on them."""
    from feeds.templating import syntax_errors

    for exc in syntax_errors(settings.paths.templates):
        where = _at(display_path(exc.path or settings.paths.templates), exc.line)
        report.findings.append(Finding("error", where, _text(exc)))


def _check_smtp(settings: Settings, report: CheckReport) -> None:
    from feeds.transport import Transport

    transport = Transport(settings.smtp, retry_delay=0.5)
    try:
        report.smtp_reply = transport.check()
    except FeedsError as exc:
        where = f"[smtp] {settings.smtp.host}:{settings.smtp.port}"
        text = _text(exc)
        report.findings.append(Finding("error", where, text.removeprefix(f"{where}: ")))
    finally:
        transport.close()


def _at(path: str, line: int | None) -> str:
    return f"{path}:{line}" if line is not None else path


def _text(exc: FeedsError) -> str:
    return exc.message + (f" ({exc.hint})" if exc.hint else "")


def config_finding(exc: FeedsError, path: Path | None) -> Finding:
    """A configuration that does not load: the one finding `feeds check` can then report."""
    named = exc.path or path
    where = display_path(named) if named is not None else "(built-in settings)"
    return Finding("error", _at(where, exc.line), _text(exc))
