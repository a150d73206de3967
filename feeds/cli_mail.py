"""`feeds send` and `feeds bounces`: the commands that mail the subscribers and read what
comes back.

Commands of the `feeds` group itself, registered there by feeds.cli (as the `subscribers`
group of feeds.cli_subscribers is); they share its session and its one error line. The mail
stack is imported inside each command: a `feeds run` with nothing to send never loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from feeds.session import Failed, PathArg, Progress, Session, now, user_errors


@click.command()
@click.argument("digest_id", required=False)
@click.option(
    "--dry-run", is_flag=True,
    help="Write the messages that would go out as .eml files (see --outbox); connect to "
    "nothing and record no delivery (a changed subscriber list file is taken in, as by any "
    "run).",
)
@click.option(
    "--outbox", type=PathArg(file_okay=False, path_type=Path), default=None,
    help="Folder for --dry-run (default: outbox/ beside the state database, outside output/).",
)
@click.option(
    "--to", "to_address", metavar="ADDRESS", default=None,
    help="Send one test copy of DIGEST_ID (default: the newest) to ADDRESS only, outside "
    "the ledger.",
)
@click.option(
    "--fresh-start", is_flag=True,
    help="The state database was lost: take every published issue as sent and go on.",
)
@click.pass_obj
def send(
    obj: Session,
    digest_id: str | None,
    dry_run: bool,
    outbox: Path | None,
    to_address: str | None,
    fresh_start: bool,
) -> None:
    """Email the newsletters: each digest to each subscriber exactly once.

    Without DIGEST_ID, sends what is due: a new subscriber gets the newest digest, and every
    digest built after that goes to every subscriber. With DIGEST_ID, sends that digest to
    every subscriber who has not had it. A progress bar shows on a terminal, a log line every
    ten seconds otherwise. Exits 1 if any message failed or was deferred to a later run.

    \b
    Example:
        feeds send --dry-run
        feeds send --to me@example.org
        feeds send 2022-08-13
    """
    from feeds.send import Issues, send_due, send_test

    settings = obj.settings
    moment = now()
    box = (outbox or settings.paths.state.parent / "outbox").resolve() if dry_run else None
    with user_errors(settings.paths.state):
        if to_address is not None:
            issues = Issues.published(settings.paths.state)
            result = send_test(
                settings, issues, to_address, now=moment, digest_id=digest_id, outbox=box
            )
            click.echo(f"{'wrote' if box else 'sent'} {to_address}: {result}")
            return
        with Progress(enabled=True) as progress:
            tally = send_due(
                settings, now=moment, digest_id=digest_id, outbox=box, progress=progress,
                log=obj.log, fresh_start=fresh_start,
            )
    for note in tally.notes:
        click.echo(f"warning: {note}", err=True)
    for line in tally.failure_lines(most=1000):
        click.echo(f"error: {line}", err=True)
    where = f" into {box}" if box else ""
    click.echo(f"{tally.summary()}{where}")
    if not tally.ok:
        sys.exit(1)


@click.command()
@click.option(
    "--maildir", type=PathArg(file_okay=False, exists=True, path_type=Path), default=None,
    help="Read the bounces from this Maildir (default: [bounces] maildir).",
)
@click.option("--imap", "use_imap", is_flag=True, help="Read them from [bounces] imap_host.")
@click.pass_obj
def bounces(obj: Session, maildir: Path | None, use_imap: bool) -> None:
    """Read delivery status notifications and stop mailing the addresses that bounce.

    A permanent failure (5.x.x) suppresses the address, temporary ones (4.x.x) count toward
    [bounces] soft_limit. Each notification is matched to the message it is about (VERP token,
    then the quoted Message-ID) and moved to the processed or unmatched folder; other mail is
    left untouched. `feeds run` does this too when [bounces] is set up.

    \b
    Example:
        feeds bounces --maildir /var/mail/bounces
        FEEDS_IMAP_PASSWORD=... feeds bounces --imap
    """
    from feeds.mailbox import process_imap, process_maildir

    settings = obj.settings
    folder = maildir or (None if use_imap else settings.bounces.maildir)
    if folder is None and not settings.bounces.imap_host:
        raise Failed("no bounce mailbox: pass --maildir DIR, or set [bounces] maildir or imap_host")
    with user_errors(settings.paths.state):
        if folder is not None:
            report = process_maildir(settings, folder, log=obj.log)
        else:
            report = process_imap(settings, log=obj.log)
    click.echo(report.summary())
    for address, reason in report.suppressed:
        click.echo(f"suppressed {address}: {reason}")

