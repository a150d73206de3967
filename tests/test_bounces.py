"""Bounces: delivery status notifications for newsletters really sent (through aiosmtpd, with a
VERP envelope sender) are delivered into a real Maildir, or uploaded to a real Dovecot, and
read back: a permanent failure suppresses the address it is about, a temporary one counts,
and a forged, unknown, oversized or unreadable notification is filed away changing nobody,
while a person's reply stays where it was, unread."""

from __future__ import annotations

import base64
import imaplib
import mailbox
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
from conftest import FIXTURES, NOW, SAMPLE_DIGESTS, Clock, sample_issue
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from imap_fixtures import Dovecot, running_dovecot
from smtp_fixtures import SECRET, SmtpServer, delivery_settings, smtp_server

from feeds import dsn, verp
from feeds.audience import Audience
from feeds.bounces import MAX_MESSAGE_BYTES, BounceReport
from feeds.config import Settings
from feeds.errors import ConfigError
from feeds.ledger import Ledger
from feeds.mailbox import MailboxError, fetched_message, process_imap, process_maildir
from feeds.send import Issues, send

__all__ = ["smtp_server"]
pytestmark = pytest.mark.smtp
BOUNCES = FIXTURES / "bounces"
BOUNCE_ADDRESS = "bounces@digest.example.org"
PEOPLE = ("ada@example.org", "bob@example.org", "cy@example.org")



@dataclass(frozen=True)
class Sent:
    """One newsletter as the SMTP server received it."""

    recipient: str
    verp: str  # the envelope sender: where its bounce goes
    message_id: str


@dataclass
class World:
    settings: Settings
    clock: Clock
    smtp: SmtpServer
    maildir: Path
    lines: list[str]

    def send(self, day: int = 0) -> dict[str, Sent]:
        """Send the digest of `day` to every confirmed subscriber; what each one got."""
        before = len(self.smtp.handler.received)
        ledger = Ledger.open(self.settings.paths.state, clock=self.clock)
        try:
            with Audience.open(self.settings.paths.state, clock=self.clock) as audience:
                send(
                    self.settings, Issues.of([sample_issue(day)]), audience.recipients(), ledger,
                    now=self.clock.now, retry_delay=0.01, audience=audience,
                )
        finally:
            ledger.close()
        return {
            r.recipients[0]: Sent(r.recipients[0], r.sender, r.message_id)
            for r in self.smtp.handler.received[before:]
        }

    def member(self, email: str) -> tuple[str, str | None]:
        with Audience.open(self.settings.paths.state, clock=self.clock) as audience:
            found = audience.get(email)
        assert found is not None
        return found.status, found.reason

    def deliver(self, data: bytes, *, subdir: Literal["new", "cur"] = "new") -> Path:
        """Put a message into the Maildir as a delivery agent would (cur/: seen by a client,
        still unread)."""
        box = mailbox.Maildir(self.maildir, create=True)
        message = mailbox.MaildirMessage(data)
        message.set_subdir(subdir)
        if subdir == "cur":
            message.set_info("2,")  # no flags: not seen
        key = box.add(message)
        (path,) = (self.maildir / subdir).glob(f"{key}*")
        return path

    def process(self) -> BounceReport:
        return process_maildir(self.settings, self.maildir, log=self.lines.append, clock=self.clock)

    def filed(self, folder: str) -> list[Path]:
        base = self.maildir / f".{folder}"
        return sorted(p for sub in ("new", "cur") if (base / sub).is_dir()
                      for p in (base / sub).iterdir())




def render(name: str, sent: Sent | None = None, **values: str) -> bytes:
    """A fixture notification about a message really sent: delivered to its VERP address,
    quoting its Message-ID, naming its recipient (each overridable)."""
    fields = {}
    if sent is not None:
        fields = {"verp": sent.verp, "message_id": sent.message_id, "recipient": sent.recipient}
    fields.update(values)
    text = (BOUNCES / name).read_text(encoding="utf-8")
    for key, value in fields.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"{name}: a field was left unfilled"
    return text.replace("\n", "\r\n").encode("utf-8")


@pytest.fixture
def world(smtp_server: SmtpServer, tmp_path: Path) -> World:
    settings = delivery_settings(tmp_path, smtp_server, max_attempts=1)
    settings = replace(
        settings,
        newsletter=replace(settings.newsletter, bounce_address=BOUNCE_ADDRESS),
        bounces=replace(settings.bounces, soft_limit=2, soft_reset_days=7),
    )
    clock = Clock()
    with Audience.open(settings.paths.state, clock=clock) as audience:
        for person in PEOPLE:
            audience.add(person)
    maildir = tmp_path / "Maildir"
    mailbox.Maildir(maildir, create=True)
    return World(settings, clock, smtp_server, maildir, [])


@pytest.fixture
def sent(world: World) -> dict[str, Sent]:
    got = world.send()
    assert sorted(got) == sorted(PEOPLE)
    assert all(s.verp.startswith("bounces+") for s in got.values())
    return got


def forged(sent: Sent) -> str:
    """The VERP address of `sent` with a MAC made without the secret."""
    assert verp.read_token(sent.verp, SECRET) is not None
    return verp.envelope_sender(BOUNCE_ADDRESS, sent.message_id, "not the secret")


# -- matching and acting ----------------------------------------------------------------------


def test_a_permanent_failure_suppresses_the_address_and_the_next_send_skips_it(
    world: World, sent: dict[str, Sent]
) -> None:
    bob = sent["bob@example.org"]
    world.deliver(render("rfc3464-failed.eml", bob))
    report = world.process()
    assert (report.hard, report.soft, report.unmatched, report.left_alone) == (1, 0, 0, 0)
    status, reason = world.member("bob@example.org")
    assert status == "suppressed"
    assert reason is not None and "5.1.1" in reason and "User unknown" in reason
    assert report.suppressed == [("bob@example.org", reason)]
    assert len(world.filed("processed")) == 1 and not list((world.maildir / "new").iterdir())
    assert any("suppressed" in line and "by VERP token" in line for line in world.lines)
    world.clock.now += timedelta(days=1)
    world.smtp.handler.received.clear()
    world.send(day=1)
    assert world.smtp.handler.copies() == {"ada@example.org": 1, "cy@example.org": 1}


def test_a_delayed_notice_counts_one_soft_bounce_a_day_up_to_the_limit(
    world: World, sent: dict[str, Sent]
) -> None:
    cy = sent["cy@example.org"]
    world.deliver(render("rfc3464-delayed.eml", cy))
    world.deliver(render("rfc3464-delayed.eml", cy))
    report = world.process()
    assert (report.hard, report.soft, report.suppressed) == (0, 2, [])
    assert world.member("cy@example.org")[0] == "confirmed"
    assert sum("at most once a day" in line for line in world.lines) == 2
    # soft_limit is 2: a notice on a second day suppresses.
    world.clock.now += timedelta(days=1)
    world.deliver(render("rfc3464-delayed.eml", cy))
    report = world.process()
    assert report.soft == 1 and [a for a, _ in report.suppressed] == ["cy@example.org"]
    assert world.member("cy@example.org")[0] == "suppressed"
    assert len(world.filed("processed")) == 3


def test_a_notification_without_verp_is_matched_by_the_message_id_it_quotes(
    world: World, sent: dict[str, Sent]
) -> None:
    ada = sent["ada@example.org"]
    world.deliver(render("rfc3464-failed.eml", ada, verp=BOUNCE_ADDRESS))
    report = world.process()
    assert report.hard == 1 and [a for a, _ in report.suppressed] == ["ada@example.org"]
    assert any(f"by quoted Message-ID {ada.message_id}" in line for line in world.lines)


def test_a_quoted_message_id_must_carry_the_whole_hash_not_only_what_finds_the_row(
    world: World, sent: dict[str, Sent]
) -> None:
    ada = sent["ada@example.org"]
    found = verp.message_hash(ada.message_id)
    assert found is not None
    # The same first 64 bits, the last 32 other: the row is found, the message is not ours.
    near = ada.message_id.replace(found, found[:16] + ("0" if found[16] != "0" else "1") * 8)
    world.deliver(render("rfc3464-failed.eml", ada, verp=BOUNCE_ADDRESS, message_id=near))
    report = world.process()
    assert report.hard == 0 and report.unmatched == 1 and report.suppressed == []
    assert world.member("ada@example.org")[0] == "confirmed"


def test_the_ledger_recipient_is_suppressed_not_the_address_the_text_names(
    world: World, sent: dict[str, Sent]
) -> None:
    # Mail to ada was forwarded, and the forward target bounced.
    world.deliver(render("rfc3464-failed.eml", sent["ada@example.org"],
                         recipient="ada.old@forward.example.net"))
    report = world.process()
    assert [a for a, _ in report.suppressed] == ["ada@example.org"]
    assert any("reported as ada.old@forward.example.net" in line for line in world.lines)


@pytest.mark.parametrize(("fixture", "shape", "status"), [
    ("postfix-text.eml", "Postfix-style text", "5.1.1"),
    ("qmail-text.eml", "qmail-style text", "5.2.1"),
])
@pytest.mark.parametrize("by_verp", [True, False], ids=["verp", "quoted-header"])
def test_plain_text_bounces_are_read_from_their_prose(
    world: World, sent: dict[str, Sent], fixture: str, shape: str, status: str, by_verp: bool
) -> None:
    bob = sent["bob@example.org"]
    data = render(fixture, bob, **({} if by_verp else {"verp": BOUNCE_ADDRESS}))
    notification = dsn.read(data)
    assert notification.shape == shape
    assert [(f.recipient, f.status, f.kind) for f in notification.failures] == [
        ("bob@example.org", status, "hard")
    ]
    world.deliver(data)
    report = world.process()
    assert report.hard == 1 and [a for a, _ in report.suppressed] == ["bob@example.org"]
    assert status in (world.member("bob@example.org")[1] or "")


@pytest.mark.parametrize("address", ["10.2.0.5", "10.4.1.20", "52.5.12.34"])
@pytest.mark.parametrize(("fixture", "ip"), [
    ("postfix-text.eml", b"198.51.100.7"), ("qmail-text.eml", b"203.0.113.40"),
])
def test_the_servers_ip_address_in_a_text_bounce_is_no_status(
    world: World, sent: dict[str, Sent], fixture: str, ip: bytes, address: str
) -> None:
    # `10.2.0.5` read as the status 2.0.5 made a refusal informational, `10.4.1.20` a soft one.
    data = render(fixture, sent["bob@example.org"]).replace(ip, address.encode())
    (failure,) = dsn.read(data).failures
    assert failure.kind == "hard" and failure.status.startswith("5.")
    world.deliver(data)
    assert world.process().hard == 1


def test_a_yahoo_failure_notice_is_read(world: World, sent: dict[str, Sent]) -> None:
    bob = sent["bob@example.org"]
    data = (
        f"Return-Path: <>\nFrom: MAILER-DAEMON@yahoo.com\nTo: {bob.verp}\n"
        "Subject: Failure Notice\nDate: Mon, 6 May 2024 07:00:11 +0000\n\n"
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        f"<{bob.recipient}>:\n554: delivery error: dd This user doesn't have a yahoo.com "
        f"account ({bob.recipient}) [0] - mta1003.mail.bf1.yahoo.com\n\n"
        "--- Below this line is a copy of the message.\n\n"
        f"Message-ID: {bob.message_id}\nSubject: ML Paper Digest\n"
    ).replace("\n", "\r\n").encode()
    world.deliver(data)
    report = world.process()
    assert report.hard == 1 and [a for a, _ in report.suppressed] == ["bob@example.org"]


def test_a_message_id_after_a_long_run_of_blanks_is_found(sent: dict[str, Sent]) -> None:
    bob = sent["bob@example.org"]
    data = render("postfix-text.eml", bob, verp=BOUNCE_ADDRESS).replace(
        f"Message-ID: {bob.message_id}".encode(),
        b"Message-ID:" + b" " * 20_000 + f"\r\n  {bob.message_id}".encode(),
    )
    assert bob.message_id in dsn.read(data).quoted_ids


@pytest.mark.parametrize("status", ["5.7.26", "5.7.1", "5.3.4", "5.1.8"])
def test_a_failure_that_is_not_about_the_mailbox_suppresses_nobody(
    world: World, sent: dict[str, Sent], status: str
) -> None:
    # DMARC (5.7.26) or a spam filter (5.7.1) at a big provider, a size limit (5.3.4), our own
    # sender's address (5.1.8): said of every subscriber there, they would take them all off.
    bob = sent["bob@example.org"]
    data = render("rfc3464-failed.eml", bob).replace(b"5.1.1", status.encode())
    world.deliver(data)
    report = world.process()
    assert report.hard == 0 and report.suppressed == []
    assert world.member("bob@example.org")[0] == "confirmed"


# -- hostile and foreign mail -----------------------------------------------------------------


def test_a_forged_verp_token_suppresses_nobody(world: World, sent: dict[str, Sent]) -> None:
    bob = sent["bob@example.org"]
    # The hash is right (anyone who got the message can read it), the MAC is not; the quoted
    # Message-ID is the real one, and is not trusted in its place.
    world.deliver(render("rfc3464-failed.eml", bob, verp=forged(bob)))
    report = world.process()
    assert (report.hard, report.unmatched, report.suppressed) == (0, 1, [])
    assert world.member("bob@example.org")[0] == "confirmed"
    assert len(world.filed("unmatched")) == 1
    assert any("forged or damaged VERP token" in line for line in world.lines)


def test_a_notification_about_a_stranger_or_an_unknown_message_is_unmatched(
    world: World, sent: dict[str, Sent]
) -> None:
    world.deliver(render(
        "rfc3464-failed.eml", verp=BOUNCE_ADDRESS, recipient="stranger@example.net",
        message_id="<2024-05-06.0123456789abcdef01234567@example.org>",
    ))
    world.deliver(render(
        "qmail-text.eml", verp=BOUNCE_ADDRESS, recipient="stranger@example.net",
        message_id="<somebody-elses-message@example.net>",
    ))
    report = world.process()
    assert (report.hard, report.unmatched, report.suppressed) == (0, 2, [])
    assert len(world.filed("unmatched")) == 2
    assert any("which the ledger does not hold" in line for line in world.lines)
    assert any("it names stranger@example.net" in line for line in world.lines)
    assert all(world.member(p)[0] == "confirmed" for p in PEOPLE)


def test_a_notification_with_a_10_mb_attachment_is_filed_unread(
    world: World, sent: dict[str, Sent]
) -> None:
    big = base64.encodebytes(b"\0" * (10 * 1024 * 1024)).decode("ascii")
    data = render("large-attachment.eml", sent["ada@example.org"], attachment=big)
    assert len(data) > 10 * 1024 * 1024
    world.deliver(data)
    report = world.process()
    assert (report.hard, report.unmatched, report.suppressed) == (0, 1, [])
    assert any(f"the limit is {MAX_MESSAGE_BYTES}" in line for line in world.lines)
    assert world.member("ada@example.org")[0] == "confirmed"


def test_a_small_notification_with_a_small_attachment_is_read(
    world: World, sent: dict[str, Sent]
) -> None:
    world.deliver(render("large-attachment.eml", sent["ada@example.org"], attachment="AAAA"))
    assert world.process().hard == 1


def test_malformed_mime_is_filed_as_unmatched_even_with_a_good_token(
    world: World, sent: dict[str, Sent]
) -> None:
    world.deliver(render("malformed.eml", sent["ada@example.org"]))
    report = world.process()
    assert (report.unmatched, report.suppressed) == (1, [])
    assert any("unreadable: malformed MIME" in line for line in world.lines)


@pytest.mark.parametrize("garbage", [
    b"",
    b"\xff\xfe\x00binary",
    b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; report-type=delivery-status\r\n"
    + b"\r\n" + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 5000,
    b"From: MAILER-DAEMON@x\r\nSubject: =?utf-8?q?=ZZ?=\r\nContent-Type: text/plain; "
    b"charset=no-such-charset\r\n\r\n<a@b>: 550 5.1.1 gone\r\n",
])
def test_hostile_bytes_give_a_clean_answer(garbage: bytes) -> None:
    header = dsn.read_header(garbage)
    if dsn.is_notification(header):
        try:
            dsn.read(garbage)
        except dsn.Unreadable as error:
            assert str(error)


def test_a_header_the_email_package_cannot_take_apart_is_filed_aside(
    world: World, sent: dict[str, Sent]
) -> None:
    # Its address parser recurses once per parenthesis: a stranger's message that raised
    # RecursionError stopped every later run at it, and nobody got a newsletter.
    world.deliver(b"From: " + b"(" * 600 + b"\r\nSubject: hi\r\n\r\nhello\r\n")
    world.deliver(render("rfc3464-failed.eml", sent["bob@example.org"]))
    report = world.process()
    assert (report.hard, report.unmatched) == (1, 1)
    assert any("unreadable header" in line for line in world.lines)


def test_a_persons_reply_and_a_vacation_notice_stay_where_they_are_unread(
    world: World, sent: dict[str, Sent]
) -> None:
    ada = sent["ada@example.org"]
    reply = world.deliver(render("reply.eml", ada))
    vacation = world.deliver(render("vacation.eml", ada), subdir="cur")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (reply, vacation)}
    world.deliver(render("rfc3464-failed.eml", sent["bob@example.org"]))
    report = world.process()
    assert (report.hard, report.left_alone) == (1, 2)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (reply, vacation)} == before
    # Unread: still in new/, and in cur/ with no S flag.
    assert reply.parent.name == "new" and vacation.name.endswith(":2,")
    assert world.member("ada@example.org")[0] == "confirmed"
    assert not any("reply" in line for line in world.lines)


def test_a_processed_notification_keeps_its_name_and_flags(
    world: World, sent: dict[str, Sent]
) -> None:
    path = world.deliver(render("rfc3464-failed.eml", sent["bob@example.org"]), subdir="cur")
    world.process()
    (filed,) = world.filed("processed")
    assert filed.name == path.name and filed.parent == world.maildir / ".processed" / "cur"
    assert (world.maildir / ".processed" / "maildirfolder").exists()
    assert (world.maildir / ".processed" / "tmp").is_dir()


def test_a_folder_that_is_not_a_maildir_is_a_clear_error(world: World, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a Maildir"):
        process_maildir(world.settings, tmp_path / "nowhere", log=world.lines.append)


# -- IMAP -------------------------------------------------------------------------------------


@pytest.fixture(params=["move", "copy-expunge"])
def dovecot(request: pytest.FixtureRequest) -> Iterator[Dovecot]:
    """Dovecot as it is (MOVE), and one that offers only UIDPLUS (COPY, \\Deleted, UID
    EXPUNGE)."""
    capability = None if request.param == "move" else "IMAP4rev1 LITERAL+ UIDPLUS"
    with running_dovecot(capability=capability) as server:
        yield server


def imap_settings(settings: Settings, server: Dovecot) -> Settings:
    return replace(settings, bounces=replace(
        settings.bounces, imap_host=server.host, imap_port=server.port, imap_security="none",
        imap_user=server.user, imap_password=server.password,
    ))


def folder(conn: imaplib.IMAP4, name: str) -> dict[str, str]:
    """Message-ID -> flags of every message in an IMAP folder."""
    kind, _ = conn.select(f'"{name}"', readonly=True)
    if kind != "OK":
        return {}
    _, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    found = {}
    for item in data:
        if isinstance(item, tuple):
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
            mid = re.search(rb"<[^>]+>", item[1])
            if mid:
                found[mid[0].decode()] = flags[1].decode() if flags else ""
    return found


def count(conn: imaplib.IMAP4, name: str) -> int:
    kind, data = conn.select(f'"{name}"', readonly=True)
    assert kind == "OK", data
    return int(data[0] or 0)


def test_imap_notifications_are_moved_and_other_mail_stays_unseen(
    world: World, sent: dict[str, Sent], dovecot: Dovecot
) -> None:
    ada, bob = sent["ada@example.org"], sent["bob@example.org"]
    conn = dovecot.connect()
    try:
        conn.append("INBOX", None, None, render("reply.eml", ada))
        conn.append("INBOX", r"(\Deleted)", None, render("vacation.eml", ada))
        conn.append("INBOX", None, None, render("rfc3464-failed.eml", bob))
        conn.append("INBOX", None, None, render("rfc3464-failed.eml", ada, verp=forged(ada)))
        big = base64.encodebytes(b"\0" * (10 * 1024 * 1024)).decode("ascii")
        conn.append("INBOX", None, None, render("large-attachment.eml", ada, attachment=big))
        settings = imap_settings(world.settings, dovecot)
        report = process_imap(settings, log=world.lines.append, clock=world.clock)
        # What somebody flagged \\Deleted is not looked at (nor expunged).
        assert (report.hard, report.unmatched, report.left_alone) == (1, 2, 1)
        assert [a for a, _ in report.suppressed] == ["bob@example.org"]
        inbox = folder(conn, "INBOX")
        # The reply is unseen still; what somebody flagged \Deleted was not expunged.
        assert inbox == {"<d5e8a1f0-reply@example.org>": "",
                         "<vacation-1715000420@example.org>": "\\Deleted"}
        assert list(folder(conn, "processed")) == ["<20240506070009.4VXyz1Qb2@mx.example.org>"]
        assert count(conn, "unmatched") == 2 and count(conn, "processed") == 1
        assert any("too big" in line for line in world.lines)
        # A second pass finds nothing new to do.
        again = process_imap(settings, log=world.lines.append, clock=world.clock)
        assert (again.hard, again.unmatched, again.left_alone) == (0, 0, 1)
    finally:
        conn.logout()
    assert world.member("bob@example.org")[0] == "suppressed"
    assert world.member("ada@example.org")[0] == "confirmed"
    assert dovecot.password not in "\n".join(world.lines)


def test_without_move_or_uidplus_a_filed_notification_is_not_read_again(
    world: World, sent: dict[str, Sent]
) -> None:
    cy = sent["cy@example.org"]
    with running_dovecot(capability="IMAP4rev1 LITERAL+") as server:
        conn = server.connect()
        try:
            conn.append("INBOX", None, None, render("rfc3464-delayed.eml", cy))
            settings = imap_settings(world.settings, server)
            reports = []
            for _ in range(3):
                reports.append(process_imap(settings, log=world.lines.append, clock=world.clock))
                world.clock.now += timedelta(days=1)
            # Copied to processed and left flagged \\Deleted: one soft bounce, on one day.
            assert [r.soft for r in reports] == [1, 0, 0]
            assert count(conn, "processed") == 1
        finally:
            conn.logout()
    assert world.member("cy@example.org")[0] == "confirmed"


def test_a_fetch_answer_with_the_uid_after_the_literal_is_read() -> None:
    answer = [(b"1 (RFC822.SIZE 520 BODY[HEADER]<0> {5}", b"hello"), b" UID 4)"]
    assert fetched_message(answer, 4) == (answer[0][0], b"hello")
    assert fetched_message(answer, 5) is None


def test_a_wrong_imap_password_is_a_clear_error_that_does_not_show_it(world: World) -> None:
    with running_dovecot() as server:
        settings = imap_settings(world.settings, server)
        settings = replace(settings, bounces=replace(settings.bounces, imap_password="wrong-pw"))
        with pytest.raises(MailboxError, match="refused the login") as caught:
            process_imap(settings, log=world.lines.append)
    assert "wrong-pw" not in str(caught.value)
    where = f"[bounces] {settings.bounces.imap_host}:{settings.bounces.imap_port}: "
    assert str(caught.value).startswith(f"{where}refused the login of bounces: ")


def test_an_imap_server_that_refuses_is_one_line_without_the_errno(world: World) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = replace(world.settings, bounces=replace(
        world.settings.bounces, imap_host="127.0.0.1", imap_port=port, imap_security="none",
        imap_user="bounces", imap_password="secret-pw",
    ))
    with pytest.raises(MailboxError) as caught:
        process_imap(settings, log=world.lines.append, timeout=2)
    assert str(caught.value) == (
        f"[bounces] 127.0.0.1:{port}: cannot reach the IMAP server: Connection refused"
    )


def test_an_imap_server_that_never_answers_is_given_up_after_the_timeout(world: World) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # connections complete in the backlog; nothing is ever said
        host, port = silent.getsockname()
        settings = replace(world.settings, bounces=replace(
            world.settings.bounces, imap_host=host, imap_port=port, imap_security="none",
            imap_user="bounces", imap_password="secret-pw",
        ))
        started = time.monotonic()
        silent_one = rf"^\[bounces\] 127\.0\.0\.1:{port}: cannot reach the IMAP server: "
        with pytest.raises(MailboxError, match=silent_one):
            process_imap(settings, log=world.lines.append, timeout=0.5)
    assert time.monotonic() - started < 5


def test_the_folder_read_cannot_be_where_notifications_are_filed(world: World) -> None:
    settings = replace(world.settings, bounces=replace(
        world.settings.bounces, imap_host="127.0.0.1", imap_security="none",
        imap_user="bounces", imap_password="pw", processed_folder="inbox",
    ))
    with pytest.raises(ConfigError, match="cannot also be where notifications are filed"):
        process_imap(settings, log=world.lines.append)


def test_a_delivered_notice_changes_nobody_and_is_filed_as_processed(
    world: World, sent: dict[str, Sent]
) -> None:
    data = render("rfc3464-failed.eml", sent["ada@example.org"]).replace(
        b"Action: failed\r\nStatus: 5.1.1", b"Action: delivered\r\nStatus: 2.0.0"
    )
    world.deliver(data)
    report = world.process()
    assert (report.informational, report.hard, report.suppressed) == (1, 0, [])
    assert world.member("ada@example.org")[0] == "confirmed"
    assert len(world.filed("processed")) == 1


# The start of a report, for texts that reach the delivery-status parser.
HEADER = (
    "From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; report-type=delivery-status;"
    ' boundary="b"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n'
)


@examples(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(lambda t: (HEADER + t).encode()))
def test_any_bytes_read_as_a_notification_or_a_clear_unreadable(data: bytes) -> None:
    try:
        found = dsn.read(data)
    except dsn.Unreadable as error:
        assert str(error)
    else:
        assert found.failures and all(f.kind in ("hard", "soft", "none") for f in found.failures)


# -- the command line --------------------------------------------------------------------------


def test_feeds_bounces_reads_a_maildir_and_names_who_it_suppressed(
    world: World, sent: dict[str, Sent], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from feeds.cli import cli

    world.deliver(render("rfc3464-failed.eml", sent["bob@example.org"]))
    world.deliver((BOUNCES / "reply.eml").read_bytes())
    config = tmp_path / "bounces.toml"
    config.write_text(
        f'[paths]\nstate = "{world.settings.paths.state}"\n'
        f'[newsletter]\nbounce_address = "{BOUNCE_ADDRESS}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["-c", str(config), "bounces", "--maildir", str(world.maildir)],
        env={"FEEDS_UNSUBSCRIBE_SECRET": SECRET},
    )
    assert result.exit_code == 0, result.output
    assert "suppressed bob@example.org:" in result.output
    assert world.member("bob@example.org")[0] == "suppressed"
    assert len(list((world.maildir / "new").iterdir())) == 1  # the person's reply stays
    nowhere = CliRunner().invoke(cli, ["-c", str(config), "bounces"])
    assert nowhere.exit_code == 1 and "no bounce mailbox" in nowhere.output


def test_feeds_run_reads_the_bounce_mailbox_before_it_sends(
    world: World, sent: dict[str, Sent], tmp_path: Path
) -> None:

    from click.testing import CliRunner

    from feeds.cli import cli

    world.deliver(render("rfc3464-failed.eml", sent["bob@example.org"]))
    site = tmp_path / "site"
    (site / "digests").mkdir(parents=True)
    # The next day's issue (an older one would be an archive file, not news).
    text = (SAMPLE_DIGESTS / "2022-08-13.txt").read_text(encoding="utf-8")
    day = NOW + timedelta(days=1)
    (site / "digests" / f"{day:%Y-%m-%d}.txt").write_text(f"date: {day:%Y-%m-%d}\n{text}")
    config = site / "feeds.toml"
    smtp = world.settings.smtp
    config.write_text(
        f'[paths]\nstate = "{world.settings.paths.state}"\n'
        f'[newsletter]\nbounce_address = "{BOUNCE_ADDRESS}"\n'
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\nsecurity = "none"\n'
        f'[bounces]\nmaildir = "{world.maildir}"\n',
        encoding="utf-8",
    )
    world.smtp.handler.received.clear()
    result = CliRunner().invoke(
        cli, ["-c", str(config), "run"], env={"FEEDS_UNSUBSCRIBE_SECRET": SECRET}
    )
    # The suppression is news, once; the new issue went to the others only.
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("error: bob@example.org: suppressed by a bounce: ")
    assert world.smtp.handler.copies() == {"ada@example.org": 1, "cy@example.org": 1}
    assert len(world.filed("processed")) == 1
    again = CliRunner().invoke(
        cli, ["-c", str(config), "run"], env={"FEEDS_UNSUBSCRIBE_SECRET": SECRET}
    )
    assert (again.exit_code, again.output) == (0, "")


def test_without_the_signing_secret_no_bounce_is_read(world: World, sent: dict[str, Sent]) -> None:
    world.deliver(render("rfc3464-failed.eml", sent["bob@example.org"]))
    with pytest.raises(ConfigError, match="needs FEEDS_UNSUBSCRIBE_SECRET"):
        process_maildir(replace(world.settings, unsubscribe_secret=None), world.maildir,
                        log=world.lines.append)
    assert world.member("bob@example.org")[0] == "confirmed"
