"""The click layer of the `feeds` command: options, help, and every command line.

Each command parses its options, calls one library function, and turns the project's own
`FeedsError` into a one-line message and a non-zero exit, so cron mails the failure. `build`
and `run` call the same functions as the fast path in `feeds.cli`, so both give the same
output and exit status.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from feeds.cli import (
    Progress,
    Session,
    build_command,
    default_config,
    now,
    run_command,
)
from feeds.config import load_settings
from feeds.errors import FeedsError


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except FeedsError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Settings file (default: ./feeds.toml if present, else built-in defaults).",
)
@click.option("-v", "--verbose", count=True, help="Say what is done (repeat for more).")
@click.version_option(package_name="digest-feeds")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """Turn daily ML paper digests into feeds, a static site and a newsletter.

    \b
    Example:
        feeds --config feeds.toml run
    """
    ctx.obj = Session(config if config is not None else default_config(), verbose)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the normalized items as JSON.")
@click.pass_obj
def parse(obj: Session, paths: tuple[Path, ...], as_json: bool) -> None:
    """Parse digest files and print their items (a table, or JSON with --json).

    Warnings (file:line: message) go to stderr. A file that cannot be read as a digest is
    reported and skipped; the exit status is then 1.

    \b
    Example:
        feeds parse digests/2021-03-30.txt --json
    """
    from feeds.parse import format_table, parse_file

    with _user_errors():
        tz = obj.settings.site.tz
    digests = []
    failed = False
    for path in _expand(paths):
        try:
            digest = parse_file(path, tz=tz)
        except FeedsError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
            continue
        for warning in digest.warnings:
            click.echo(f"warning: {digest.source}:{warning.line}: {warning.message}", err=True)
        digests.append(digest)
    if as_json:
        payload = {"digests": [d.as_dict() for d in digests]}
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        for digest in digests:
            click.echo(format_table(digest))
    if failed:
        sys.exit(1)


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    """Folders stand for the digest files in them, in name order."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".txt"))
        else:
            out.append(path)
    return out


@cli.command()
@click.option(
    "--input", "input_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of digest files (default: [paths] input, digests/).",
)
@click.option(
    "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder to publish into (default: [paths] output, output/).",
)
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="Seconds to wait for another build holding the lock, then give up.",
)
@click.option("--force", is_flag=True, help="Re-render everything, even if nothing changed.")
@click.option("-v", "--verbose", count=True, help="Say what is written (same as feeds -v).")
@click.pass_obj
def build(
    obj: Session,
    input_dir: Path | None,
    output_dir: Path | None,
    wait: float,
    force: bool,
    verbose: int,
) -> None:
    """Build feeds, site and newsletters into the output folder, incrementally.

    Files whose content did not change are not rewritten; every file is written atomically.
    A digest that fails to parse is reported and the rest is still published; the exit
    status is then 1. With -v, says what was written.

    \b
    Example:
        feeds build --input digests --output output
    """
    obj.verbose += verbose
    code = build_command(
        obj, input_dir=input_dir, output_dir=output_dir, wait=wait, force=force
    )
    if code:
        sys.exit(code)


@cli.command()
@click.argument("digest_id", required=False)
@click.option(
    "--dry-run", is_flag=True,
    help="Write the messages that would go out as .eml files (see --outbox); connect to "
    "nothing and record nothing.",
)
@click.option(
    "--outbox", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder for --dry-run (default: outbox/ beside the state database, outside output/).",
)
@click.option(
    "--to", "to_address", metavar="ADDRESS", default=None,
    help="Send one test copy of DIGEST_ID (default: the newest) to ADDRESS only, outside "
    "the ledger.",
)
@click.pass_obj
def send(
    obj: Session, digest_id: str | None, dry_run: bool, outbox: Path | None, to_address: str | None
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
    from feeds.build import load_context
    from feeds.deliver import send_due, send_test

    with _user_errors():
        settings = obj.settings
    moment = now()
    box = (outbox or settings.paths.state.parent / "outbox").resolve() if dry_run else None
    with _user_errors():
        if to_address is not None:
            result = send_test(
                settings, load_context(settings, now=moment), to_address, now=moment,
                digest_id=digest_id, outbox=box,
            )
            click.echo(f"{'wrote' if box else 'sent'} {to_address}: {result}")
            return
        with Progress(enabled=True) as progress:
            tally = send_due(
                settings, lambda: load_context(settings, now=moment), now=moment,
                digest_id=digest_id, outbox=box, progress=progress, log=obj.log,
            )
    for note in tally.notes:
        click.echo(f"warning: {note}", err=True)
    for failure in tally.failed:
        click.echo(f"failed: {failure.digest_id} {failure.recipient}: {failure.reply}", err=True)
    for failure in tally.deferred:
        click.echo(f"deferred: {failure.digest_id} {failure.recipient}: {failure.reply}", err=True)
    where = f" into {box}" if box else ""
    click.echo(f"{tally.summary()}{where}")
    if not tally.ok:
        sys.exit(1)


@cli.command()
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="Seconds to wait for another build holding the lock, then give up.",
)
@click.pass_obj
def run(obj: Session, wait: float) -> None:
    """Build, then send what is due: the command for cron.

    Quiet when all went well (-v says what was done); on any failure, one line and exit
    status 1, so cron mails it. Safe to start every few minutes: a run finding another one
    at work leaves it alone, and a run with nothing new to do ends at once. Without a
    subscriber list it only builds.

    \b
    Example:
        */10 * * * * cd /srv/digest && .venv/bin/feeds run
    """
    code = run_command(obj, wait=wait)
    if code:
        sys.exit(code)


@cli.command()
@click.option("--smtp", is_flag=True, help="Also connect (and log in) to the SMTP server.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.pass_obj
def check(obj: Session, smtp: bool, strict: bool) -> None:
    """Check the configuration, the subscriber list and the input digests.

    Prints each problem as file:line: error|warning: message and a summary, and exits 1 if
    there is an error (or, with --strict, a warning). Changes nothing.

    \b
    Example:
        feeds check --smtp
    """
    from feeds.check import check as run_check
    from feeds.check import config_finding

    try:
        settings = load_settings(obj.config)
    except FeedsError as exc:
        click.echo(str(config_finding(exc, obj.config)))
        sys.exit(1)
    report = run_check(settings, smtp=smtp)
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(report.summary())
    if report.failed(strict=strict):
        sys.exit(1)
