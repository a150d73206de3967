"""Retention in a real SQLite file: old digests collapse to counts plus the rows that say
something, and no subscriber is ever queued a collapsed digest again."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock

from feeds import retention, state
from feeds.ledger import DigestRef, Ledger
from feeds.send import write_outbox

KEEP = timedelta(days=30)
HASH = "0123456789abcdef01234567"


def _day(n: int) -> DigestRef:
    return DigestRef(f"2024-05-{n:02d}", datetime(2024, 5, n, 8, tzinfo=UTC))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Ledger:
    return Ledger.open(tmp_path / "state" / "feeds.sqlite3", clock=clock)


def _deliver(ledger: Ledger, digest_id: str, *, failing: str = "") -> None:
    """Every due row of `digest_id` sent, except `failing`'s, refused with a 550."""
    for entry in ledger.iter_due(digest_id):
        mid = f"<{digest_id}.{HASH if entry.recipient == failing else '0' * 24}@example.org>"
        ledger.mark_sending(digest_id, entry.recipient, mid)
        outcome = "failed_permanent" if entry.recipient == failing else "sent"
        ledger.finish(digest_id, entry.recipient, outcome, "550 no such user" if failing
                      == entry.recipient else "250 ok")


def _month_later(ledger: Ledger, clock: Clock, people: list[str]) -> retention.Tidied:
    ledger.queue([_day(6)], people)
    _deliver(ledger, "2024-05-06", failing="gone@example.org")
    clock.now += KEEP + timedelta(days=1)
    return retention.compact(ledger, keep=KEEP)


def test_an_old_digest_keeps_its_counts_and_its_failures_but_not_its_sent_rows(
    ledger: Ledger, clock: Clock
) -> None:
    done = _month_later(ledger, clock, ["a@example.org", "b@example.org", "gone@example.org"])

    assert done.compacted == ["2024-05-06"] and done.rows == 2
    assert [(e.recipient, e.status) for e in ledger.entries()] == [
        ("gone@example.org", "failed_permanent")
    ]
    assert ledger.counts("2024-05-06")["sent"] == 2
    assert ledger.counts()["failed_permanent"] == 1


def test_a_bounce_still_finds_the_failed_row_of_a_compacted_digest(
    ledger: Ledger, clock: Clock
) -> None:
    _month_later(ledger, clock, ["a@example.org", "gone@example.org"])

    found = ledger.by_message_hash(HASH)

    assert found is not None and (found.digest_id, found.recipient) == (
        "2024-05-06", "gone@example.org"
    )
    assert ledger.by_message_hash("f" * 24) is None


def test_a_compacted_digest_is_never_queued_again_to_anyone(
    ledger: Ledger, clock: Clock
) -> None:
    _month_later(ledger, clock, ["a@example.org", "b@example.org"])
    # a leaves and comes back (a new subscriber by the rules), late joins for the first time:
    # the newest digest is the compacted one, which neither may be mailed.
    ledger.queue([_day(6)], ["b@example.org"])
    ledger.settle(["b@example.org"])
    ledger.queue([_day(6)], ["a@example.org", "b@example.org", "late@example.org"])
    ledger.queue([_day(6)], ["a@example.org"], only="2024-05-06")

    assert ledger.count_due() == (0, 0)
    assert ledger.entries() == []
    # The next issue goes to everybody as usual.
    ledger.queue([_day(7), _day(6)], ["a@example.org", "b@example.org", "late@example.org"])
    assert {e.recipient for e in ledger.iter_due()} == {
        "a@example.org", "b@example.org", "late@example.org"
    }


def test_asking_for_a_compacted_digest_by_id_is_a_clear_error(
    ledger: Ledger, clock: Clock
) -> None:
    from feeds.config import Settings
    from feeds.errors import DeliveryError
    from feeds.send import Issues, send
    from feeds.subscribers import SubscriberList

    _month_later(ledger, clock, ["a@example.org"])
    assert ledger.compacted("2024-05-06") is not None
    assert ledger.compacted("2024-05-07") is None
    issues = Issues((_day(6),), lambda ids: {})
    with pytest.raises(DeliveryError, match="compacted, and a compacted digest is never sent"):
        send(Settings(), issues, SubscriberList("t", ()), ledger, now=clock.now,
             digest_id="2024-05-06")


def test_a_digest_with_something_due_or_touched_lately_is_kept_whole(
    ledger: Ledger, clock: Clock
) -> None:
    ledger.queue([_day(6)], ["a@example.org", "b@example.org"])
    ledger.mark_sending("2024-05-06", "a@example.org", f"<2024-05-06.{HASH}@example.org>")
    clock.now += timedelta(days=2)
    ledger.finish("2024-05-06", "b@example.org", "sent", "250 ok")
    clock.now += KEEP - timedelta(days=1)

    assert retention.compact(ledger, keep=KEEP).compacted == []
    assert len(ledger.entries()) == 2


def test_compaction_and_reclaiming_shrink_the_file(
    tmp_path: Path, ledger: Ledger, clock: Clock
) -> None:
    people = [f"reader{i}@example.org" for i in range(3000)]
    for day in range(1, 5):
        ledger.queue([_day(day)], people)
        _deliver(ledger, f"2024-05-{day:02d}")
    path = tmp_path / "state" / "feeds.sqlite3"
    ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size
    clock.now += KEEP + timedelta(days=5)

    done = retention.compact(ledger, keep=KEEP)
    freed = retention.reclaim(ledger.conn)

    assert len(done.compacted) == 4 and freed > 0
    assert path.stat().st_size < before / 2
    assert ledger.counts()["sent"] == 4 * 3000


def test_a_database_from_an_earlier_version_is_converted_to_give_space_back(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "feeds.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE older (x)").connection.close()
    ledger = Ledger.open(path, clock=clock)
    assert ledger.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    people = [f"reader{i}@example.org" for i in range(2000)]
    for day in range(1, 4):
        ledger.queue([_day(day)], people)
        _deliver(ledger, f"2024-05-{day:02d}")
    ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size
    clock.now += KEEP + timedelta(days=5)

    retention.compact(ledger, keep=KEEP)
    freed = retention.reclaim(ledger.conn)

    assert ledger.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert freed > 0 and path.stat().st_size <= before - freed
    assert ledger.counts()["sent"] == 3 * 2000
    ledger.close()


def test_a_dry_run_replaces_the_outbox_of_the_dry_run_before_it(tmp_path: Path) -> None:
    from feeds.personalize import Job
    from feeds.subscribers import parse_subscribers
    from feeds.tally import Tally

    people = parse_subscribers("email\na@example.org\nb@example.org\n").subscribers
    outbox = tmp_path / "outbox"
    write_outbox([Job("2024-05-06", p, "<x>") for p in people], lambda _: b"x", outbox, Tally())
    write_outbox([Job("2024-05-06", people[0], "<x>")], lambda _: b"y", outbox, Tally())

    assert [p.name for p in (outbox / "2024-05-06").iterdir()] == ["a@example.org.eml"]
    assert retention.remove_outboxes(outbox, ["2024-05-06", "2024-05-07"]) == 1
    assert not (outbox / "2024-05-06").exists()


def test_parsed_copies_of_contents_no_file_has_are_removed_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    conn = state.connect(tmp_path / "feeds.sqlite3")
    old = "2024-01-01T00:00:00+00:00"
    for content in ("current", "published", "edited-away", "recent"):
        seen = "2024-06-01T00:00:00+00:00" if content == "recent" else old
        conn.execute(
            "INSERT INTO digests (content_hash, first_seen) VALUES (?, ?)", (content, seen)
        )
    conn.execute(
        "INSERT INTO files (name, size, mtime_ns, content_hash) VALUES ('a.txt', 1, 1, 'current')"
    )
    state.set_meta(conn, "published", '["published"]')

    removed = retention.prune_digests(conn, before=datetime(2024, 5, 1, tzinfo=UTC))

    left = {row[0] for row in conn.execute("SELECT content_hash FROM digests")}
    conn.close()
    assert removed == 1 and left == {"current", "published", "recent"}


def test_the_first_layout_is_migrated_row_for_row_and_stays_exactly_once(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "feeds.sqlite3"
    state.connect(path).close()
    conn = sqlite3.connect(path)
    conn.executescript(_FIRST_LAYOUT)
    conn.close()

    ledger = Ledger.open(path, clock=clock)

    statuses = {(e.digest_id, e.recipient): (e.status, e.message_id, e.last_reply)
                for e in ledger.entries()}
    assert statuses == {
        ("2024-05-05", "a@example.org"): ("sent", None, None),
        ("2024-05-05", "gone@example.org"): (
            "failed_permanent", f"<2024-05-05.{HASH}@example.org>", "550 no such user"
        ),
        ("2024-05-06", "a@example.org"): ("sending", "<2024-05-06.x@example.org>", None),
    }
    (doubt,) = ledger.iter_due()
    assert doubt.queued == "2024-05-06T07:00:00+00:00" and doubt.attempts == 1
    found = ledger.by_message_hash(HASH)
    assert found is not None and found.recipient == "gone@example.org"
    ledger.queue([_day(6), _day(5)], ["a@example.org", "gone@example.org"])
    assert ledger.count_due() == (1, 1)
    assert ledger.get_meta("sent_for") == "mark"


_FIRST_LAYOUT = f"""
CREATE TABLE ledger (
    digest_id TEXT NOT NULL, recipient TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_reply TEXT, message_id TEXT, queued TEXT NOT NULL,
    first_attempt TEXT, updated TEXT NOT NULL, PRIMARY KEY (digest_id, recipient)
) WITHOUT ROWID;
CREATE INDEX ledger_by_status ON ledger (status, digest_id);
CREATE INDEX ledger_by_hash ON ledger (substr(message_id, instr(message_id, '@') - 24, 24));
CREATE TABLE ledger_digests (digest_id TEXT PRIMARY KEY, digest_date TEXT,
    registered TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE ledger_subscribers (recipient TEXT PRIMARY KEY, enrolled TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO ledger_meta VALUES ('sent_for', 'mark');
INSERT INTO ledger_digests VALUES
    ('2024-05-05', '2024-05-05T00:00:00+00:00', '2024-05-05T07:00:00+00:00'),
    ('2024-05-06', '2024-05-06T00:00:00+00:00', '2024-05-06T07:00:00+00:00');
INSERT INTO ledger_subscribers VALUES ('a@example.org', '2024-05-05T07:00:00+00:00'),
    ('gone@example.org', '2024-05-05T07:00:00+00:00');
INSERT INTO ledger VALUES
    ('2024-05-05', 'a@example.org', 'sent', 1, '250 ok', '<2024-05-05.{"0" * 24}@example.org>',
     '2024-05-05T07:00:00+00:00', '2024-05-05T07:00:01+00:00', '2024-05-05T07:00:02+00:00'),
    ('2024-05-05', 'gone@example.org', 'failed_permanent', 1, '550 no such user',
     '<2024-05-05.{HASH}@example.org>', '2024-05-05T07:00:00+00:00',
     '2024-05-05T07:00:01+00:00', '2024-05-05T07:00:02+00:00'),
    ('2024-05-06', 'a@example.org', 'sending', 1, NULL, '<2024-05-06.x@example.org>',
     '2024-05-06T07:00:00+00:00', '2024-05-06T07:00:01+00:00', '2024-05-06T07:00:01+00:00');
"""
