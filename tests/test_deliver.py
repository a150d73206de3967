"""Delivery against a real SMTP server on 127.0.0.1 that injects faults: every valid subscriber
gets exactly one copy of each issue, and every permanent failure is on record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT, SAMPLE_DIGESTS, lock_holder
from smtp_fixtures import (
    SECRET,
    Gate,
    SmtpServer,
    delivery_settings,
    running_server,
    smtp_server,
)

from feeds.errors import ConfigError, DeliveryError, LockedError
from feeds.ledger import Ledger
from feeds.lock import send_lock
from feeds.model import Digest
from feeds.parse import parse_file
from feeds.personalize import Job, Messages
from feeds.send import Issues, send, send_due, send_test
from feeds.subscribers import SubscriberList, parse_subscribers
from feeds.tally import Tally
from feeds.unsubscribe import verify_token

__all__ = ["smtp_server"]
pytestmark = pytest.mark.smtp
NOW = datetime(2022, 8, 14, 7, 0, tzinfo=UTC)
FAST = 0.01  # backoff base in seconds: retries without slowing the suite


def _digest(name: str, items: int = 6) -> Digest:
    digest = parse_file(SAMPLE_DIGESTS / name, tz=ZoneInfo("Asia/Shanghai"))
    return replace(digest, items=digest.items[:items])


@pytest.fixture(scope="module")
def newest() -> Digest:
    return _digest("2022-08-13.txt")


@pytest.fixture(scope="module")
def older() -> Digest:
    return _digest("2021-06-17.txt")


def _people(n: int, *, categories: str = "") -> str:
    rows = ["email,name,categories"]
    rows += [f"reader{i}@example.org,Reader {i},{categories}" for i in range(n)]
    return "\n".join(rows) + "\n"


def _run(
    settings: object,
    ctx: Issues,
    people: SubscriberList,
    **kwargs: object,
) -> Tally:
    ledger = Ledger.open(settings.paths.state, clock=lambda: NOW)  # type: ignore[attr-defined]
    try:
        return send(
            settings, ctx, people, ledger, now=NOW, retry_delay=FAST, **kwargs  # type: ignore[arg-type]
        )
    finally:
        ledger.close()


def _statuses_at(root: Path) -> dict[str, str]:
    return _statuses(delivery_settings(root, None))


def _statuses(settings: object) -> dict[str, str]:
    ledger = Ledger.open(settings.paths.state)  # type: ignore[attr-defined]
    try:
        return {f"{e.digest_id} {e.recipient}": e.status for e in ledger.entries()}
    finally:
        ledger.close()


# -- the normal case -------------------------------------------------------------------------


def test_each_subscriber_gets_the_newest_issue_once_and_a_second_run_sends_nothing(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest, older: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    ctx = Issues.of((newest, older))
    people = parse_subscribers(_people(5))

    first = _run(settings, ctx, people)
    second = _run(settings, ctx, people)

    assert first.sent == 5 and first.ok
    assert second.sent == 0 and second.queued == 0
    assert smtp_server.handler.copies() == {f"reader{i}@example.org": 1 for i in range(5)}
    assert set(_statuses(settings).values()) == {"sent"}
    assert all(m.sender == "digest@example.org" for m in smtp_server.handler.received)


def test_one_connection_carries_many_messages(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)

    _run(settings, Issues.of((newest,)), parse_subscribers(_people(12)))

    assert len(smtp_server.handler.received) == 12
    assert smtp_server.handler.connections == 1


def test_several_connections_share_the_work_and_still_send_each_message_once(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, connections=3)
    smtp_server.handler.delay = 0.01

    tally = _run(settings, Issues.of((newest,)), parse_subscribers(_people(30)))

    assert tally.sent == 30
    assert smtp_server.handler.copies() == {f"reader{i}@example.org": 1 for i in range(30)}
    assert smtp_server.handler.connections == 3


def test_a_relay_that_takes_fewer_connections_gets_every_message_over_those_it_takes(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    # Three connections configured, the relay greets all but one with a 421: the others step
    # aside for the run instead of failing their attempts and stopping the send.
    settings = delivery_settings(tmp_path, smtp_server, connections=3, max_attempts=2)
    smtp_server.handler.max_connections = 1
    smtp_server.handler.delay = 0.01
    said: list[str] = []

    tally = _run(settings, Issues.of((newest,)), parse_subscribers(_people(20)), log=said.append)

    assert tally.sent == 20 and tally.ok
    assert smtp_server.handler.copies() == {f"reader{i}@example.org": 1 for i in range(20)}
    assert smtp_server.handler.connections == 1
    assert set(_statuses(settings).values()) == {"sent"}
    aside = [line for line in said if "steps aside" in line]
    assert len(aside) == 2 and all("421 4.7.0 Too many connections" in line for line in aside)


def test_a_relay_that_takes_no_connection_still_stops_the_send(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, connections=2, max_attempts=2)
    smtp_server.handler.max_connections = 0

    with pytest.raises(DeliveryError, match="cannot connect"):
        _run(settings, Issues.of((newest,)), parse_subscribers(_people(4)))

    assert smtp_server.handler.received == []
    assert set(_statuses(settings).values()) == {"pending"}


# -- faults ------------------------------------------------------------------------------------


def test_a_451_at_rcpt_is_retried_within_the_run_until_accepted(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=5)
    smtp_server.handler.rcpt_temporary = {"reader1@example.org": 2}

    tally = _run(settings, Issues.of((newest,)), parse_subscribers(_people(3)))

    assert tally.sent == 3 and tally.ok
    assert smtp_server.handler.copies()["reader1@example.org"] == 1
    ledger = Ledger.open(settings.paths.state)
    entry = next(e for e in ledger.entries() if e.recipient == "reader1@example.org")
    ledger.close()
    assert (entry.status, entry.attempts) == ("sent", 3)


def test_temporary_failures_beyond_the_runs_attempts_are_left_for_the_next_run(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=2)
    smtp_server.handler.rcpt_temporary = {"reader0@example.org": 2}
    smtp_server.handler.data_temporary = {"reader2@example.org": 2}
    ctx = Issues.of((newest,))
    people = parse_subscribers(_people(3))

    first = _run(settings, ctx, people)
    middle = _statuses(settings)
    second = _run(settings, ctx, people)

    assert sorted(f.recipient for f in first.deferred) == [
        "reader0@example.org", "reader2@example.org"
    ]
    assert not first.ok
    assert middle[f"{newest.id} reader0@example.org"] == "failed_temporary"
    assert second.sent == 2 and second.ok
    assert smtp_server.handler.copies() == {f"reader{i}@example.org": 1 for i in range(3)}


def test_a_550_is_recorded_as_permanent_and_never_tried_again(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    smtp_server.handler.rejected = {"reader1@example.org"}
    ctx = Issues.of((newest,))
    people = parse_subscribers(_people(3))

    first = _run(settings, ctx, people)
    refusals = len(smtp_server.handler.replies)
    second = _run(settings, ctx, people)

    assert [(f.recipient, f.reply[:9]) for f in first.failed] == [
        ("reader1@example.org", "RCPT: 550")
    ]
    assert second.queued == 0 and len(smtp_server.handler.replies) == refusals
    ledger = Ledger.open(settings.paths.state)
    entry = next(e for e in ledger.entries() if e.recipient == "reader1@example.org")
    ledger.close()
    assert entry.status == "failed_permanent"
    assert entry.last_reply is not None and "550 5.1.1 No such user here" in entry.last_reply
    assert entry.attempts == 1


def test_421_and_a_closed_connection_after_k_messages_are_survived_by_reconnecting(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    smtp_server.handler.close_after = 3

    tally = _run(settings, Issues.of((newest,)), parse_subscribers(_people(10)))

    assert tally.sent == 10 and tally.ok
    assert smtp_server.handler.copies() == {f"reader{i}@example.org": 1 for i in range(10)}
    assert smtp_server.handler.connections == 4
    assert smtp_server.handler.replies.count(
        "421 4.7.0 Too many messages on one connection, closing"
    ) == 3


def test_a_connection_dropped_during_data_is_retried_and_delivered_once(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    smtp_server.handler.cut_after = 2
    people = parse_subscribers(_people(7))

    tally = _run(settings, Issues.of((newest,)), people)
    # Dropped after the whole message went out: it may have arrived, so this run leaves it
    # in doubt, and the next sends it once, with its Message-ID.
    doubted = [f.recipient for f in tally.deferred]
    assert tally.sent + len(doubted) == 7 and doubted and not tally.ok
    assert all("sent again by the next run" in f.reply for f in tally.deferred)
    smtp_server.handler.cut_after = None
    again = _run(settings, Issues.of((newest,)), people)
    assert again.sent == again.resent_in_doubt == len(doubted)
    assert smtp_server.handler.copies() == {f"reader{i}@example.org": 1 for i in range(7)}


def test_the_final_tally_with_every_fault_at_once(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest, older: Digest
) -> None:
    """451s, 421 + close, cut connections and a 550, two issues, three connections, two runs."""
    settings = delivery_settings(tmp_path, smtp_server, connections=3, max_attempts=3)
    handler = smtp_server.handler
    handler.rcpt_temporary = {"reader3@example.org": 1, "reader7@example.org": 5}
    handler.data_temporary = {"reader4@example.org": 1}
    handler.rejected = {"reader5@example.org"}
    handler.close_after = 4
    csv = _people(12) + "not an address,Broken,\n"
    people = parse_subscribers(csv)
    # Run 1 knows one issue; run 2 sees a new one, which goes to everyone already subscribed.
    _run(settings, Issues.of((older,)), people)
    handler.cut_after = 5
    _run(settings, Issues.of((newest, older)), people)
    handler.cut_after = None
    _run(settings, Issues.of((newest, older)), people)

    valid = {f"reader{i}@example.org" for i in range(12)} - {"reader5@example.org"}
    for issue in (older, newest):
        got: dict[str, int] = {}
        for message in handler.received:
            if issue.id in str(message.parsed()["Message-ID"]):
                for rcpt in message.recipients:
                    got[rcpt] = got.get(rcpt, 0) + 1
        assert got == dict.fromkeys(valid, 1), issue.id
    statuses = _statuses(settings)
    assert statuses[f"{older.id} reader5@example.org"] == "failed_permanent"
    assert statuses[f"{newest.id} reader5@example.org"] == "failed_permanent"
    assert len(people.errors) == 1 and people.errors[0].line == 14


def test_an_unreachable_server_stops_the_run_and_leaves_everything_queued(
    tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, None, max_attempts=2)

    with pytest.raises(DeliveryError, match="cannot connect"):
        _run(settings, Issues.of((newest,)), parse_subscribers(_people(3)))

    assert set(_statuses(settings).values()) == {"pending"}


# -- a sender killed mid-batch -------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two sample digests, built once, for `feeds send` subprocesses."""
    from feeds.build import build

    root = tmp_path_factory.mktemp("built")
    (root / "digests").mkdir()
    for name in ("2021-06-17.txt", "2022-08-13.txt"):
        (root / "digests" / name).write_bytes((SAMPLE_DIGESTS / name).read_bytes())
    build(delivery_settings(root, None), now=NOW, log=lambda _: None)
    return root


def _project(built: Path, tmp_path: Path, server: SmtpServer, people: int) -> Path:
    import shutil

    root = tmp_path / "site"
    shutil.copytree(built, root)
    (root / "subscribers.csv").write_text(_people(people), encoding="utf-8")
    (root / "feeds.toml").write_text(
        # One connection: the tests count what reached the server before the kill.
        f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\n'
        f'connections = 1\ntimeout = 5\n[newsletter]\nunsubscribe_url = "https://digest.example.org/u?t={{token}}"\n',
        encoding="utf-8",
    )
    return root


def _sender(root: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FEEDS_UNSUBSCRIBE_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "feeds.cli", "--config", str(root / "feeds.toml"), "send", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_a_sender_killed_mid_batch_and_restarted_delivers_the_rest_exactly_once(
    built: Path, tmp_path: Path, stage: str
) -> None:
    with running_server() as server:
        root = _project(built, tmp_path, server, people=8)
        gate = Gate(stage, number=4)
        server.handler.gate = gate
        sender = _sender(root)
        assert gate.reached.wait(30), sender.communicate()
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        # The server finishes what it was doing; the sender never hears the reply.
        gate.released.set()
        time.sleep(0.1)
        before = server.handler.copies()
        in_doubt = [
            key.split()[1] for key, status in _statuses_at(root).items() if status == "sending"
        ]
        restarted = _sender(root)
        _, err = restarted.communicate(timeout=60)
        assert restarted.returncode == 0, err.decode()
        copies = server.handler.copies()

    assert sum(before.values()) == (3 if stage == "RCPT" else 4)
    everyone = {f"reader{i}@example.org" for i in range(8)}
    assert set(copies) == everyone
    if stage == "RCPT":
        # Killed before DATA: nothing was in doubt, nobody gets two.
        assert copies == dict.fromkeys(everyone, 1)
    else:
        # Killed while the data was in flight: that one message, and only it, went out twice,
        # both times under the same Message-ID.
        twice = [r for r, n in copies.items() if n == 2]
        assert len(twice) == 1 and sum(copies.values()) == 9
        ids = {m.message_id for m in server.handler.for_recipient(twice[0])}
        assert len(ids) == 1
    assert in_doubt == ([] if stage == "RCPT" else [twice[0]])


def test_a_second_sender_leaves_the_sending_to_the_first(
    built: Path, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    root = _project(built, tmp_path, smtp_server, people=2)
    settings = delivery_settings(root, smtp_server)
    with lock_holder(send_lock(settings.paths.state)), pytest.raises(
        LockedError, match="another `feeds send` or `feeds run` is sending"
    ):
        send_due(settings, now=NOW)
    assert smtp_server.handler.copies() == {}
    assert send_due(settings, now=NOW).sent == 2


# -- the message ---------------------------------------------------------------------------------


def test_a_message_parsed_back_from_the_server_has_both_parts_and_every_list_header(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    people = parse_subscribers("email,name,categories\nada@example.org,Ada Lovelace,\n")

    _run(settings, Issues.of((newest,)), people)

    (received,) = smtp_server.handler.received
    msg = received.parsed()
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert str(msg["From"]) == settings.newsletter.sender
    assert str(msg["To"]) == "Ada Lovelace <ada@example.org>"
    assert newest.id in str(msg["Subject"])
    assert msg["Date"].datetime == NOW
    assert str(msg["Message-ID"]).startswith(f"<{newest.id}.")
    assert "<ml-digest.example.org>" in str(msg["List-Id"])
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    mailto, https = (t.strip(" <>") for t in str(msg["List-Unsubscribe"]).split(","))
    # Clients read List-Unsubscribe raw (RFC 2369): the URL must be there as is, not as an
    # RFC 2047 encoded word, however long the token makes it.
    head = received.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert f"<{https}>" in head.replace("\r\n ", " ")
    assert mailto.startswith("mailto:unsubscribe@example.org")
    token = https.split("token=", 1)[1]
    assert verify_token(token, list_id=settings.newsletter.list_id, secret=SECRET) == (
        "ada@example.org"
    )
    for part in msg.iter_parts():
        assert isinstance(part, EmailMessage)
        assert https in part.get_content(), part.get_content_type()


def test_each_recipient_has_an_own_token_and_message_id(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)

    _run(settings, Issues.of((newest,)), parse_subscribers(_people(3)))

    msgs = [m.parsed() for m in smtp_server.handler.received]
    assert len({str(m["Message-ID"]) for m in msgs}) == 3
    assert len({str(m["List-Unsubscribe"]) for m in msgs}) == 3
    for received, msg in zip(smtp_server.handler.received, msgs, strict=True):
        html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        token = str(msg["List-Unsubscribe"]).rsplit("token=", 1)[1].rstrip(">")
        assert token in html
        assert verify_token(token, list_id=settings.newsletter.list_id, secret=SECRET) == (
            received.recipients[0]
        )


def test_header_injection_through_a_name_or_a_title_is_impossible(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    settings = replace(
        settings, site=replace(settings.site, title="Digest\r\nBcc: title@evil.example.com")
    )
    hostile_item = replace(newest.items[0], title="Paper\r\nBcc: item@evil.example.com")
    digest = replace(newest, items=(hostile_item, *newest.items[1:]))
    people = parse_subscribers(
        'email,name,categories\nvictim@example.org,"Eve\r\nBcc: name@evil.example.com",\n'
        'other@example.org,"Mallory"" <x@evil.example.com>, y@evil.example.com",\n'
    )

    tally = _run(settings, Issues.of((digest,)), people)

    assert tally.sent == 2
    assert smtp_server.handler.copies() == {"victim@example.org": 1, "other@example.org": 1}
    for received in smtp_server.handler.received:
        msg = received.parsed()
        assert msg["Bcc"] is None and msg["Cc"] is None
        assert [a.addr_spec for a in msg["To"].addresses] == list(received.recipients)
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc" not in head


# -- categories --------------------------------------------------------------------------------


def test_one_rendering_per_category_set_and_each_subscriber_gets_only_their_categories(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    digest = _digest("2022-08-13.txt", items=40)
    settings = delivery_settings(tmp_path, smtp_server)
    people = parse_subscribers(
        "email,name,categories\n"
        "all@example.org,,\n"
        "cv@example.org,,CV\n"
        "cv2@example.org,,cv\n"
        "cvcl@example.org,,CL CV\n"
        "robots@example.org,,RO\n"
    )
    messages = Messages(settings, {digest.id: digest}, now=NOW)
    for person in people.subscribers:
        messages.stencil(Job(digest.id, person, "<x@example.org>"))

    tally = _run(settings, Issues.of((digest,)), people)

    # All, CV (however spelt), CL+CV, and RO, which this digest does not have.
    assert len(messages._stencils) == 4
    assert tally.sent == 4 and tally.skipped == 1
    assert _statuses(settings)[f"{digest.id} robots@example.org"] == "skipped"
    subjects = {
        m.recipients[0]: str(m.parsed()["Subject"]) for m in smtp_server.handler.received
    }
    assert "CV" in subjects["cv@example.org"] and "CL" not in subjects["cv@example.org"]
    assert subjects["cv@example.org"] == subjects["cv2@example.org"]
    assert "CL, CV" in subjects["cvcl@example.org"]


# -- dry run and test copy ---------------------------------------------------------------------


def test_a_dry_run_writes_eml_files_connects_to_nothing_and_changes_nothing(
    tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, None)
    outbox = tmp_path / "outbox"

    tally = _run(settings, Issues.of((newest,)), parse_subscribers(_people(3)),
                 outbox=outbox)

    files = sorted(p.name for p in (outbox / newest.id).iterdir())
    assert files == [f"reader{i}@example.org.eml" for i in range(3)]
    assert tally.sent == 0 and len(tally.written) == 3
    assert _statuses(settings) == {}
    from email import message_from_bytes, policy

    msg = message_from_bytes((outbox / newest.id / files[0]).read_bytes(), policy=policy.default)
    assert str(msg["To"]) == "Reader 0 <reader0@example.org>"


def test_a_test_copy_goes_to_one_address_and_stays_out_of_the_ledger(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest, older: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)

    reply = send_test(settings, Issues.of((newest, older)), "me@example.com", now=NOW,
                      digest_id=older.id)

    assert reply.startswith("250")
    (received,) = smtp_server.handler.received
    assert received.recipients == ("me@example.com",)
    assert older.id in str(received.parsed()["Subject"])
    assert not settings.paths.state.exists() or _statuses(settings) == {}


def test_an_unknown_digest_id_is_an_error_naming_the_known_ones(
    tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, None)
    with pytest.raises(DeliveryError, match="no digest '1999-01-01'") as caught:
        _run(settings, Issues.of((newest,)), parse_subscribers(_people(1)),
             digest_id="1999-01-01")
    assert newest.id in str(caught.value)


def test_an_unsubscribe_url_without_a_secret_stops_before_anything_is_sent(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, secret=None)
    with pytest.raises(ConfigError, match="FEEDS_UNSUBSCRIBE_SECRET"):
        _run(settings, Issues.of((newest,)), parse_subscribers(_people(1)))
    assert smtp_server.handler.received == []


# -- pace and login ----------------------------------------------------------------------------


def test_messages_per_second_spaces_the_messages_out(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, messages_per_second=40.0, connections=2)
    started = time.monotonic()

    _run(settings, Issues.of((newest,)), parse_subscribers(_people(9)))

    # Nine messages at 40 per second need at least eight intervals of 25 ms.
    assert time.monotonic() - started >= 0.2
    assert len(smtp_server.handler.received) == 9


@pytest.fixture
def login_server() -> Iterator[SmtpServer]:
    with running_server(login=("mailer", "s3cr3t-Pa55")) as server:
        yield server


def test_login_with_the_password_from_the_environment_sends(
    login_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, login_server, username="mailer")
    settings = replace(settings, smtp=replace(settings.smtp, password="s3cr3t-Pa55"))

    tally = _run(settings, Issues.of((newest,)), parse_subscribers(_people(2)))

    assert tally.sent == 2


def test_a_refused_login_stops_the_run_and_never_shows_the_password(
    login_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, login_server, username="mailer")
    settings = replace(settings, smtp=replace(settings.smtp, password="wrong-Pa55word"))

    with pytest.raises(DeliveryError, match="refused the login") as caught:
        _run(settings, Issues.of((newest,)), parse_subscribers(_people(2)))

    text = str(caught.value) + repr(caught.value) + repr(settings)
    assert "wrong-Pa55word" not in text
    assert login_server.handler.received == []


def test_a_username_without_a_password_is_a_clear_error(
    login_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, login_server, username="mailer")
    with pytest.raises(DeliveryError, match="FEEDS_SMTP_PASSWORD"):
        _run(settings, Issues.of((newest,)), parse_subscribers(_people(1)))


def test_a_newsletter_not_delivered_within_three_days_is_given_up(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    smtp_server.handler.rcpt_temporary = {"reader0@example.org": 99}
    ctx = Issues.of((newest,))
    people = parse_subscribers(_people(1))
    _run(settings, ctx, people)

    ledger = Ledger.open(settings.paths.state, clock=lambda: NOW + timedelta(days=4))
    try:
        later = send(settings, ctx, people, ledger, now=NOW + timedelta(days=4))
        (entry,) = ledger.entries()
    finally:
        ledger.close()

    assert later.queued == 0
    assert entry.status == "failed_permanent"
    assert entry.last_reply is not None and entry.last_reply.startswith("gave up after 3 days")


def test_a_send_loads_only_the_digests_it_sends_and_nothing_when_nothing_is_new(
    built: Path, tmp_path: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feeds import store

    root = _project(built, tmp_path, smtp_server, people=2)
    settings = delivery_settings(root, smtp_server)
    loads: list[list[str]] = []
    load_published = store.load_published

    def counting(conn: object, ids: list[str]) -> dict[str, Digest]:
        loads.append(sorted(ids))
        return load_published(conn, ids)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "load_published", counting)
    first = send_due(settings, now=NOW)
    again = send_due(settings, now=NOW)
    with (root / "subscribers.csv").open("a", encoding="utf-8") as f:
        f.write("newcomer@example.org,,\n")
    third = send_due(settings, now=NOW)

    assert (first.sent, again.sent, third.sent) == (2, 0, 1)
    # Two digests were published; each send loaded the one it sent, the no-op none.
    assert loads == [["2022-08-13"], ["2022-08-13"]]
    assert smtp_server.handler.copies()["newcomer@example.org"] == 1


def test_a_long_unsubscribe_link_stays_one_raw_url_in_list_unsubscribe(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    """The email package would fold it into RFC 2047 encoded words, which no client follows."""
    template = (
        "https://newsletters.digest.example.org/lists/ml-digest/unsubscribe/one-click"
        "?token={token}"
    )
    settings = delivery_settings(tmp_path, smtp_server, unsubscribe_url=template)

    _run(settings, Issues.of((newest,)), parse_subscribers(_people(2)))

    for received in smtp_server.handler.received:
        head = received.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
        field = head.split("\r\nList-Unsubscribe: ", 1)[1].split("\r\nList-Unsubscribe-Post")[0]
        assert "=?" not in field
        url = field.split("\r\n ")[1].strip("<>")
        assert url.startswith("https://newsletters.digest.example.org/lists/")
        token = url.split("token=", 1)[1]
        assert verify_token(token, list_id=settings.newsletter.list_id, secret=SECRET) == (
            received.recipients[0]
        )


def test_a_server_that_stops_answering_times_out_and_the_message_is_retried(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    settings = replace(settings, smtp=replace(settings.smtp, timeout=0.3))
    gate = Gate("RCPT", number=1)
    smtp_server.handler.gate = gate
    threading.Timer(1.0, gate.released.set).start()

    tally = _run(settings, Issues.of((newest,)), parse_subscribers(_people(2)))

    assert tally.sent == 2 and tally.ok
    assert smtp_server.handler.copies() == {"reader0@example.org": 1, "reader1@example.org": 1}
    ledger = Ledger.open(settings.paths.state)
    attempts = {e.recipient: e.attempts for e in ledger.entries()}
    ledger.close()
    assert attempts == {"reader0@example.org": 2, "reader1@example.org": 1}


def test_a_sender_killed_at_an_unplanned_moment_never_sends_more_than_one_copy_twice(
    built: Path, tmp_path: Path
) -> None:
    with running_server() as server:
        root = _project(built, tmp_path, server, people=12)
        server.handler.delay = 0.03
        sender = _sender(root)
        deadline = time.monotonic() + 30
        while len(server.handler.received) < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        killed_after = len(server.handler.received)
        restarted = _sender(root)
        _, err = restarted.communicate(timeout=60)
        assert restarted.returncode == 0, err.decode()
        copies = server.handler.copies()
        twice = [r for r, n in copies.items() if n > 1]
        ids = {m.message_id for r in twice for m in server.handler.for_recipient(r)}

    assert 5 <= killed_after < 12
    assert set(copies) == {f"reader{i}@example.org" for i in range(12)}
    assert len(twice) <= 1 and max(copies.values()) <= 2
    assert len(ids) == len(twice)


def test_progress_is_reported_up_to_the_total(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    smtp_server.handler.delay = 0.05
    calls: list[tuple[int, int]] = []

    _run(settings, Issues.of((newest,)), parse_subscribers(_people(8)),
         progress=lambda done, total: calls.append((done, total)))

    assert calls[-1] == (8, 8)
    assert len(calls) > 1 and all(total == 8 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


# -- a message the server may have taken -----------------------------------------------------


def _settled(handler: SmtpServer, count: int) -> None:
    """Wait for the server to finish taking `count` messages it answers late."""
    deadline = time.monotonic() + 10
    while len(handler.handler.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)


def test_a_message_sent_whole_without_an_answer_is_sent_again_once_a_run_up_to_max_attempts(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    # The relay takes the message, then answers later than [smtp] timeout (a slow content
    # scan): it may have taken it, so the run does not send it again; each later run does,
    # once, with the same Message-ID, and after max_attempts sends it is given up.
    smtp_server.handler.answer_delay = 0.6
    settings = delivery_settings(tmp_path, smtp_server, timeout=0.2, max_attempts=3)
    people = parse_subscribers(_people(1))
    key = f"{newest.id} reader0@example.org"
    first = _run(settings, Issues.of((newest,)), people)
    _settled(smtp_server, 1)
    assert smtp_server.handler.copies() == {"reader0@example.org": 1}
    assert first.sent == 0 and "sent again by the next run" in first.deferred[0].reply
    assert _statuses(settings) == {key: "sending"}

    runs = [_run(settings, Issues.of((newest,)), people) for _ in range(3)]
    _settled(smtp_server, 3)
    assert smtp_server.handler.copies() == {"reader0@example.org": 3}
    ids = {m.parsed()["Message-ID"] for m in smtp_server.handler.received}
    assert len(ids) == 1
    assert _statuses(settings) == {key: "failed_permanent"}
    # Sent by the first run and the next two; the third finds it sent three times.
    assert [len(r.given_up) for r in runs] == [0, 0, 1]
    assert runs[2].given_up[0].reply.startswith("gave up: sent 3 times without an answer")


def test_refusals_before_a_message_left_in_doubt_do_not_count_as_its_sends(
    smtp_server: SmtpServer, tmp_path: Path, newest: Digest
) -> None:
    # Three 451s use up a run's tries; the next run's send gets no answer in time; the run
    # after that must still send it (it went out once), not give it up.
    handler = smtp_server.handler
    handler.rcpt_temporary = {"reader0@example.org": 3}
    settings = delivery_settings(tmp_path, smtp_server, timeout=0.2, max_attempts=3)
    people = parse_subscribers(_people(1))
    key = f"{newest.id} reader0@example.org"
    assert _run(settings, Issues.of((newest,)), people).sent == 0
    handler.answer_delay = 0.6
    _run(settings, Issues.of((newest,)), people)
    _settled(smtp_server, 1)
    assert _statuses(settings) == {key: "sending"}
    handler.answer_delay = 0.0
    last = _run(settings, Issues.of((newest,)), people)
    assert last.given_up == [] and last.sent == 1
    assert _statuses(settings) == {key: "sent"}

