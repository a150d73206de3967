"""The ledger in a real SQLite file: which digests are queued to whom, and the row lifecycle."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feeds.ledger import BACKFILL_WINDOW, DigestRef, Ledger

NOW = datetime(2022, 8, 14, 7, 0, tzinfo=UTC)


def _day(iso: str) -> DigestRef:
    return DigestRef(iso, datetime.fromisoformat(iso + "T08:00:00+08:00"))


ARCHIVE = [_day(f"2022-08-{d:02d}") for d in range(13, 0, -1)]  # newest first


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.open(tmp_path / "state" / "feeds.sqlite3", clock=lambda: NOW)


def _queued(ledger: Ledger) -> set[tuple[str, str]]:
    return {(e.digest_id, e.recipient) for e in ledger.entries() if e.status == "pending"}


def test_a_first_run_over_an_archive_queues_only_the_newest_digest(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org", "b@example.org"])

    assert _queued(ledger) == {("2022-08-13", "a@example.org"), ("2022-08-13", "b@example.org")}


def test_a_new_digest_goes_to_everyone_already_subscribed(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    ledger.queue([_day("2022-08-15"), _day("2022-08-14"), *ARCHIVE], ["a@example.org"])

    assert _queued(ledger) == {
        ("2022-08-13", "a@example.org"),
        ("2022-08-14", "a@example.org"),
        ("2022-08-15", "a@example.org"),
    }


def test_a_subscriber_added_later_gets_the_newest_digest_not_the_archive(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    ledger.queue([_day("2022-08-14"), *ARCHIVE], ["a@example.org", "late@example.org"])

    assert {d for d, r in _queued(ledger) if r == "late@example.org"} == {"2022-08-14"}


def test_an_archive_file_added_later_is_not_mailed_but_a_late_one_within_a_week_is(
    ledger: Ledger,
) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    old = _day("2019-05-01")
    late = DigestRef("2022-08-07-weekly", datetime(2022, 8, 7, tzinfo=UTC))
    ledger.queue([*ARCHIVE, late, old], ["a@example.org"])

    digests = {d for d, _ in _queued(ledger)}
    assert late.id in digests and old.id not in digests
    assert late.date is not None and ARCHIVE[0].date is not None
    assert ARCHIVE[0].date - late.date < BACKFILL_WINDOW


def test_an_explicit_digest_id_is_queued_to_every_listed_subscriber(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org", "b@example.org"], only="2022-08-01")

    assert {r for d, r in _queued(ledger) if d == "2022-08-01"} == {
        "a@example.org", "b@example.org"
    }


def test_queueing_twice_changes_nothing(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    first = ledger.entries()
    ledger.queue(ARCHIVE, ["a@example.org"])

    assert ledger.entries() == first


def test_addresses_are_one_subscriber_whatever_their_case(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["Ada@Example.org"])
    ledger.queue([_day("2022-08-14"), *ARCHIVE], ["ada@example.org"])

    assert _queued(ledger) == {
        ("2022-08-13", "ada@example.org"), ("2022-08-14", "ada@example.org")
    }


def test_leaving_the_list_cancels_what_was_queued_and_coming_back_is_a_new_subscription(
    ledger: Ledger,
) -> None:
    ledger.queue(ARCHIVE, ["a@example.org", "b@example.org"])
    ledger.due(["b@example.org"])
    ledger.queue([_day("2022-08-14"), *ARCHIVE], ["b@example.org"])
    ledger.queue([_day("2022-08-15"), _day("2022-08-14"), *ARCHIVE], ["a@example.org",
                                                                       "b@example.org"])

    statuses = {(e.digest_id, e.recipient): e.status for e in ledger.entries()}
    assert statuses[("2022-08-13", "a@example.org")] == "cancelled"
    # Not on the list when 08-14 arrived; back for 08-15, which is then the newest.
    assert ("2022-08-14", "a@example.org") not in statuses
    assert statuses[("2022-08-15", "a@example.org")] == "pending"


def test_an_empty_list_unsubscribes_nobody(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    ledger.queue(ARCHIVE, [])
    ledger.queue([_day("2022-08-14"), *ARCHIVE], ["a@example.org"])

    assert ("2022-08-14", "a@example.org") in _queued(ledger)


def test_a_row_moves_from_pending_through_sending_to_sent(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    ledger.mark_sending("2022-08-13", "a@example.org", "<m@example.org>")
    (sending,) = ledger.entries()
    ledger.finish("2022-08-13", "a@example.org", "sent", "250 2.0.0 Queued")
    (sent,) = ledger.entries()

    assert (sending.status, sending.attempts, sending.message_id) == (
        "sending", 1, "<m@example.org>"
    )
    # A sent row keeps neither the 250 nor the Message-ID (made again from the row).
    assert (sent.status, sent.attempts, sent.last_reply, sent.message_id) == (
        "sent", 1, None, None
    )
    assert sent.first_attempt == NOW.isoformat(timespec="seconds")
    assert ledger.due(["a@example.org"]) == []


def test_a_row_left_sending_by_a_crash_is_due_again_with_its_message_id(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    ledger.mark_sending("2022-08-13", "a@example.org", "<m@example.org>")

    (entry,) = ledger.due(["a@example.org"])

    assert (entry.status, entry.message_id) == ("sending", "<m@example.org>")


def test_a_failure_before_data_counts_as_an_attempt(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org"])
    ledger.finish("2022-08-13", "a@example.org", "failed_temporary", "RCPT: 451", attempted=True)

    (entry,) = ledger.due(["a@example.org"])

    assert (entry.status, entry.attempts) == ("failed_temporary", 1)


def test_rows_queued_more_than_three_days_ago_are_given_up(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite3"
    early = Ledger.open(path, clock=lambda: NOW)
    early.queue(ARCHIVE, ["a@example.org"])
    early.finish("2022-08-13", "a@example.org", "failed_temporary", "RCPT: 451 busy",
                 attempted=True)
    early.close()
    later = Ledger.open(path, clock=lambda: NOW + timedelta(days=3, hours=1))

    assert later.due(["a@example.org"]) == []
    (entry,) = later.entries()
    assert entry.status == "failed_permanent"
    assert entry.last_reply == "gave up after 3 days: RCPT: 451 busy"


def test_a_preview_queues_nothing(ledger: Ledger) -> None:
    with ledger.preview():
        ledger.queue(ARCHIVE, ["a@example.org"])
        inside = ledger.due(["a@example.org"])

    assert [e.digest_id for e in inside] == ["2022-08-13"]
    assert ledger.entries() == [] and ledger.known_digests() == set()


def test_the_ledger_lives_in_the_state_file_beside_the_builds_tables(tmp_path: Path) -> None:
    from feeds import state

    path = tmp_path / "feeds.sqlite3"
    state.connect(path).close()
    Ledger.open(path).close()

    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert {"ledger", "ledger_digests", "ledger_subscribers", "digests"} <= tables
    assert mode == "wal"


def test_threads_can_record_outcomes_at_once(ledger: Ledger) -> None:
    people = [f"r{i}@example.org" for i in range(40)]
    ledger.queue(ARCHIVE, people)

    def work(chunk: list[str]) -> None:
        for person in chunk:
            ledger.mark_sending("2022-08-13", person, f"<{person}>")
            ledger.finish("2022-08-13", person, "sent", "250 ok")

    threads = [threading.Thread(target=work, args=(people[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert ledger.counts()["sent"] == 40


def test_due_rows_are_read_page_by_page_while_others_are_being_recorded(ledger: Ledger) -> None:
    people = [f"r{i}@example.org" for i in range(7)]
    ledger.queue(ARCHIVE, people)
    ledger.settle(people)
    seen = []
    for entry in ledger.iter_due(page=2):
        seen.append(entry.recipient)
        # Recording an outcome mid-read neither skips nor repeats a row.
        ledger.finish(entry.digest_id, entry.recipient, "sent", "250 ok")

    assert seen == sorted(people)
    assert ledger.count_due() == (0, 0)


def test_the_count_of_due_rows_says_how_many_were_in_doubt(ledger: Ledger) -> None:
    ledger.queue(ARCHIVE, ["a@example.org", "b@example.org"])
    ledger.mark_sending("2022-08-13", "a@example.org", "<m@example.org>")

    assert ledger.count_due() == (2, 1)
    assert ledger.count_due("2022-08-01") == (0, 0)


def test_the_confirmed_subscribers_are_queued_from_the_database_itself(tmp_path: Path) -> None:
    from feeds.audience import Audience
    from feeds.recipients import Confirmed

    path = tmp_path / "feeds.sqlite3"
    with Audience.open(path) as audience:
        audience.add("Ada@Example.org", categories=frozenset({"CV"}))
        audience.add("gone@example.org")
        audience.remove("gone@example.org")
        audience.request("pending@example.org")
        people = Confirmed(audience.conn)
        ledger = Ledger.open(path, clock=lambda: NOW)
        ledger.queue(ARCHIVE, people.keys())

        assert _queued(ledger) == {("2022-08-13", "ada@example.org")}
        assert list(people.keys()) == ["ada@example.org"]
        ada = people.get("ada@example.org")
        assert ada is not None and (ada.email, ada.categories) == (
            "Ada@Example.org", frozenset({"CV"})
        )
        assert people.get("nobody@example.org") is None
        ledger.close()
