"""The `feeds` command line: help for every command, and `run`/`send` as cron sees them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT, SAMPLE_DIGESTS
from smtp_fixtures import SECRET, SmtpServer, smtp_server

from feeds.build import build
from feeds.cli import cli, fast_args
from feeds.config import load_settings

__all__ = ["smtp_server"]
ENV = {"FEEDS_UNSUBSCRIBE_SECRET": SECRET, "FEEDS_SMTP_PASSWORD": ""}


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])

    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    command = cli.commands[name]
    assert isinstance(command, click.Command) and command.help
    assert all(p.help for p in command.params if isinstance(p, click.Option))


def test_the_group_has_help_with_an_example() -> None:
    result = CliRunner().invoke(cli, ["--help"])

    assert result.exit_code == 0
    assert "Example:" in result.output
    assert {"send", "run", "check"} <= set(cli.commands)


@pytest.fixture
def project(tmp_path: Path, smtp_server: SmtpServer) -> Path:
    (tmp_path / "digests").mkdir()
    for name in ("2021-06-17.txt", "2022-08-13.txt"):
        shutil.copy(SAMPLE_DIGESTS / name, tmp_path / "digests" / name)
    (tmp_path / "subscribers.csv").write_text(
        "email,name,categories\nada@example.org,Ada,\nalan@example.com,Alan,CV\n",
        encoding="utf-8",
    )
    (tmp_path / "feeds.toml").write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
        'max_attempts = 1\n'
        '[newsletter]\nunsubscribe_url = "https://digest.example.org/u?token={token}"\n',
        encoding="utf-8",
    )
    return tmp_path


def _feeds(project: Path, *args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["--config", str(project / "feeds.toml"), *args], env=ENV)


def test_run_builds_and_sends_quietly_then_finds_nothing_to_do(
    project: Path, smtp_server: SmtpServer
) -> None:
    first = _feeds(project, "run")
    second = _feeds(project, "run")

    assert (first.exit_code, first.output) == (0, "")
    assert (second.exit_code, second.output) == (0, "")
    assert (project / "output" / "index.html").exists()
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "alan@example.com": 1}


def test_run_says_what_it_did_with_v(project: Path) -> None:
    result = _feeds(project, "-v", "run")

    assert result.exit_code == 0
    assert "send: sent 2" in result.output


def test_run_reports_a_failure_in_one_line_and_exits_1(
    project: Path, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.rejected = {"alan@example.com"}

    result = _feeds(project, "run")

    assert result.exit_code == 1
    assert result.output == "feeds run failed: send: sent 1, 1 failed permanently\n"


def test_run_without_a_subscriber_list_only_builds(project: Path, smtp_server: SmtpServer) -> None:
    (project / "subscribers.csv").unlink()

    result = _feeds(project, "run")

    assert (result.exit_code, result.output) == (0, "")
    assert (project / "output" / "index.html").exists()
    assert smtp_server.handler.received == []


def test_send_dry_run_writes_the_outbox_outside_output(
    project: Path, smtp_server: SmtpServer
) -> None:
    assert _feeds(project, "build").exit_code == 0

    result = _feeds(project, "send", "--dry-run")

    assert result.exit_code == 0, result.output
    outbox = project / "state" / "outbox" / "2022-08-13"
    assert sorted(p.name for p in outbox.iterdir()) == [
        "ada@example.org.eml", "alan@example.com.eml"
    ]
    assert f"wrote 2 into {project / 'state' / 'outbox'}" in result.output
    assert smtp_server.handler.received == []


def test_send_to_one_address_sends_a_test_copy(project: Path, smtp_server: SmtpServer) -> None:
    assert _feeds(project, "build").exit_code == 0

    result = _feeds(project, "send", "--to", "me@example.com", "2021-06-17")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("sent me@example.com: 250")
    assert smtp_server.handler.copies() == {"me@example.com": 1}


def test_send_reports_skipped_subscriber_rows(project: Path) -> None:
    assert _feeds(project, "build").exit_code == 0
    with (project / "subscribers.csv").open("a", encoding="utf-8") as f:
        f.write("broken,,\n")

    result = _feeds(project, "send")

    assert result.exit_code == 0
    assert f"warning: {project / 'subscribers.csv'}:4: error: invalid email" in result.output
    assert "sent 2" in result.output


def test_send_without_its_secret_explains_what_to_set(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project / "feeds.toml"), "send"], env={
        "FEEDS_UNSUBSCRIBE_SECRET": ""
    })

    assert result.exit_code == 1
    assert "FEEDS_UNSUBSCRIBE_SECRET" in result.output


def test_run_still_sends_when_one_digest_is_bad_and_says_so_in_one_line(
    project: Path, smtp_server: SmtpServer
) -> None:
    (project / "digests" / "2022-09-01.txt").write_bytes(b"")

    result = _feeds(project, "run")

    assert result.exit_code == 1
    assert result.output.startswith("feeds run failed: build: ")
    assert "2022-09-01.txt" in result.output and result.output.count("\n") == 1
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "alan@example.com": 1}


# The cron fast path (feeds.cli.main without click) against click's own parsing of the same line.

CLICK_MAIN = "import sys; from feeds.commands import cli; cli(sys.argv[1:], prog_name='feeds')"
DONE_IN = re.compile(r"\d+\.\d\d s")


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: str
    stderr: str


def _digest_folder(root: Path) -> Path:
    """A fresh build folder at `root`: two sample digests and a feeds.toml, nothing built."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "digests").mkdir(parents=True)
    for name in ("2021-06-17.txt", "2022-08-13.txt"):
        shutil.copy(SAMPLE_DIGESTS / name, root / "digests" / name)
    (root / "feeds.toml").write_text(
        f'[paths]\ntemplates = "{ROOT / "templates"}"\n', encoding="utf-8"
    )
    return root


def _built(root: Path) -> None:
    settings = load_settings(root / "feeds.toml")
    build(settings, now=datetime.now().astimezone(), log=lambda message: None)


def _bad_digest(root: Path) -> None:
    (root / "digests" / "2022-09-01.txt").write_bytes(b"")


def _no_input(root: Path) -> None:
    shutil.rmtree(root / "digests")


def _feeds_process(root: Path, how: list[str], args: list[str]) -> Outcome:
    done = subprocess.run(
        [sys.executable, *how, *args], cwd=root, capture_output=True, text=True, timeout=120
    )
    # Build times differ from run to run; everything else must not.
    return Outcome(
        done.returncode, DONE_IN.sub("N s", done.stdout), DONE_IN.sub("N s", done.stderr)
    )


def _both_ways(root: Path, args: list[str], prepare: Callable[[Path], None]) -> list[Outcome]:
    outcomes = []
    for how in (["-m", "feeds.cli"], ["-c", CLICK_MAIN]):
        _digest_folder(root)
        prepare(root)
        outcomes.append(_feeds_process(root, how, args))
    return outcomes


def _nothing(root: Path) -> None:
    pass


# args, what to do to the fresh folder first, the exit status and how stderr starts.
CASES: dict[str, tuple[list[str], Callable[[Path], None], int, str]] = {
    "fresh build": (["--config", "feeds.toml", "build"], _nothing, 0, ""),
    "fresh build, verbose": (["-v", "--config=feeds.toml", "build", "-v"], _nothing, 0, ""),
    "no-op build": (["-c", "feeds.toml", "build"], _built, 0, ""),
    "no-op build, verbose, ./feeds.toml": (["--verbose", "build"], _built, 0, ""),
    "bad digest build": (["build"], _bad_digest, 1, ""),
    "bad digest run": (["-c", "feeds.toml", "run"], _bad_digest, 1, "feeds run failed: build: "),
    "run without subscribers": (["run"], _nothing, 0, ""),
    "no-op run, verbose": (["-vv", "run"], _built, 0, "nothing changed: 2 digests"),
    "missing input folder, build": (["build"], _no_input, 1, "Error: "),
    "missing input folder, run": (["run"], _no_input, 1, "feeds run: build failed: "),
    "missing config file": (
        ["--config", "absent.toml", "build"], _nothing, 1, "Error: absent.toml: cannot read"
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fast_path_prints_and_exits_exactly_as_click_does(tmp_path: Path, case: str) -> None:
    args, prepare, status, stderr_start = CASES[case]
    assert fast_args(args) is not None

    fast, slow = _both_ways(tmp_path / "site", args, prepare)

    assert fast == slow
    assert fast.status == status
    assert fast.stderr.startswith(stderr_start)


def test_a_reader_that_goes_away_ends_both_ways_alike(tmp_path: Path) -> None:
    outcomes = []
    for how in (["-m", "feeds.cli"], ["-c", CLICK_MAIN]):
        root = _digest_folder(tmp_path / "site")
        reader, writer = os.pipe()
        os.close(reader)
        try:
            done = subprocess.run(
                [sys.executable, *how, "-v", "build"], cwd=root, stdout=writer,
                stderr=subprocess.PIPE, text=True, timeout=120,
            )
        finally:
            os.close(writer)
        outcomes.append((done.returncode, done.stderr))

    assert outcomes[0] == outcomes[1] == (1, "")


@pytest.mark.parametrize("command", ["build", "run"])
def test_a_locked_state_is_reported_the_same_both_ways(tmp_path: Path, command: str) -> None:
    root = _digest_folder(tmp_path / "site")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path; from feeds import state\n"
         f"with state.locked(Path({str(root / 'state' / 'feeds.sqlite3')!r})):\n"
         "    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        args = ["-v", "-c", "feeds.toml", command]
        fast = _feeds_process(root, ["-m", "feeds.cli"], args)
        slow = _feeds_process(root, ["-c", CLICK_MAIN], args)
    finally:
        holder.kill()
        holder.communicate()

    assert fast == slow
    assert "another feeds build is running" in fast.stderr
    assert f"(process {holder.pid})" in fast.stderr
    if command == "build":
        assert (fast.status, fast.stderr[:7]) == (1, "Error: ")
    else:
        assert (fast.status, fast.stderr[:9]) == (0, "skipped: ")


@pytest.mark.parametrize("command", ["build", "run"])
def test_a_no_op_from_cron_imports_neither_click_nor_the_mail_stack(
    tmp_path: Path, command: str
) -> None:
    root = _digest_folder(tmp_path / "site")
    _built(root)
    probe = (
        "import sys\nfrom feeds.cli import main\n"
        f"sys.argv = ['feeds', '-c', 'feeds.toml', {command!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    status = exit.code\n"
        "print(status, sorted(m for m in ('click', 'feeds.deliver', 'jinja2') if m in sys.modules))"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120
    )

    assert (done.stdout, done.stderr) == ("0 []\n", "")


@pytest.mark.parametrize(
    "args",
    [
        ["build", "--force"], ["build", "--wait", "5"], ["run", "-v"], ["run", "--wait", "5"],
        ["--help"], ["build", "--help"], ["-h", "build"], ["--version"], [], ["parse", "x"],
        ["send"], ["-c", "a.toml", "-c", "b.toml", "build"], ["-c"], ["--config=", "build"],
        ["-ca.toml", "build"], ["-c", "-v", "build"], ["--verbose=2", "build"], ["-vx", "build"],
        ["--", "build"], ["build", "build"], ["--config", ".", "build"],
    ],
)
def test_anything_but_crons_plain_lines_is_left_to_click(args: list[str]) -> None:
    assert fast_args(args) is None


def test_a_line_click_would_reject_is_rejected_by_click(tmp_path: Path) -> None:
    root = _digest_folder(tmp_path / "site")

    done = _feeds_process(root, ["-m", "feeds.cli"], ["build", "--no-such-option"])

    assert done.status == 2
    assert "No such option '--no-such-option'" in done.stderr
    assert done.stderr.startswith("Usage: feeds build")
