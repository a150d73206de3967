"""What careless or hostile operators did to the first release, each reproduced and guarded:
links that leave the input folder, files with no entry, names that would forge a line in
cron's mail, a lost state database, broken settings."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import SAMPLE_DIGESTS

from feeds.build import build
from feeds.check import check
from feeds.cli import cli
from feeds.config import Settings, load_settings

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def quiet(_: str) -> None:
    return None


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site folder with two sample digests and a feeds.toml."""
    (tmp_path / "digests").mkdir()
    for name in ("2021-06-17.txt", "2022-08-13.txt"):
        shutil.copy(SAMPLE_DIGESTS / name, tmp_path / "digests" / name)
    (tmp_path / "feeds.toml").write_text("[site]\ntitle = \"Digest\"\n", encoding="utf-8")
    return tmp_path


def settings_of(site: Path) -> Settings:
    return load_settings(site / "feeds.toml", environ={})


def feeds(site: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(site / "feeds.toml"), *args])


# -- 4 and 9: what the input folder holds ---------------------------------------------------


def test_a_link_to_a_file_outside_the_input_folder_is_never_read_or_published(
    site: Path,
) -> None:
    secret = site / "secret.txt"
    secret.write_text("password = hunter2\n1、[LG] A title\n", encoding="utf-8")
    (site / "digests" / "2024-01-01.txt").symlink_to(secret)

    report = build(settings_of(site), now=NOW, log=quiet)

    assert report.failed
    assert report.errors == [
        f"{site / 'digests' / '2024-01-01.txt'}: a symbolic link to a file outside the input "
        "folder (not published)"
    ]
    published = b"".join(p.read_bytes() for p in (site / "output").rglob("*") if p.is_file())
    assert b"hunter2" not in published and b"A title" not in published
    assert "2024-01-01" not in (site / "output" / "index.html").read_text(encoding="utf-8")
    findings = [str(f) for f in check(settings_of(site)).errors]
    assert findings == [f"error: {report.errors[0]}"]


def test_a_link_inside_the_input_folder_is_followed(site: Path) -> None:
    (site / "digests" / "latest.txt").symlink_to(site / "digests" / "2022-08-13.txt")
    report = build(settings_of(site), now=NOW, log=quiet)
    assert not report.failed and report.digests == 2


def test_a_symbolic_link_loop_is_one_error_line_not_a_traceback(site: Path) -> None:
    (site / "digests" / "a.txt").symlink_to(site / "digests" / "b.txt")
    (site / "digests" / "b.txt").symlink_to(site / "digests" / "a.txt")

    result = feeds(site, "build")

    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert lines == [
        f"error: {site / 'digests' / name}: a symbolic link loop (not published)"
        for name in ("a.txt", "b.txt")
    ]
    assert (site / "output" / "index.html").is_file()


def test_a_file_with_no_entry_is_not_published_and_fails_the_build(site: Path) -> None:
    stray = site / "digests" / "2030-01-01.txt"
    stray.write_text("My shopping list\neggs, milk\n", encoding="utf-8")

    result = feeds(site, "build")

    assert result.exit_code == 1
    assert f"error: {stray}:1: no entry recognized in this file" in result.output
    index = (site / "output" / "index.html").read_text(encoding="utf-8")
    assert "shopping" not in index and "2030-01-01" not in index
    assert not (site / "output" / "newsletter" / "2030-01-01.html").exists()
    # A no-op build says so again: cron keeps hearing until the file is fixed.
    assert feeds(site, "build").exit_code == 1
    assert [str(f) for f in check(settings_of(site)).errors] == [
        f"error: {stray}:1: no entry recognized: not published"
    ]


# -- 8: file names in messages ---------------------------------------------------------------


def test_a_file_name_with_a_line_break_cannot_forge_a_line_in_crons_mail(site: Path) -> None:
    forged = site / "digests" / "x\nerror: all is well.txt"
    forged.write_bytes(b"")

    result = feeds(site, "build")

    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line == f"error: {str(forged)!r}: empty file (a digest needs at least one entry)"


# -- 13: settings are checked when read ------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "line", "says"),
    [
        ("smtp", "timeout = -1", "[smtp] timeout must be more than 0"),
        ("smtp", "port = 99999", "[smtp] port must be a port number"),
        ("smtp", "max_attempts = 0", "[smtp] max_attempts must be at least 1"),
        ("smtp", "messages_per_second = -3", "[smtp] messages_per_second must be 0"),
        ("smtp", "send_time_limit = 0", "[smtp] send_time_limit must be more than 0"),
        ("newsletter", "size_budget = -1", "[newsletter] size_budget must be between"),
        ("site", 'base_url = "http://"', "[site] base_url must be an http(s) URL with a host"),
        ("web", 'public_url = "http://example.org/list"', "[web] public_url must be https://"),
        ("bounces", "soft_limit = 0", "[bounces] soft_limit and soft_reset_days"),
        ("bounces", "imap_port = 0", "[bounces] imap_port must be a port number"),
    ],
)
def test_a_value_out_of_range_is_refused_when_read_naming_its_key(
    site: Path, section: str, line: str, says: str
) -> None:
    config = site / "feeds.toml"
    config.write_text(f"[{section}]\n{line}\n", encoding="utf-8")

    for command in (["build"], ["check"]):
        result = feeds(site, *command)
        assert result.exit_code == 1, command
        assert says in result.output, command
        assert str(config) in result.output and "Traceback" not in result.output
