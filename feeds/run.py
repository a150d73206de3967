"""`feeds run`, the cron entry point: build what changed, then send what is due.

Quiet when all went well, one `error:` line per problem otherwise, so cron mails exactly the
problems. A run that finds nothing new costs a stat of the inputs and one look at the ledger:
the sending stack (smtplib, the newsletter renderer) is imported only when something is due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from feeds.audience import Audience
from feeds.build import BuildReport, build
from feeds.config import Settings
from feeds.errors import ConfigError, FeedsError, LockedError
from feeds.ledger import due_mark, nothing_due
from feeds.roster import sync_list

Log = Callable[[str], None]
# A run may hold the lock for its send's time limit and a build; this long past that, a run that
# finds the lock taken reports its holder as stuck.
STUCK_AFTER = 900.0
ProgressFn = Callable[[int, int], None]


@dataclass
class RunReport:
    build: BuildReport | None = None
    # One line each, `FILE[:LINE]: message` or `ADDRESS: reply`, without the `error: ` prefix:
    # what cron must hear about.
    problems: list[str] = field(default_factory=list)
    # What the send did; None when it did not start.
    summary: str | None = None


def run(
    settings: Settings,
    *,
    now: datetime,
    log: Log,
    wait: float = 0.0,
    progress: ProgressFn | None = None,
    fresh_start: bool = False,
) -> RunReport:
    """Build, then send what is due. A run that finds another build at work leaves it alone;
    one that finds another send at work leaves the sending to it."""
    report = RunReport()
    try:
        report.build = build(settings, now=now, log=log, wait=wait)
    except LockedError as exc:
        _taken(exc, settings, report, log, "skipped")
        return report
    except FeedsError as exc:
        report.problems.append(str(exc))
        return report
    report.problems += report.build.errors
    paths = settings.paths
    if settings.bounces.maildir or settings.bounces.imap_host:
        # Bounces first: an address that bounced since the last run is not mailed again.
        from feeds.mailbox import process_imap, process_maildir

        try:
            if settings.bounces.maildir:
                found = process_maildir(settings, settings.bounces.maildir, log=log)
            else:
                found = process_imap(settings, log=log)
        except FeedsError as exc:
            report.problems.append(str(exc))
        else:
            for address, reason in found.suppressed:
                report.problems.append(f"{address}: suppressed by a bounce: {reason}")
    try:
        with Audience.open(paths.state) as audience:
            audience.forget_unconfirmed()
            try:
                taken = sync_list(audience, paths.subscribers)
            except ConfigError as exc:
                # It changed nobody: the subscribers as they stand still get what is due.
                report.problems.append(str(exc))
                taken = None
            for note in taken.notes(paths.subscribers) if taken else []:
                log(f"warning: {note}")
            if audience.count("confirmed") == 0:
                log("no confirmed subscriber: nothing sent")
                return report
            mark = due_mark(paths.state, audience.signature())
    except FeedsError as exc:
        report.problems.append(str(exc))
        return report
    if nothing_due(paths.state, mark):
        log("nothing new to send")
        return report
    from feeds.send import send_due

    try:
        tally = send_due(
            settings, now=now, progress=progress, log=log, fresh_start=fresh_start
        )
    except LockedError as exc:
        _taken(exc, settings, report, log, "send skipped")
        return report
    except FeedsError as exc:
        report.problems.append(str(exc))
        report.problems += [p for p in getattr(exc, "failures", ()) if p not in report.problems]
        return report
    report.summary = tally.summary()
    for note in tally.notes:
        log(f"warning: {note}")
    if not tally.ok:
        # The list's error was reported above already, when it was first met.
        report.problems += [p for p in tally.failure_lines() if p not in report.problems]
        if tally.out_of_time is not None:
            report.problems.append(tally.summary())
    return report


def _taken(
    exc: LockedError, settings: Settings, report: RunReport, log: Log, skipped: str
) -> None:
    """Another run holds a lock this one needs: leave the work to it, quietly, unless it has
    held the lock for longer than any run may take. Runs that keep finding the lock taken say
    nothing, so a stuck one must be heard (cron mails what a run prints)."""
    if exc.held_for > settings.smtp.send_time_limit + STUCK_AFTER:
        minutes = exc.held_for / 60
        report.problems.append(f"{exc}; held for {minutes:.0f} minutes: is it stuck?")
    else:
        log(f"{skipped}: {exc}")
