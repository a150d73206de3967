"""One SMTP connection against a real server: replies sorted, connection kept or re-opened."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from smtp_fixtures import SmtpServer, delivery_settings, free_port, smtp_server

from feeds.errors import DeliveryError
from feeds.transport import MAX_RETRY_DELAY, Transport, backoff, scrub

__all__ = ["smtp_server"]
# A line of a dot alone would end DATA early, and one of two would lose one, if not stuffed.
MESSAGE = (
    b"Subject: hello\r\nTo: a@example.org\r\n\r\nbody\r\n.\r\n..\r\n.leading dot\r\n"
)


def _transport(server: SmtpServer | None, tmp_path: Path, **smtp: object) -> Transport:
    return Transport(delivery_settings(tmp_path, server, **smtp).smtp, retry_delay=0.01)


def _send(transport: Transport, rcpt: str, data: bytes = MESSAGE) -> tuple[str, str, int]:
    marks: list[str] = []
    def mark() -> bool:
        marks.append(rcpt)
        return True

    result = transport.send("digest@example.org", rcpt, data, mark)
    return result.outcome, result.reply, len(marks)


def test_a_relay_that_greets_with_a_421_is_unreachable_and_says_why(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.max_connections = 0
    transport = _transport(smtp_server, tmp_path, max_attempts=2)

    outcome, reply, marked = _send(transport, "a@example.org")

    assert (outcome, marked) == ("unreachable", 0)
    assert "421 4.7.0 Too many connections" in reply
    with pytest.raises(DeliveryError, match=r"after 2 tries: 421 4\.7\.0 Too many connections"):
        _send(transport, "a@example.org")
    assert smtp_server.handler.received == []


def test_a_closed_transport_leaves_no_watchdog_thread_behind(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # The endpoint lives for months and makes a transport for each notice.
    import threading
    import time

    def watchdogs() -> int:
        return sum(t.name == "smtp-deadline" for t in threading.enumerate())

    before = watchdogs()
    for n in range(3):
        transport = _transport(smtp_server, tmp_path)
        assert _send(transport, f"r{n}@example.org")[0] == "sent"
        assert watchdogs() == before + 1
        transport.close()
        deadline = time.monotonic() + 2
        while watchdogs() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watchdogs() == before
    assert len(smtp_server.handler.received) == 3


def test_accepted_data_is_sent_and_the_mark_comes_before_it(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    transport = _transport(smtp_server, tmp_path)

    outcome, reply, marks = _send(transport, "a@example.org")
    transport.close()

    assert (outcome, reply, marks) == ("sent", "250 2.0.0 Queued", 1)
    (received,) = smtp_server.handler.received
    assert received.data.endswith(b"\r\nbody\r\n.\r\n..\r\n.leading dot\r\n")


def test_bare_line_feeds_go_out_as_crlf(smtp_server: SmtpServer, tmp_path: Path) -> None:
    transport = _transport(smtp_server, tmp_path)

    _send(transport, "a@example.org", MESSAGE.replace(b"\r\n", b"\n"))
    transport.close()

    assert smtp_server.handler.received[0].data == MESSAGE


def test_a_4xx_is_temporary_a_5xx_permanent_and_neither_reaches_data(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.rcpt_temporary = {"busy@example.org": 1}
    smtp_server.handler.rejected = {"gone@example.org"}
    transport = _transport(smtp_server, tmp_path)

    busy = _send(transport, "busy@example.org")
    gone = _send(transport, "gone@example.org")
    fine = _send(transport, "a@example.org")
    transport.close()

    assert busy == ("temporary", "RCPT: 451 4.2.0 Mailbox busy, try again later", 0)
    assert gone == ("permanent", "RCPT: 550 5.1.1 No such user here", 0)
    assert fine[0] == "sent"
    assert smtp_server.handler.connections == 1


def test_a_421_closes_the_connection_and_the_next_message_opens_a_new_one(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.close_after = 1
    transport = _transport(smtp_server, tmp_path)

    results = [_send(transport, f"r{i}@example.org")[0] for i in range(3)]
    transport.close()

    assert results == ["sent", "temporary", "sent"]
    assert smtp_server.handler.connections == 2


def test_a_refused_sender_stops_everything(smtp_server: SmtpServer, tmp_path: Path) -> None:
    async def refuse(*_: object) -> str:
        return "553 5.7.1 Sender not allowed"

    smtp_server.handler.handle_MAIL = refuse  # type: ignore[method-assign]
    transport = _transport(smtp_server, tmp_path)

    with pytest.raises(DeliveryError, match=r"refused the sender digest@example\.org"):
        _send(transport, "a@example.org")
    transport.close()


def test_an_unreachable_server_is_reported_then_given_up(tmp_path: Path) -> None:
    transport = _transport(None, tmp_path, max_attempts=3)

    first = _send(transport, "a@example.org")
    second = _send(transport, "a@example.org")
    refused = r"^\[smtp\] 127\.0\.0\.1:\d+: cannot connect after 3 tries: Connection refused"
    with pytest.raises(DeliveryError, match=refused):
        _send(transport, "a@example.org")

    assert first[0] == second[0] == "unreachable"


def test_starttls_is_required_when_configured(smtp_server: SmtpServer, tmp_path: Path) -> None:
    transport = _transport(smtp_server, tmp_path, security="starttls")

    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        _send(transport, "a@example.org")


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(1.0, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(1.0, 30) == MAX_RETRY_DELAY


def test_the_password_and_its_auth_encodings_are_scrubbed() -> None:
    import base64

    plain = base64.b64encode(b"\0mailer\0hunter2").decode()
    login = base64.b64encode(b"hunter2").decode()
    text = f"535 bad: hunter2 {plain} {login}"

    assert scrub(text, "hunter2", "mailer") == "535 bad: *** *** ***"
    assert scrub(text, None) == text


def test_starttls_checks_the_certificate_against_the_servers_name(tmp_path: Path) -> None:
    """The connection is made after the object (for the deadline), and TLS still checks the
    certificate against the configured host: a self-signed one is refused in one line."""
    import ssl
    import subprocess

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=mail.example.org", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr[-200:]!r}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()
    try:
        base = delivery_settings(tmp_path, None, port=port)
        transport = Transport(replace(base.smtp, security="starttls"), retry_delay=0.01)
        refused = r"the TLS certificate of 127\.0\.0\.1 did not verify"
        with pytest.raises(DeliveryError, match=refused):
            transport.send("digest@example.org", "a@example.org", MESSAGE, lambda: True)
        transport.close()
    finally:
        controller.stop()
