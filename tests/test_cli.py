"""The `feeds` command line: help for every command, and `run`/`send` as cron sees them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT, SAMPLE_DIGESTS, lock_holder
from smtp_fixtures import SECRET, SmtpServer, smtp_server

from feeds.build import build
from feeds.cli import cli
from feeds.config_file import load_settings
from feeds.lock import build_lock

__all__ = ["smtp_server"]
ENV = {"FEEDS_UNSUBSCRIBE_SECRET": SECRET, "FEEDS_SMTP_PASSWORD": ""}


def _command_lines(group: click.Group, *prefix: str) -> list[tuple[str, ...]]:
    """Every command's words, subcommands of groups included."""
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _command_lines(command, *prefix, name)
    return found


@pytest.mark.parametrize("words", _command_lines(cli), ids=" ".join)
def test_every_command_has_help_with_an_example(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*words, "--help"])

    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    command: click.Command = cli
    for word in words:
        assert isinstance(command, click.Group)
        command = command.commands[word]
    assert command.help
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


def test_run_names_each_failure_with_the_servers_reply_and_exits_1(
    project: Path, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.rejected = {"alan@example.com"}

    result = _feeds(project, "run")

    assert result.exit_code == 1
    assert result.output == (
        "error: alan@example.com: RCPT: 550 5.1.1 No such user here"
        " (suppressed: no more mail goes there)\n"
    )
    # Reported once: the next run sends nobody anything and has nothing to say.
    again = _feeds(project, "run")
    assert (again.exit_code, again.output) == (0, "")


def test_run_without_a_subscriber_list_only_builds(project: Path, smtp_server: SmtpServer) -> None:
    (project / "subscribers.csv").unlink()

    result = _feeds(project, "run")

    assert (result.exit_code, result.output) == (0, "")
    assert (project / "output" / "index.html").exists()
    assert smtp_server.handler.received == []


@pytest.mark.parametrize(
    ("lock", "busy"),
    [
        ("build_lock", "another feeds build is running"),
        ("send_lock", "another `feeds send` or `feeds run` is sending"),
    ],
)
def test_a_run_leaves_a_lock_holder_alone_but_reports_one_that_held_it_for_hours(
    project: Path, smtp_server: SmtpServer, lock: str, busy: str
) -> None:
    import time

    from feeds import lock as locks

    path = getattr(locks, lock)(project / "state" / "feeds.sqlite3")
    with lock_holder(path, seconds=600):
        quiet = _feeds(project, "run")
        assert (quiet.exit_code, quiet.output) == (0, "")
        assert smtp_server.handler.copies() == {}
        hours_ago = time.time() - 3 * 3600
        os.utime(path, (hours_ago, hours_ago))
        stuck = _feeds(project, "run")
    assert stuck.exit_code == 1
    assert busy in stuck.output
    assert "held for 180 minutes: is it stuck?" in stuck.output
    # Once the holder is gone, the next run sends what was due.
    assert _feeds(project, "run").exit_code == 0
    assert set(smtp_server.handler.copies()) == {"ada@example.org", "alan@example.com"}


def test_housekeeping_that_fails_after_a_send_keeps_the_sends_record_and_says_so_once(
    project: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from feeds import retention

    def full_disk(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(retention, "compact", full_disk)
    failed = _feeds(project, "run")
    sent = smtp_server.handler.copies()
    assert set(sent) == {"ada@example.org", "alan@example.com"}
    assert failed.exit_code == 1
    errors = [line for line in failed.output.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {project / 'state' / 'feeds.sqlite3'}: the state database failed: database or "
        "disk is full (free some space on the disk that holds it; nothing was half-recorded)"
    ]
    # What was sent stays recorded: the next run, housekeeping working again, sends nothing.
    monkeypatch.undo()
    again = _feeds(project, "run")
    assert (again.exit_code, again.output) == (0, "")
    assert smtp_server.handler.copies() == sent


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
    assert f"warning: {project / 'subscribers.csv'}:4: invalid email" in result.output
    assert "(row skipped)" in result.output
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
    assert result.output.startswith(f"error: {project / 'digests' / '2022-09-01.txt'}: empty")
    assert "2022-09-01.txt" in result.output and result.output.count("\n") == 1
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "alan@example.com": 1}


# Error lines and what cron's command lines cost.

DONE_IN = re.compile(r"\d+\.\d\d s")


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


def _nothing(root: Path) -> None:
    pass


def _feeds_process(root: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feeds.cli", *args], cwd=root, capture_output=True, text=True,
        timeout=120, env={**os.environ, "FEEDS_UNSUBSCRIBE_SECRET": "s" * 40},
    )


def _broken_config(root: Path) -> None:
    (root / "broken.toml").write_text('[site]\ntitle = "x"\nbad = \n', encoding="utf-8")


def _config_a_folder(root: Path) -> None:
    (root / "feeds.toml").unlink()
    (root / "feeds.toml").mkdir()


def _also(text: str) -> Callable[[Path], None]:
    """Add `text` to the folder's feeds.toml."""
    def prepare(root: Path) -> None:
        with (root / "feeds.toml").open("a", encoding="utf-8") as config:
            config.write(text)
    return prepare


# args, what to do to the fresh folder first, the exit status and what it says (errors on stderr).
CASES: dict[str, tuple[list[str], Callable[[Path], None], int, str]] = {
    "fresh build": (["--config", "feeds.toml", "build"], _nothing, 0, ""),
    "no-op build, verbose": (["-v", "build"], _built, 0, "nothing changed: 2 digests"),
    "bad digest build": (
        ["build"], _bad_digest, 1, "error: {root}/digests/2022-09-01.txt: empty file"
    ),
    "bad digest run": (["run"], _bad_digest, 1, "error: {root}/digests/2022-09-01.txt: empty"),
    "missing input folder, build": (
        ["build"], _no_input, 1, "error: {root}/digests: the input folder does not exist"
    ),
    "missing input folder, run": (
        ["run"], _no_input, 1, "error: {root}/digests: the input folder"
    ),
    "missing config file": (
        ["--config", "absent.toml", "build"], _nothing, 1, "error: absent.toml: cannot read"
    ),
    "a settings file that is a folder": (
        ["--config", "digests", "build"], _nothing, 1,
        "error: digests: cannot read config: Is a directory",
    ),
    # Not taken for absent: the built-in defaults would have run without a word.
    "./feeds.toml a folder": (
        ["build"], _config_a_folder, 1, "error: feeds.toml: cannot read config: Is a directory"
    ),
    # A path of the wrong kind is a problem with a file: our one line, exit 1, not click's
    # usage text.
    "an input folder that is a file": (
        ["build", "--input", "feeds.toml"], _nothing, 1,
        "error: feeds.toml: is a file; --input needs a folder",
    ),
    "a list to import that is a folder": (
        ["subscribers", "import", "digests"], _nothing, 1,
        "error: digests: is a folder; this needs a file",
    ),
    "invalid TOML": (
        ["--config", "broken.toml", "build"], _broken_config, 1,
        "error: broken.toml:3: invalid TOML: Invalid value (column 7)",
    ),
    "bad digest parse": (
        ["parse", "digests/2022-09-01.txt"], _bad_digest, 1,
        "error: digests/2022-09-01.txt: empty file",
    ),
    # The state database holds every subscriber's address: never inside what is published.
    "state inside the output": (
        ["build"], _also('output = "."\n'), 1,
        "error: feeds.toml: [paths] state ({root}/state/feeds.sqlite3) is inside [paths] output",
    ),
    "state inside an output given on the command line": (
        ["build", "--output", "."], _nothing, 1,
        "error: feeds.toml: [paths] state ({root}/state/feeds.sqlite3) is inside [paths] output",
    ),
    "state inside an output given as a path up and down": (
        ["build"], _also('output = "../site"\n'), 1,
        "error: feeds.toml: [paths] state ({root}/state/feeds.sqlite3) is inside [paths] output",
    ),
    "an output that is a file": (
        ["build"], _also('output = "digests/2021-06-17.txt"\n'), 1,
        "error: {root}/digests/2021-06-17.txt: [paths] output is a file, not a folder",
    ),
    "a sender that is no address": (
        ["build"], _also('[newsletter]\nfrom = "Digest <digest@>"\n'), 1,
        "error: feeds.toml: [newsletter] from: not an email address",
    ),
    "NaN seconds": (
        ["build"], _also("[smtp]\nsend_time_limit = nan\n"), 1,
        "error: feeds.toml: [smtp] send_time_limit must be more than 0 seconds",
    ),
    "a host serve cannot listen on": (
        ["serve", "--host", "nonexistent.invalid", "--port", "0"],
        _also('[web]\npublic_url = "http://127.0.0.1:8000"\n'), 1,
        "error: cannot listen on nonexistent.invalid:0",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_error_is_one_line_in_the_one_format(tmp_path: Path, case: str) -> None:
    args, prepare, status, stderr_start = CASES[case]
    root = _digest_folder(tmp_path / "site")
    prepare(root)

    done = _feeds_process(root, args)

    assert done.returncode == status, done.stderr
    said = done.stderr if status else done.stderr + done.stdout
    assert DONE_IN.sub("N s", said).startswith(stderr_start.format(root=root))
    assert "Traceback" not in done.stderr
    if status:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, done.stderr


def test_serve_on_a_port_another_program_holds_names_the_address(tmp_path: Path) -> None:
    import socket

    root = _digest_folder(tmp_path / "site")
    _also('[web]\npublic_url = "http://127.0.0.1:8000"\n')(root)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _feeds_process(root, ["serve", "--port", str(port)])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (give --port a free"
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    root = _digest_folder(tmp_path / "site")
    assert _feeds_process(root, ["subscribers", "add", "ada@example.org"]).returncode == 0
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "feeds.cli", "subscribers", "export"], cwd=root,
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )
    assert done.returncode == 1
    assert done.stderr == "error: cannot write the output: No space left on device\n"


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    root = _digest_folder(tmp_path / "site")
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "feeds.cli", "-v", "build"], cwd=root, stdout=writer,
            stderr=subprocess.PIPE, text=True, timeout=120,
        )
    finally:
        os.close(writer)

    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.parametrize("command", ["build", "run"])
def test_a_locked_state_fails_a_build_and_lets_a_run_pass(tmp_path: Path, command: str) -> None:
    root = _digest_folder(tmp_path / "site")
    with lock_holder(build_lock(root / "state" / "feeds.sqlite3")) as holder:
        done = _feeds_process(root, ["-v", "-c", "feeds.toml", command])

    assert f"another feeds build is running (process {holder.pid})" in done.stderr
    if command == "build":
        assert (done.returncode, done.stderr[:7]) == (1, "error: ")
    else:
        assert (done.returncode, done.stderr[:9]) == (0, "skipped: ")


def test_a_no_op_run_imports_neither_the_mail_stack_nor_the_renderers(
    project: Path, smtp_server: SmtpServer
) -> None:
    assert _feeds(project, "run").exit_code == 0
    probe = (
        "import sys\nfrom feeds.cli import main\n"
        "sys.argv = ['feeds', '-c', 'feeds.toml', 'run']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    status = exit.code\n"
        "heavy = ('feeds.send', 'feeds.deliver', 'smtplib', 'jinja2', 'feeds.newsletter')\n"
        "print(status, sorted(m for m in heavy if m in sys.modules))"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=120,
        env={**os.environ, **ENV},
    )

    assert (done.stdout, done.stderr) == ("0 []\n", "")
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "alan@example.com": 1}


def test_a_line_click_would_reject_is_rejected_by_click(tmp_path: Path) -> None:
    root = _digest_folder(tmp_path / "site")

    done = _feeds_process(root, ["build", "--no-such-option"])

    assert done.returncode == 2
    assert "No such option '--no-such-option'" in done.stderr
    assert done.stderr.startswith("Usage: feeds build")
