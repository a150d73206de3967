"""`feeds check`: every problem with its file and line, exit status 1 on an error."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DIGESTS
from smtp_fixtures import SmtpServer, delivery_settings, smtp_server

from feeds.check import check
from feeds.cli import cli
from feeds.config import Settings

__all__ = ["smtp_server"]

GOOD_LIST = "email,name,categories\nada@example.org,Ada,CV\nalan@example.com,,\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLE_DIGESTS, tmp_path / "digests")
    (tmp_path / "subscribers.csv").write_text(GOOD_LIST, encoding="utf-8")
    return tmp_path


def _settings(root: Path) -> Settings:
    return delivery_settings(root, None)


def test_a_sound_project_has_no_errors_and_says_what_it_checked(project: Path) -> None:
    report = check(_settings(project))

    assert report.errors == []
    assert (report.subscribers, report.digests) == (2, 5)
    assert "2 subscribers and 5 digests: 0 errors" in report.summary()


def test_parser_warnings_are_reported_with_file_and_line(project: Path) -> None:
    report = check(_settings(project))

    weekly = project / "digests" / "2020-07-11-weekly.txt"
    assert [str(w) for w in report.warnings] == [
        f"warning: {weekly}:69: No 29 repeats No 26 (same paper); both kept, one key"
    ]
    assert not report.failed() and report.failed(strict=True)


def test_an_unreadable_digest_is_an_error(project: Path) -> None:
    (project / "digests" / "2022-09-01.txt").write_bytes(b"")

    report = check(_settings(project))

    (error,) = report.errors
    assert error.where.startswith(str(project / "digests" / "2022-09-01.txt"))
    assert report.failed()


def test_bad_subscriber_rows_are_errors_and_duplicates_warnings_each_with_its_line(
    project: Path,
) -> None:
    (project / "subscribers.csv").write_text(
        GOOD_LIST + "broken-address,,\nADA@example.org,,\ngrace@example.org,,XX\n",
        encoding="utf-8",
    )

    report = check(_settings(project))

    csv = project / "subscribers.csv"
    assert [(f.severity, f.where) for f in report.findings if f.where.startswith(str(csv))] == [
        ("error", f"{csv}:4"),
        ("warning", f"{csv}:5"),
        ("warning", f"{csv}:6"),
    ]
    assert "appears in no digest" in report.findings[-1].message


def test_an_unsubscribe_link_without_its_secret_is_an_error(project: Path) -> None:
    settings = replace(_settings(project), unsubscribe_secret=None)

    report = check(settings)

    assert any("FEEDS_UNSUBSCRIBE_SECRET" in f.message for f in report.errors)


def test_a_login_without_a_password_is_an_error(project: Path) -> None:
    settings = _settings(project)
    settings = replace(settings, smtp=replace(settings.smtp, username="mailer"))

    report = check(settings)

    assert any("FEEDS_SMTP_PASSWORD" in f.message for f in report.errors)


def test_a_missing_subscriber_list_is_only_a_warning(project: Path) -> None:
    (project / "subscribers.csv").unlink()

    report = check(_settings(project))

    assert not report.failed()
    assert any("no subscriber list file" in w.message for w in report.warnings)


def test_the_smtp_server_is_tried_when_asked(project: Path, smtp_server: SmtpServer) -> None:
    report = check(delivery_settings(project, smtp_server), smtp=True)

    assert report.errors == []
    assert report.smtp_reply is not None and report.smtp_reply.startswith("250")


def test_an_unreachable_smtp_server_is_an_error(project: Path) -> None:
    settings = delivery_settings(project, None, max_attempts=1)
    report = check(settings, smtp=True)

    # One place, as every error line names it: the setting, then what went wrong.
    (error,) = report.errors
    assert str(error) == (
        f"error: [smtp] {settings.smtp.host}:{settings.smtp.port}: cannot connect after 1 try: "
        "Connection refused"
    )


def test_the_command_exits_1_on_errors_and_prints_file_and_line(project: Path) -> None:
    (project / "feeds.toml").write_text(
        '[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\n', encoding="utf-8"
    )
    (project / "subscribers.csv").write_text(GOOD_LIST + "nope,,\n", encoding="utf-8")

    result = CliRunner().invoke(cli, ["--config", str(project / "feeds.toml"), "check"])

    assert result.exit_code == 1
    assert f"error: {project / 'subscribers.csv'}:4: invalid email address 'nope'" in result.output
    assert result.output.rstrip().endswith("1 error, 1 warning")


def test_a_config_that_does_not_load_is_reported_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text('[smtp]\nport = "twenty-five"\n', encoding="utf-8")

    result = CliRunner().invoke(cli, ["--config", str(config), "check"])

    assert result.exit_code == 1
    assert str(config) in result.output and "port must be an integer" in result.output


def test_a_sender_or_reply_to_without_an_address_is_an_error(project: Path) -> None:
    settings = _settings(project)
    no_from = replace(settings, newsletter=replace(settings.newsletter, sender="Digest"))
    bad_reply = replace(settings, newsletter=replace(settings.newsletter, reply_to="x@"))

    assert any("from has no address" in f.message for f in check(no_from).errors)
    assert any("reply_to is not an address" in f.message for f in check(bad_reply).errors)


def test_the_summary_says_how_big_the_state_is_without_changing_it(project: Path) -> None:
    from feeds.ledger import Ledger

    settings = _settings(project)
    assert check(settings).state is None and not settings.paths.state.exists()
    Ledger.open(settings.paths.state).close()
    before = settings.paths.state.stat().st_mtime_ns

    report = check(settings)

    assert report.state is not None and report.state.endswith(
        "ledger: 0 rows for 0 digests, 0 of them compacted"
    )
    assert "\nstate: " in report.summary() and " MB (" in report.summary()
    assert settings.paths.state.stat().st_mtime_ns == before
