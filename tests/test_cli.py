"""The `feeds` command line: help for every command, and `run`/`send` as cron sees them."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DIGESTS
from smtp_fixtures import SECRET, SmtpServer, smtp_server

from feeds.cli import cli

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
