"""Addresses that cannot receive mail stop being mailed: a 5xx at once, temporary failures on
five different days, each reported once; VERP envelope senders name the message a bounce is
about, and a forged one names nobody."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import NOW, Clock, sample_issue
from smtp_fixtures import SECRET, SmtpServer, delivery_settings, smtp_server

from feeds import verp
from feeds.addressing import message_id
from feeds.audience import Audience
from feeds.cli import cli
from feeds.config import Settings
from feeds.errors import DeliveryError
from feeds.ledger import Entry, Ledger
from feeds.model import Digest
from feeds.send import Issues, send
from feeds.tally import Failure, Tally

__all__ = ["smtp_server"]
pytestmark = pytest.mark.smtp





def run_send(
    settings: Settings, clock: Clock, audience: Audience, *digests: Digest
) -> tuple[int, list[str], list[str]]:
    """(sent, failed recipients, suppressed recipients) of one send."""
    ledger = Ledger.open(settings.paths.state, clock=clock)
    try:
        tally = send(
            settings, Issues.of(digests), audience.recipients(), ledger, now=clock.now,
            retry_delay=0.01, audience=audience,
        )
    finally:
        ledger.close()
    return (
        tally.sent,
        sorted(f.recipient for f in [*tally.failed, *tally.deferred]),
        sorted(f.recipient for f in tally.suppressed),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_550_suppresses_the_address_and_the_next_digest_skips_it(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    with Audience.open(settings.paths.state, clock=clock) as audience:
        for who in ("ada@example.org", "gone@example.org"):
            audience.add(who)
        smtp_server.handler.rejected = {"gone@example.org"}
        assert run_send(settings, clock, audience, sample_issue(0)) == (
            1, ["gone@example.org"], ["gone@example.org"]
        )
        gone = audience.get("gone@example.org")
        assert gone is not None and gone.status == "suppressed"
        assert gone.reason is not None and "550" in gone.reason and gone.left_at == NOW
        # Nobody takes them back by accident: not a list row, not the web form.
        member, token = audience.request("gone@example.org")
        assert token is None and member is not None and member.status == "suppressed"
        clock.now += timedelta(days=1)
        assert run_send(settings, clock, audience, sample_issue(1), sample_issue(0)) == (1, [], [])
    assert smtp_server.handler.copies() == {"ada@example.org": 2}


def test_temporary_failures_on_five_days_suppress_and_a_quiet_week_resets_the_count(
    tmp_path: Path, clock: Clock
) -> None:
    with Audience.open(tmp_path / "feeds.sqlite3", clock=clock) as audience:
        audience.add("slow@example.org")
        soft = {"limit": 5, "reset_days": 7}
        for day in range(4):
            clock.now = NOW + timedelta(days=day)
            assert not audience.soft_bounce("slow@example.org", "451 try later", **soft)
            # At most one a day.
            assert not audience.soft_bounce("slow@example.org", "451 try later", **soft)
        # A week and a day without one: the count starts again.
        clock.now = NOW + timedelta(days=3 + 8)
        for _ in range(4):
            assert not audience.soft_bounce("slow@example.org", "451 try later", **soft)
            clock.now += timedelta(days=1)
        assert audience.soft_bounce("slow@example.org", "451 4.2.2 mailbox full", **soft)
        slow = audience.get("slow@example.org")
        assert slow is not None and slow.status == "suppressed"
        assert slow.reason == "5 days of temporary failures: 451 4.2.2 mailbox full"
        assert audience.unsuppress("slow@example.org")
        assert audience.get("slow@example.org").status == "confirmed"  # type: ignore[union-attr]
        assert not audience.unsuppress("slow@example.org")


def test_a_send_deferred_by_451_counts_one_soft_bounce_a_day(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    settings = replace(settings, bounces=replace(settings.bounces, soft_limit=2))
    smtp_server.handler.rcpt_temporary = {"slow@example.org": 99}
    with Audience.open(settings.paths.state, clock=clock) as audience:
        audience.add("slow@example.org")
        assert run_send(settings, clock, audience, sample_issue(0)) == (0, ["slow@example.org"], [])
        clock.now += timedelta(days=1)
        assert run_send(settings, clock, audience, sample_issue(1), sample_issue(0)) == (
            0, ["slow@example.org", "slow@example.org"], ["slow@example.org"]
        )
        assert audience.get("slow@example.org").status == "suppressed"  # type: ignore[union-attr]


def send_once(settings: Settings, clock: Clock, audience: Audience, *digests: Digest) -> Tally:
    ledger = Ledger.open(settings.paths.state, clock=clock)
    try:
        return send(
            settings, Issues.of(digests), audience.recipients(), ledger, now=clock.now,
            retry_delay=0.01, audience=audience,
        )
    finally:
        ledger.close()


def test_a_mailbox_that_keeps_deferring_is_reported_once_a_day_and_suppressed_on_the_fifth(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    smtp_server.handler.rcpt_temporary = {"full@example.org": 10**6}
    with Audience.open(settings.paths.state, clock=clock) as audience:
        audience.add("ada@example.org")
        audience.add("full@example.org")
        first = send_once(settings, clock, audience, sample_issue(0))
        assert not first.ok and [f.recipient for f in first.news] == ["full@example.org"]
        busy = "RCPT: 451 4.2.0 Mailbox busy, try again later"
        assert first.failure_lines() == [f"full@example.org: {busy}"]
        # Cron's next runs the same day try again, and say nothing more about it.
        for minutes in (10, 20):
            clock.now = NOW + timedelta(minutes=minutes)
            again = send_once(settings, clock, audience, sample_issue(0))
            assert [f.recipient for f in again.deferred] == ["full@example.org"]
            assert again.ok and again.news == [] and again.failure_lines() == []
        issues = [sample_issue(0)]
        for day in range(1, 5):
            clock.now = NOW + timedelta(days=day)
            issues.insert(0, sample_issue(day))
            tally = send_once(settings, clock, audience, *issues)
            # Each day's new issue is news once; the day an old one is given up, that too.
            told = sorted((f.digest_id, f.reply.split(":")[0]) for f in tally.news)
            expected = [(sample_issue(day).id, "RCPT")]
            if day == 4:
                expected.insert(0, (sample_issue(0).id, "gave up after 3 days"))
            assert told == expected
            gone = [f.recipient for f in tally.suppressed]
            assert gone == (["full@example.org"] if day == 4 else [])
        full = audience.get("full@example.org")
        assert full is not None and full.status == "suppressed"
        assert full.reason == f"5 days of temporary failures: {busy}"
        assert any("(suppressed: no more mail goes there)" in line
                   for line in tally.failure_lines())
        # From now on it is not tried, and nothing is said.
        clock.now = NOW + timedelta(days=5)
        quiet = send_once(settings, clock, audience, sample_issue(5), *issues)
        assert quiet.ok and quiet.deferred == [] and quiet.news == []
        # The operator fixes it; a quiet week later, one more deferral starts a new count.
        assert audience.unsuppress("full@example.org")
        clock.now = NOW + timedelta(days=13)
        fresh = send_once(settings, clock, audience, sample_issue(13))
        assert [f.recipient for f in fresh.news] == ["full@example.org"] and fresh.suppressed == []
        assert audience.get("full@example.org").status == "confirmed"  # type: ignore[union-attr]
    assert smtp_server.handler.copies()["ada@example.org"] == 7


def test_a_connection_the_relay_drops_is_reported_every_run_and_counts_no_soft_bounce(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    settings = replace(settings, bounces=replace(settings.bounces, soft_limit=1))
    smtp_server.handler.cut_after = 0
    with Audience.open(settings.paths.state, clock=clock) as audience:
        audience.add("ada@example.org")
        for day in range(3):
            clock.now = NOW + timedelta(days=day)
            tally = send_once(settings, clock, audience, sample_issue(day))
            assert not tally.ok and tally.suppressed == []
            # Dropped once the whole message went out: in doubt, not sent again in the run;
            # sent again by the next run up to max_attempts sends, then given up.
            assert [n.reply.split(":")[0] for n in tally.news] == (
                ["no answer after the message was sent"] if day == 0 else
                ["gave up", "no answer after the message was sent"]
            )
            assert not any(n.mailbox for n in tally.news)
        assert audience.get("ada@example.org").status == "confirmed"  # type: ignore[union-attr]


def test_a_5xx_after_the_message_data_about_its_content_suppresses_nobody(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    # A content filter's refusal (5.7.1) is about the message, not the mailbox: the message
    # fails for good and is reported, and the address stays.
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    smtp_server.handler.data_rejected = {"filtered@example.org"}
    with Audience.open(settings.paths.state, clock=clock) as audience:
        audience.add("filtered@example.org")
        tally = send_once(settings, clock, audience, sample_issue(0))
        refused = "DATA: 554 5.7.1 Message refused for this mailbox"
        assert [f.reply for f in tally.failed] == [refused] and tally.suppressed == []
        assert audience.get("filtered@example.org").status == "confirmed"  # type: ignore[union-attr]
        clock.now += timedelta(days=1)
        assert send_once(settings, clock, audience, sample_issue(1)).queued == 1


@pytest.mark.parametrize(("stage", "reply"), [
    ("RCPT", "554 5.7.1 <{address}>: Relay access denied"),
    ("RCPT", "450 4.1.8 <digest@example.org>: Sender address rejected: Domain not found"),
    ("RCPT", "450 4.7.1 Too many recipients from 192.0.2.1, slow down"),
    ("DATA", "552 5.3.4 Message size exceeds fixed limit"),
    ("DATA", "451 4.7.1 Please try again later"),
])
def test_a_refusal_by_the_relays_policy_or_of_the_message_suppresses_nobody(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock, stage: str, reply: str
) -> None:
    # Said to every recipient alike, it would have taken the whole list off in one run (or,
    # for a rate limit, the same tail of the list after a few days).
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    settings = replace(settings, bounces=replace(settings.bounces, soft_limit=1))
    handler = smtp_server.handler

    async def refuse_rcpt(server: object, session: object, envelope: object, address: str,
                          options: list[str]) -> str:
        return reply.format(address=address)

    async def refuse_data(server: object, session: object, envelope: object) -> str:
        return reply

    if stage == "RCPT":
        handler.handle_RCPT = refuse_rcpt  # type: ignore[method-assign]
    else:
        handler.handle_DATA = refuse_data  # type: ignore[method-assign]
    with Audience.open(settings.paths.state, clock=clock) as audience:
        for n in range(4):
            audience.add(f"r{n}@example.org")
        for day in range(2):
            clock.now = NOW + timedelta(days=day)
            tally = send_once(settings, clock, audience, sample_issue(day))
            assert tally.suppressed == [] and not tally.ok
        # Everyone still confirmed: the next issue goes to all four.
        assert len(audience.recipients().subscribers) == 4


def test_a_mailbox_refused_after_the_data_is_suppressed(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)

    async def disabled(server: object, session: object, envelope: object) -> str:
        return "550 5.2.1 Mailbox disabled, not accepting messages"

    smtp_server.handler.handle_DATA = disabled  # type: ignore[method-assign]
    with Audience.open(settings.paths.state, clock=clock) as audience:
        audience.add("gone@example.org")
        tally = send_once(settings, clock, audience, sample_issue(0))
        assert [f.recipient for f in tally.suppressed] == ["gone@example.org"]
        assert audience.get("gone@example.org").status == "suppressed"  # type: ignore[union-attr]


def test_the_failure_lines_name_ten_recipients_then_count_the_rest() -> None:
    tally = Tally(failed=[
        Failure("2024-05-06", f"r{n:02}@example.org", "RCPT: 550 5.1.1 No such user")
        for n in range(12)
    ])
    lines = tally.failure_lines()
    assert len(lines) == 11 and lines[-1] == "and 2 more"
    assert lines[0] == "r00@example.org: RCPT: 550 5.1.1 No such user"
    assert not tally.ok


def test_each_message_goes_out_with_a_verp_sender_that_names_it(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    settings = delivery_settings(tmp_path, smtp_server)
    settings = replace(
        settings,
        newsletter=replace(settings.newsletter, bounce_address="bounces@digest.example.org"),
    )
    with Audience.open(settings.paths.state, clock=clock) as audience:
        audience.add("ada@example.org")
        run_send(settings, clock, audience, sample_issue(0))
    (received,) = smtp_server.handler.received
    sender = received.sender
    assert sender.startswith("bounces+") and sender.endswith("@digest.example.org")
    assert len(sender.partition("@")[0]) <= 64
    found = verp.read_token(sender, SECRET)
    assert found is not None and found == verp.message_hash(received.message_id)
    ledger = Ledger.open(settings.paths.state)
    try:
        entry = ledger.by_message_hash(found)
    finally:
        ledger.close()
    assert entry is not None and (entry.recipient, entry.digest_id) == (
        "ada@example.org", sample_issue(0).id
    )
    # A forged or altered token names nobody.
    assert verp.read_token(sender, "another secret") is None
    tampered = sender.replace(found, "0" * 24)
    assert verp.read_token(tampered, SECRET) is None
    assert verp.read_token("bounces@digest.example.org", SECRET) is None


def test_a_test_copy_keeps_the_plain_bounce_address() -> None:
    assert verp.envelope_sender("b@x.org", "<random@x.org>", SECRET) == "b@x.org"
    entry = Entry("2024-01-01", "a@x.org", "pending", 0, None, None, "", None, "")
    sent_as = message_id(entry, Settings())
    found = verp.message_hash(sent_as)
    assert found is not None
    assert verp.read_token(verp.envelope_sender("b@x.org", sent_as, SECRET), SECRET) == found


def test_the_operator_lists_and_unsuppresses_an_address(tmp_path: Path) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text('[paths]\nstate = "state/feeds.sqlite3"\n', encoding="utf-8")
    with Audience.open(tmp_path / "state" / "feeds.sqlite3") as audience:
        audience.add("gone@example.org")
        audience.suppress("gone@example.org", "RCPT: 550 5.1.1 No such user")
    runner = CliRunner()
    listed = runner.invoke(
        cli, ["-c", str(config), "subscribers", "list", "--status", "suppressed"]
    )
    assert "gone@example.org  suppressed" in listed.stdout
    assert "RCPT: 550 5.1.1 No such user" in listed.stdout
    done = runner.invoke(cli, ["-c", str(config), "subscribers", "unsuppress", "gone@example.org"])
    assert done.exit_code == 0, done.output
    again = runner.invoke(cli, ["-c", str(config), "subscribers", "unsuppress", "gone@example.org"])
    assert again.exit_code == 1 and "is not suppressed" in again.output


def test_an_unsubscribe_arriving_during_a_send_is_honoured_at_once(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    import threading

    from smtp_fixtures import Gate

    settings = delivery_settings(tmp_path, smtp_server)
    with Audience.open(settings.paths.state, clock=clock) as audience:
        for who in ("a1@example.org", "a2@example.org", "a3@example.org"):
            audience.add(who)
        # The send stops at its second recipient's RCPT; meanwhile the third one leaves.
        gate = Gate("RCPT", number=2)
        smtp_server.handler.gate = gate

        def leave() -> None:
            assert gate.reached.wait(30)
            with Audience.open(settings.paths.state) as web:
                web.unsubscribe("a3@example.org", reason="one-click")
            gate.released.set()

        helper = threading.Thread(target=leave)
        helper.start()
        ledger = Ledger.open(settings.paths.state, clock=clock)
        try:
            tally = send(settings, Issues.of([sample_issue(0)]), audience.recipients(), ledger,
                         now=clock.now, retry_delay=0.01, audience=audience)
            statuses = {e.recipient: (e.status, e.last_reply) for e in ledger.entries()}
        finally:
            ledger.close()
        helper.join()
    assert smtp_server.handler.copies() == {"a1@example.org": 1, "a2@example.org": 1}
    assert tally.ok and tally.sent == 2 and tally.cancelled == 1
    assert "1 not sent (left during the send)" in tally.summary()
    assert statuses["a3@example.org"] == ("cancelled", "left before the message went out")


def test_a_dry_run_says_what_would_be_given_up_and_the_real_run_gives_it_up(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    smtp_server.handler.rcpt_temporary = {"full@example.org": 10**6}
    with Audience.open(settings.paths.state, clock=clock) as audience:
        audience.add("full@example.org")
        send_once(settings, clock, audience, sample_issue(0))
        clock.now = NOW + timedelta(days=4)
        ledger = Ledger.open(settings.paths.state, clock=clock)
        try:
            dry = send(settings, Issues.of([sample_issue(0)]), audience.recipients(), ledger,
                       now=clock.now, outbox=tmp_path / "outbox", audience=audience)
        finally:
            ledger.close()
        assert dry.ok and dry.given_up == []
        assert [n.split(": ")[1] for n in dry.notes] == ["would be given up"]
        real = send_once(settings, clock, audience, sample_issue(0))
        assert [f.reply.split(":")[0] for f in real.given_up] == ["gave up after 3 days"]
        assert not real.ok


def test_a_send_that_stops_still_names_the_address_it_suppressed(
    smtp_server: SmtpServer, tmp_path: Path, clock: Clock
) -> None:
    # A 550 for the first reader, then the relay goes away for good: the send stops with an
    # error, and the suppression it made is said with it (it was made, silently).
    handler = smtp_server.handler
    handler.rejected = {"r0@example.org"}
    answer = handler.handle_RCPT
    seen: list[str] = []

    async def then_gone(server: Any, session: Any, envelope: Any, address: str,
                        options: list[str]) -> str:
        seen.append(address)
        if len(seen) == 2:
            server.transport.close()
            handler.max_connections = 0
        return await answer(server, session, envelope, address, options)

    handler.handle_RCPT = then_gone  # type: ignore[method-assign]
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=2)
    with Audience.open(settings.paths.state, clock=clock) as audience:
        for n in range(3):
            audience.add(f"r{n}@example.org")
        with pytest.raises(DeliveryError) as stopped:
            send_once(settings, clock, audience, sample_issue(0))
        assert audience.get("r0@example.org").status == "suppressed"  # type: ignore[union-attr]
    assert stopped.value.failures[0].startswith("r0@example.org: RCPT: 550 5.1.1")
    assert stopped.value.failures[0].endswith("(suppressed: no more mail goes there)")

