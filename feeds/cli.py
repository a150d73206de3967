"""The `feeds` command: a thin click layer.

Each command parses its options, calls one library function, and turns the project's own
`FeedsError` into a one-line message and a non-zero exit, so cron mails the failure. Only this
layer reads the clock, the environment and the config file. Heavy libraries are imported inside
the commands so that a no-op `feeds build` from cron starts fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from feeds.config import Settings, load_settings
from feeds.errors import FeedsError

F = TypeVar("F", bound=Callable[..., Any])


def _now() -> datetime:
    return datetime.now().astimezone()


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except FeedsError as exc:
        raise click.ClickException(str(exc)) from exc


class _Obj:
    def __init__(self, config: Path | None, verbose: int) -> None:
        self.config = config
        self.verbose = verbose
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            with _user_errors():
                self._settings = load_settings(self.config)
        return self._settings

    def log(self, message: str) -> None:
        if self.verbose:
            click.echo(message, err=True)


def _default_config() -> Path | None:
    candidate = Path("feeds.toml")
    return candidate if candidate.is_file() else None


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
    ctx.obj = _Obj(config if config is not None else _default_config(), verbose)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the normalized items as JSON.")
@click.pass_obj
def parse(obj: _Obj, paths: tuple[Path, ...], as_json: bool) -> None:
    """Parse digest files and print their items (a table, or JSON with --json).

    Warnings (file:line: message) go to stderr. A file that cannot be read as a digest is
    reported and skipped; the exit status is then 1.

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
    help="Seconds to wait for another build or send holding the lock, then give up.",
)
@click.option("--force", is_flag=True, help="Re-render everything, even if nothing changed.")
@click.option("-v", "--verbose", count=True, help="Say what is written (same as feeds -v).")
@click.pass_obj
def build(
    obj: _Obj,
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
    settings = _with_paths(obj.settings, input_dir, output_dir)
    with _user_errors():
        report = run_build(settings, now=_now(), log=obj.log, force=force, wait=wait)
    for line in report.summary_lines(verbose=obj.verbose > 0):
        click.echo(line)
    if report.failed:
        sys.exit(1)


def _with_paths(settings: Settings, input_dir: Path | None, output_dir: Path | None) -> Settings:
    from dataclasses import replace

    paths = settings.paths
    if input_dir is not None:
        paths = replace(paths, input=input_dir.resolve())
    if output_dir is not None:
        paths = replace(paths, output=output_dir.resolve())
    return replace(settings, paths=paths)


def main() -> None:
    cli(prog_name="feeds")


if __name__ == "__main__":  # pragma: no cover
    main()
