"""What careless or hostile operators did to the first release, each reproduced and guarded:
links that leave the input folder, files with no entry, names that would forge a line in
cron's mail, a lost state database, broken settings."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import SAMPLE_DIGESTS
from smtp_fixtures import SmtpServer, delivery_settings, smtp_server

from feeds import output
from feeds.build import build
from feeds.check import check
from feeds.cli import cli
from feeds.config import Settings
from feeds.config_file import load_settings
from feeds.errors import DeliveryError
from feeds.ledger import Ledger
from feeds.parse import parse_file
from feeds.subscribers import parse_subscribers

__all__ = ["smtp_server"]
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


def test_a_dangling_link_is_one_error_line_and_the_rest_is_published(site: Path) -> None:
    (site / "digests" / "2024-01-01.txt").symlink_to(site / "digests" / "gone.txt")
    report = build(settings_of(site), now=NOW, log=quiet)
    assert report.errors == [
        f"{site / 'digests' / '2024-01-01.txt'}: a symbolic link that cannot be followed: "
        "No such file or directory (not published)"
    ]
    assert report.digests == 2


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


def test_a_named_file_with_a_line_break_is_quoted_in_warnings_and_in_every_later_error(
    site: Path,
) -> None:
    forged = site / "digests" / "2021-03-30\nerror: all is well.txt"
    text = (SAMPLE_DIGESTS / "2021-03-30.txt").read_text(encoding="utf-8")
    # An entry with no title is a warning naming the file.
    forged.write_text(text + "\n6、[CV]\n", encoding="utf-8")
    built = feeds(site, "-v", "build")
    assert built.exit_code == 0, built.output
    quoted = repr(str(forged))
    warnings = [line for line in built.output.splitlines() if line.startswith("warning:")]
    assert warnings and all(w.startswith(f"warning: {quoted}:") for w in warnings)
    parsed = feeds(site, "parse", str(forged))
    assert any(line.startswith(f"warning: {quoted}:") for line in parsed.output.splitlines())
    # Edited into something unreadable: its previous version stays published, and says so.
    forged.write_bytes(b"\xff\xfe\x00garbage")
    again = feeds(site, "build")
    assert again.exit_code == 1
    for line in again.output.splitlines():
        assert line.startswith(("error: ", "warning: ")), line
    assert f"error: {quoted}: publishing its previous version" in again.output.splitlines()
    checked = feeds(site, "check")
    assert all(line.startswith(("error: ", "warning: ")) or " digests" in line
               for line in checked.output.splitlines()), checked.output


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
        ("newsletter", "ledger_retention_days = 2",
         "[newsletter] ledger_retention_days must be between 7 and 36500"),
        ("site", 'base_url = "http://"', "[site] base_url must be an http(s) URL with a host"),
        ("web", 'public_url = "http://example.org/list"', "[web] public_url must be https://"),
        ("web", "notices_per_day = 0", "[web] notices_per_day must be between 1 and 100"),
        ("bounces", "soft_limit = 0", "[bounces] soft_limit and soft_reset_days"),
        ("bounces", "imap_port = 0", "[bounces] imap_port must be a port number"),
        ("newsletter", 'reply_to = "a@b.org\\nBcc: q@y.org"',
         "[newsletter] reply_to must not contain a line break"),
        ("newsletter", 'from = "Digest <d@b.org>\\r\\nX: y"', "[newsletter] from must not contain"),
        ("site", 'title = "Digest\\u2028"', "[site] title must not contain a line break"),
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


# -- 10: every network wait has a deadline ----------------------------------------------------


class Trickle:
    """An SMTP server on 127.0.0.1 that, from `stage` on (the greeting, or the answer to MAIL),
    sends its answer one byte at a time and never ends the line: every read gets a byte, the
    answer never comes."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.stage == "mail":
                    conn.sendall(b"220 trickle ESMTP\r\n")
                    conn.recv(1024)  # EHLO
                    conn.sendall(b"250 trickle\r\n")
                    conn.recv(1024)  # MAIL FROM
                conn.sendall(b"250 ")
                while not self.stop.is_set():
                    conn.sendall(b"x")
                    time.sleep(0.05)
            except OSError:
                return


@pytest.mark.parametrize("stage", ["greeting", "mail"])
def test_a_server_that_trickles_its_answers_cannot_hold_a_send(
    tmp_path: Path, stage: str
) -> None:
    from feeds.send import Issues, send

    server = Trickle(stage)
    try:
        settings = delivery_settings(tmp_path, None, port=server.port, timeout=0.5,
                                     max_attempts=1)
        digest = parse_file(SAMPLE_DIGESTS / "2022-08-13.txt", tz=settings.site.tz)
        ledger = Ledger.open(settings.paths.state)
        outcome: list[object] = []

        def sending() -> None:
            try:
                outcome.append(send(settings, Issues.of([digest]),
                                    parse_subscribers("ada@example.org,,\n"), ledger, now=NOW,
                                    retry_delay=0.01))
            except DeliveryError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=sending, daemon=True)
        worker.start()
        worker.join(60)  # a bound on a hang, not a speed target
        assert not worker.is_alive(), "the send hung on a trickling server"
        ledger.close()
    finally:
        server.stop.set()
    (result,) = outcome
    said = str(result) if isinstance(result, DeliveryError) else result.summary()  # type: ignore[attr-defined]
    if stage == "greeting":
        assert isinstance(result, DeliveryError)
        assert "no complete answer in time" in said
    else:
        assert said == "sent 0, 1 deferred to a later run"
        reply = result.deferred[0].reply  # type: ignore[attr-defined]
        assert reply.startswith("connection lost at ") and "no complete answer in time" in reply


@pytest.mark.smtp
def test_a_send_stops_at_its_time_limit_and_the_next_one_sends_the_rest(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    from feeds.send import Issues, send

    smtp_server.handler.delay = 0.2
    settings = delivery_settings(tmp_path, smtp_server, send_time_limit=0.5)
    digest = parse_file(SAMPLE_DIGESTS / "2022-08-13.txt", tz=settings.site.tz)
    people = parse_subscribers("".join(f"r{i}@example.org,,\n" for i in range(12)))
    tallies = []
    for _ in range(12):
        ledger = Ledger.open(settings.paths.state)
        try:
            tallies.append(send(settings, Issues.of([digest]), people, ledger, now=NOW,
                                retry_delay=0.01))
        finally:
            ledger.close()
        if tallies[-1].ok:
            break
    first = tallies[0]
    assert not first.ok and first.left > 0
    assert "stopped at the time limit (0.5 s)" in first.summary()
    assert tallies[-1].ok
    assert smtp_server.handler.copies() == {f"r{i}@example.org": 1 for i in range(12)}


# -- 11: SQLite's errors are one line each ----------------------------------------------------


def test_a_state_database_locked_by_another_process_is_one_line(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert feeds(site, "build").exit_code == 0
    state = site / "state" / "feeds.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, time\n"
         f"conn = sqlite3.connect({str(state)!r}, isolation_level=None)\n"
         "conn.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setattr("feeds.state.BUSY_TIMEOUT", 0.3)
        result = feeds(site, "build", "--force")
    finally:
        holder.kill()
        holder.communicate()
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: {state}: the state database failed: database is locked")
    assert "another process kept it busy" in line


def test_a_full_disk_under_the_state_is_one_line_and_nothing_half_recorded(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("a small file system for the state needs `mount` (root)")
    try:
        site = tmp_path / "site"
        (site / "digests").mkdir(parents=True)
        for sample in sorted(SAMPLE_DIGESTS.glob("*.txt")):
            shutil.copy(sample, site / "digests" / sample.name)
        (site / "feeds.toml").write_text(
            f'[paths]\nstate = "{disk / "feeds.sqlite3"}"\n', encoding="utf-8"
        )
        result = feeds(site, "build")
        assert result.exit_code == 1
        (line,) = result.output.splitlines()
        assert line.startswith(f"error: {disk / 'feeds.sqlite3'}: the state database failed:")
        assert "full" in line and "nothing was half-recorded" in line
        # What was committed is whole: the database opens and holds whole digests only.
        conn = sqlite3.connect(disk / "feeds.sqlite3")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            orphans = conn.execute(
                "SELECT COUNT(*) FROM items WHERE content_hash NOT IN"
                " (SELECT content_hash FROM digests WHERE header IS NOT NULL)"
            ).fetchone()
            assert orphans == (0,)
        finally:
            conn.close()
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("command", ["build", "run"])
def test_an_entry_the_parser_skips_is_said_once_without_v(site: Path, command: str) -> None:
    digest = site / "digests" / "2021-03-30.txt"
    text = (SAMPLE_DIGESTS / "2021-03-30.txt").read_text(encoding="utf-8")
    digest.write_text(text + "\n6、[CV]\n", encoding="utf-8")
    first = feeds(site, command)
    assert first.exit_code == 0, first.output
    warnings = [line for line in first.output.splitlines() if line.startswith("warning:")]
    assert any(w.startswith(f"warning: {digest}:") and "skipped" in w for w in warnings)
    assert all(line.startswith("warning:") for line in first.output.splitlines())
    # Once: the next build, with nothing new to parse, says nothing.
    again = feeds(site, command)
    assert again.exit_code == 0 and again.output == ""


def test_a_copy_of_a_digest_under_another_name_is_said_not_dropped_silently(
    site: Path,
) -> None:
    original = site / "digests" / "2021-06-17.txt"
    copy = site / "digests" / "2021-06-18.txt"
    shutil.copy(original, copy)
    built = feeds(site, "build")
    assert built.exit_code == 0, built.output
    assert built.output == (
        f"warning: {copy}: the same text as {original}; published once, as that file\n"
    )
    assert not (site / "output" / "newsletter" / "2021-06-18.html").exists()
    # Said once: a later build, for a new digest, does not say it again.
    shutil.copy(SAMPLE_DIGESTS / "2021-03-30.txt", site / "digests" / "2021-03-30.txt")
    later = feeds(site, "build")
    assert later.exit_code == 0 and "the same text" not in later.output


# -- 2: a lost state database never re-mails the archive ---------------------------------------


@pytest.fixture
def mailing(site: Path, smtp_server: SmtpServer) -> Path:
    """The site with a subscriber list and the SMTP server, after one run that mailed the
    newest issue to both subscribers."""
    (site / "feeds.toml").write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
        "max_attempts = 1\n", encoding="utf-8",
    )
    (site / "subscribers.csv").write_text(
        "email,name,categories\nada@example.org,,\nbob@example.org,,\n", encoding="utf-8"
    )
    assert feeds(site, "run").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}
    return site


@pytest.mark.smtp
@pytest.mark.parametrize("damage", ["deleted", "emptied", "garbage", "recreated", "rewritten"])
def test_a_lost_state_refuses_to_send_until_restored_or_started_afresh(
    mailing: Path, smtp_server: SmtpServer, damage: str
) -> None:
    state = mailing / "state" / "feeds.sqlite3"
    for extra in (state.with_name(state.name + "-wal"), state.with_name(state.name + "-shm")):
        extra.unlink(missing_ok=True)
    # The issues were published a while ago.
    earlier = time.time() - 3600
    for published in (mailing / "output" / "newsletter").iterdir():
        os.utime(published, (earlier, earlier))
    if damage in ("deleted", "recreated", "rewritten"):
        state.unlink()
        if damage == "rewritten":
            # Every newsletter file rewritten since the loss (a template changed with it): the
            # files' times no longer tell, the output's record of its state database does.
            later = time.time() + 3600
            for published in (mailing / "output" / "newsletter").iterdir():
                os.utime(published, (later, later))
        if damage == "recreated":
            # Another command opens the state first: the web endpoint, the operator's list.
            assert feeds(mailing, "subscribers", "list").exit_code == 0
    elif damage == "emptied":
        state.write_bytes(b"")
    else:
        state.write_bytes(os.urandom(4096))

    refused = feeds(mailing, "run")
    assert refused.exit_code == 1, refused.output
    assert refused.output.startswith("error: ")
    if damage == "garbage":
        assert "the state database is unusable" in refused.output
        return
    assert "the record of what was sent is lost" in refused.output
    assert "--fresh-start" in refused.output
    again = feeds(mailing, "run")
    assert again.exit_code == 1 and "--fresh-start" in again.output
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}

    assert feeds(mailing, "run", "--fresh-start").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}
    # What comes next goes out as usual, once.
    (mailing / "digests" / "2024-01-01.txt").write_text(
        "date: 2024-01-01\n" + (SAMPLE_DIGESTS / "2021-03-30.txt").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    final = feeds(mailing, "run")
    assert final.exit_code == 0, final.output
    assert smtp_server.handler.copies() == {"ada@example.org": 2, "bob@example.org": 2}


def _lose_state(site: Path, *, published_ago: float = 3600) -> None:
    """The state database gone (with its WAL), the newsletters published a while before."""
    earlier = time.time() - published_ago
    for published in (site / "output" / "newsletter").iterdir():
        os.utime(published, (earlier, earlier))
    state = site / "state" / "feeds.sqlite3"
    for path in (state, state.with_name(state.name + "-wal"), state.with_name(state.name + "-shm")):
        path.unlink(missing_ok=True)


@pytest.mark.smtp
@pytest.mark.parametrize("how", ["published before the record", "copied without hidden files"])
def test_an_output_that_names_no_database_is_not_taken_over_by_a_new_one(
    mailing: Path, smtp_server: SmtpServer, how: str
) -> None:
    out = mailing / "output"
    if how == "published before the record":
        (out / output.PUBLISHER).unlink()
    else:
        # `cp -r output/* elsewhere/` and back: the glob leaves hidden files behind.
        moved = mailing / "moved"
        moved.mkdir()
        for child in out.iterdir():
            if not child.name.startswith("."):
                shutil.move(child, moved / child.name)
        shutil.rmtree(out)
        moved.rename(out)
    _lose_state(mailing)

    # The build inside the run must not name the new database the publisher, which would
    # let its send through: the newsletters' times say the database is younger.
    refused = feeds(mailing, "run")
    assert refused.exit_code == 1 and "the record of what was sent is lost" in refused.output
    assert output.publisher(out) == output.NOBODY
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}


@pytest.mark.smtp
def test_an_output_without_the_record_is_not_taken_over_when_every_file_is_rewritten(
    mailing: Path, smtp_server: SmtpServer
) -> None:
    # Published before the record, the database lost, and a setting that rewrites every
    # newsletter changed in the same upgrade: the build decides whose output it is before it
    # writes anything, so the files' new times do not make the new database their publisher.
    (mailing / "output" / output.PUBLISHER).unlink()
    _lose_state(mailing)
    with (mailing / "feeds.toml").open("a", encoding="utf-8") as config:
        config.write('[newsletter]\nfrom = "Another <another@example.org>"\n')
    refused = feeds(mailing, "run")
    assert refused.exit_code == 1 and "the record of what was sent is lost" in refused.output
    assert output.publisher(mailing / "output") == output.NOBODY
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}


@pytest.mark.smtp
def test_a_fresh_start_needs_what_the_new_database_published(
    mailing: Path, smtp_server: SmtpServer
) -> None:
    _lose_state(mailing)
    assert "--fresh-start" in feeds(mailing, "send").output
    # Before any build, this database has published nothing to take as sent: a fresh start
    # now would name it the publisher and the next run would mail the newest issue again.
    early = feeds(mailing, "send", "--fresh-start")
    assert early.exit_code == 1, early.output
    assert early.output.startswith("error: ") and "feeds build" in early.output
    again = feeds(mailing, "run")
    assert again.exit_code == 1 and "the record of what was sent is lost" in again.output
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}

    assert feeds(mailing, "run", "--fresh-start").exit_code == 0
    assert feeds(mailing, "run").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}


# -- 12: what the build owns and no longer produces is removed --------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_files_a_killed_build_left_for_a_digest_since_removed_are_removed(
    site: Path, force: bool
) -> None:
    assert feeds(site, "build").exit_code == 0
    # What a build killed after writing a new digest's newsletter leaves, before it recorded
    # owning it; the digest file is then removed.
    leftovers = [
        site / "output" / "newsletter" / f"2030-01-01.{ext}" for ext in ("html", "txt", "eml")
    ]
    for path in leftovers:
        path.write_text("stale", encoding="utf-8")
    (site / "output" / "feeds" / "gone.rss").write_text("<rss/>", encoding="utf-8")
    mine = site / "output" / "robots.txt"
    mine.write_text("User-agent: *\n", encoding="utf-8")

    assert feeds(site, "build", *(["--force"] if force else [])).exit_code == 0

    assert not any(path.exists() for path in leftovers)
    assert not (site / "output" / "feeds" / "gone.rss").exists()
    assert mine.exists()
    assert (site / "output" / "newsletter" / "2022-08-13.html").exists()


# -- 3: a corrected date does not mail the issue again -----------------------------------------


@pytest.mark.smtp
def test_a_corrected_date_publishes_the_issue_under_its_new_id_without_mailing_it_again(
    mailing: Path, smtp_server: SmtpServer
) -> None:
    newest = mailing / "digests" / "2022-08-13.txt"
    newest.write_text(
        "date: 2022-08-14\n" + newest.read_text(encoding="utf-8"), encoding="utf-8"
    )

    assert feeds(mailing, "run").exit_code == 0

    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}
    assert (mailing / "output" / "newsletter" / "2022-08-14.html").is_file()
    assert not (mailing / "output" / "newsletter" / "2022-08-13.html").exists()
    # Corrected twice: still the same issue.
    newest.write_text(
        newest.read_text(encoding="utf-8").replace("date: 2022-08-14", "date: 2022-08-15"),
        encoding="utf-8",
    )
    assert feeds(mailing, "run").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}
    # A digest that is new goes out as ever.
    (mailing / "digests" / "2024-01-01.txt").write_text(
        "date: 2024-01-01\n" + (SAMPLE_DIGESTS / "2021-03-30.txt").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    assert feeds(mailing, "run").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 2, "bob@example.org": 2}


# -- 14: addresses and personal links are private to their owner ------------------------------


def test_the_state_and_the_dry_run_outbox_are_private_to_their_owner(mailing: Path) -> None:
    (mailing / "digests" / "2024-01-01.txt").write_text(
        "date: 2024-01-01\n" + (SAMPLE_DIGESTS / "2021-03-30.txt").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    assert feeds(mailing, "build").exit_code == 0
    result = feeds(mailing, "send", "--dry-run")
    assert result.exit_code == 0, result.output
    state = mailing / "state"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "feeds.sqlite3").stat().st_mode & 0o777 == 0o600
    messages = sorted((state / "outbox").rglob("*.eml"))
    assert [p.name for p in messages] == ["ada@example.org.eml", "bob@example.org.eml"]
    for path in messages:
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700


def test_what_was_due_under_a_corrected_id_goes_on_under_the_new_one(tmp_path: Path) -> None:
    from feeds.ledger import DigestRef

    ledger = Ledger.open(tmp_path / "feeds.sqlite3")
    try:
        old = DigestRef("2022-08-13", NOW)
        ledger.queue([old], ["ada@example.org", "bob@example.org"])
        ledger.mark_sending("2022-08-13", "ada@example.org", "<m@x.org>")
        ledger.finish("2022-08-13", "ada@example.org", "sent", "250 ok")
        new = DigestRef("2022-08-14", NOW, replaces="2022-08-13")
        ledger.queue([new], ["ada@example.org", "bob@example.org"])
        rows = {(e.digest_id, e.recipient): e.status for e in ledger.entries()}
    finally:
        ledger.close()
    assert rows == {
        ("2022-08-13", "ada@example.org"): "sent",
        ("2022-08-14", "bob@example.org"): "pending",
    }
