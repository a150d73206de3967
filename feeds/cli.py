"""The `feeds` command line: options, help, and one error format for every command.

Each command parses its options, calls one library function and prints what it returns. A
`FeedsError` becomes one line, `error: FILE[:LINE]: message (hint)`, and exit status 1, so cron
mails the failure and never a traceback. Only this layer reads the clock, the environment and
the config file. Heavy libraries are imported inside the commands that need them.

The mail commands (`send`, `bounces`) live in feeds.cli_mail and `feeds subscribers` in
feeds.cli_subscribers; all are registered on the one group below.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from feeds.cli_mail import bounces, send
from feeds.cli_subscribers import subscribers
from feeds.config_file import load_settings
from feeds.errors import FeedsError, display_path
from feeds.session import Failed, PathArg, Progress, Session, now, user_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    # Any path: what cannot be read as a settings file is one `error: FILE: …` line from
    # load_settings, not click's usage text.
    type=PathArg(path_type=Path),
    default=None,
    help="Settings file (default: ./feeds.toml if present, else built-in defaults).",
)
@click.option("-v", "--verbose", count=True, help="Say what is done (repeat for more).")
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True,
    callback=lambda ctx, _param, value: _version(ctx) if value else None,
    help="Show the version, and those of the libraries that render the output.",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """Turn daily ML paper digests into feeds, a static site and a newsletter.

    \b
    Example:
        feeds --config feeds.toml run
    """
    # Present as anything (a folder, a broken link): read, and refused in one line if it
    # cannot be; taken as absent, the built-in defaults would run without a word.
    if config is None and (Path("feeds.toml").exists() or Path("feeds.toml").is_symlink()):
        config = Path("feeds.toml")
    ctx.obj = Session(config, verbose)


def _version(ctx: click.Context) -> None:
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # pragma: no cover - a broken install
            return "missing"

    libraries = ", ".join(f"{name} {of(name)}" for name in ("feedgen", "jinja2", "premailer"))
    click.echo(f"feeds (digest-feeds) {of('digest-feeds')} ({libraries})")
    ctx.exit()


@cli.command()
@click.argument("folder", type=PathArg(file_okay=False, path_type=Path))
def init(folder: Path) -> None:
    """Create a ready site folder: feeds.toml, digests/ with a sample, deploy/ for cron.

    Nothing existing is overwritten.

    \b
    Example:
        feeds init ~/digest && cd ~/digest && feeds run
    """
    from feeds.starter import init as make_folder

    with user_errors():
        written = make_folder(folder)
    where = display_path(folder)
    click.echo(f"wrote {len(written)} files into {where}: feeds.toml, digests/, deploy/")
    click.echo(f"next: set [site] base_url and [newsletter] from in {where}/feeds.toml")
    click.echo(f"then: cd {where} && feeds run   (deploy/ has a systemd timer and a crontab line)")


@cli.command()
@click.argument("file", type=PathArg(dir_okay=False, allow_dash=True, path_type=Path))
@click.pass_obj
def add(obj: Session, file: Path) -> None:
    """Add a digest (a file, or - for standard input) to the input folder under its date.

    It is parsed first: its id, date, entry count and warnings are shown, and a text with no
    entry is refused. The file is saved as YYYY-MM-DD.txt (-2, -3 ... if the day has one),
    never over another.

    \b
    Example:
        xclip -o | feeds add -
    """
    from feeds.starter import add as add_digest
    from feeds.starter import describe

    if str(file) == "-":
        data, source = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            data, source = file.read_bytes(), str(file)
        except OSError as exc:
            raise Failed(f"{display_path(file)}: {exc.strerror}") from exc
    settings = obj.settings
    with user_errors(settings.paths.state):
        added = add_digest(settings, data, source=source, now=now())
    for line in describe(added):
        click.echo(line, err=line.startswith("warning:"))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=PathArg(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the normalized items as JSON.")
@click.pass_obj
def parse(obj: Session, paths: tuple[Path, ...], as_json: bool) -> None:
    """Parse digest files and print their items (a table, or JSON with --json).

    Warnings (warning: file:line: message) go to stderr. A file that cannot be read as a digest
    is reported and skipped, and one with no entry is an error as for `feeds build`; the exit
    status is then 1.

    \b
    Example:
        feeds parse digests/2021-03-30.txt --json
    """
    from feeds.parse import format_table, parse_file

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
            click.echo(
                f"warning: {display_path(digest.source)}:{warning.line}: {warning.message}",
                err=True,
            )
        if not digest.items:
            # What `feeds build` refuses to publish, said the same way here.
            click.echo(f"error: {display_path(digest.source)}:1: no entry recognized: "
                       "not published", err=True)
            failed = True
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
    "--input", "input_dir", type=PathArg(file_okay=False, path_type=Path), default=None,
    help="Folder of digest files (default: [paths] input, digests/).",
)
@click.option(
    "--output", "output_dir", type=PathArg(file_okay=False, path_type=Path), default=None,
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
    from feeds.build import build as run_build

    obj.verbose += verbose
    settings = obj.settings
    paths = settings.paths
    if input_dir is not None:
        paths = replace(paths, input=input_dir.resolve())
    if output_dir is not None:
        from feeds.config_file import check_unpublished

        paths = replace(paths, output=output_dir.resolve())
        with user_errors():
            check_unpublished(paths, settings.source)
    with user_errors(settings.paths.state):
        report = run_build(
            replace(settings, paths=paths), now=now(), log=obj.log, force=force, wait=wait
        )
    for line in report.summary_lines(verbose=obj.verbose > 0):
        click.echo(line, err=line.startswith(("error:", "warning:")))
    if report.failed:
        sys.exit(1)


@cli.command()
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="Seconds to wait for another build holding the lock, then give up.",
)
@click.option(
    "--fresh-start", is_flag=True,
    help="The state database was lost: take every published issue as sent and go on.",
)
@click.pass_obj
def run(obj: Session, wait: float, fresh_start: bool) -> None:
    """Build, then send what is due: the command for cron.

    Quiet when all went well (-v says what was done); on any failure, one `error:` line per
    problem and exit status 1, so cron mails it. Safe to start every few minutes: a run
    finding another one at work leaves it alone, and a run with nothing new to do ends at
    once. Without a confirmed subscriber it only builds.

    \b
    Example:
        */10 * * * * cd /srv/digest && .venv/bin/feeds run
    """
    from feeds.run import run as run_cron

    settings = obj.settings
    with user_errors(settings.paths.state), Progress(enabled=obj.verbose > 0) as progress:
        report = run_cron(
            settings, now=now(), log=obj.log, wait=wait, progress=progress,
            fresh_start=fresh_start,
        )
    if report.build is not None:
        # Its errors are among the run's problems, below; the rest with -v, but what the
        # parser did not understand in a new file always (once).
        for line in report.build.summary_lines(verbose=obj.verbose > 0):
            if not line.startswith("error:"):
                click.echo(line, err=True)
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    if report.problems:
        sys.exit(1)
    obj.log(f"send: {report.summary or 'nothing to send'}")


@cli.command()
@click.option("--smtp", is_flag=True, help="Also connect (and log in) to the SMTP server.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.pass_obj
def check(obj: Session, smtp: bool, strict: bool) -> None:
    """Check the configuration, the subscriber list and the input digests.

    Prints each problem as error|warning: file:line: message and a summary, and exits 1 if
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on.")
@click.pass_obj
def serve(obj: Session, host: str, port: int) -> None:
    """Serve the subscription endpoint ([web] public_url's routes) and the built site.

    Runs the web application through waitress. Put it behind nginx for HTTPS (docs/web.md).

    \b
    Example:
        feeds serve --port 8000
    """
    from feeds.web import serve as run_server

    with user_errors():
        run_server(obj.settings, host=host, port=port)


cli.add_command(send)
cli.add_command(bounces)
cli.add_command(subscribers)


def main() -> None:
    # At exit the interpreter walks every object still alive (the modules of the rendering and
    # sending stacks) with the collector, more than once: 0.07 to 0.13 s of a `feeds run` that
    # sent a newsletter, measured. Frozen, they are left to the end of the process. Nothing is
    # lost: every command closes its own files and connections; the collector would only have
    # freed memory the process is about to give back.
    atexit.register(gc.freeze)
    try:
        cli(prog_name="feeds")
    except OSError as exc:
        # Writing what a command prints failed (`feeds subscribers export > /dev/full`): one
        # line, not a traceback; and nothing more is flushed into the failing stream at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        click.echo(f"error: cannot write the output: {exc.strerror or exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
