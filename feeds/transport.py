"""One SMTP connection: opened on first use, reused for many messages, re-opened after a drop,
and every reply sorted into sent, temporary (4xx, 421, a drop, a timeout) or permanent (5xx).

The password comes from the settings (read from the environment by feeds.config_file) and is removed
from every message this module produces, including its base64 forms from AUTH.
"""

from __future__ import annotations

import base64
import contextlib
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from feeds.config import PASSWORD_ENV, SmtpSettings
from feeds.errors import DeliveryError
from feeds.smtp_status import reply_about_the_mailbox

# "in_doubt": the whole message went out and no answer came (a timeout, a dropped connection):
# the server may have taken it, so it is not sent again in this run (see `feeds.deliver`).
Outcome = Literal["sent", "temporary", "permanent", "unreachable", "cancelled", "in_doubt"]
MAX_RETRY_DELAY = 60.0


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reply: str
    # DATA was started, so `mark_sending` already counted this attempt.
    data_sent: bool = False
    # The server refused this recipient (a reply to RCPT or DATA), not the connection or the
    # sender: a temporary refusal then counts as a soft bounce of the address.
    mailbox: bool = False


def _dot_stuffed(data: bytes) -> bytes:
    """The message as DATA sends it (RFC 5321 4.5.2): a line starting with a dot gets another,
    and the message ends with a line holding a dot alone (what smtplib's `data()` sends).
    `data` has CRLF line ends (see `Transport.send`), so a line start is a byte after LF; a
    plain replace is a tenth of the regex's time on a 40 KB newsletter (0.05 s a 200-message
    run)."""
    stuffed = (b"." if data.startswith(b".") else b"") + data.replace(b"\n.", b"\n..")
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


class Unreachable(DeliveryError):
    """No connection after `max_attempts` tries: the send stops, unless another connection
    of it is open (`feeds.deliver`)."""


class _Unreachable(Exception):
    pass


class _Deadline:
    """Cuts a connection whose exchange with the server runs past its deadline.

    The socket timeout bounds each read, not an exchange: a server that trickles its reply a
    byte at a time would hold the sender for ever. One watchdog thread per connection checks
    the deadline a few times a second and shuts the socket down when it has passed; the
    blocked read then fails and the message counts as a temporary failure.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: float | None = None
        self._conn: smtplib.SMTP | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.expired = False

    def arm(self, conn: smtplib.SMTP, seconds: float) -> None:
        with self._lock:
            self._conn, self._until, self.expired = conn, time.monotonic() + seconds, False
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._watch, args=(self._stop,), name="smtp-deadline", daemon=True
                )
                self._thread.start()

    def disarm(self) -> None:
        with self._lock:
            self._conn, self._until = None, None

    def stop(self) -> None:
        """The watchdog ends within a tenth of a second (the endpoint, which lives for months,
        makes a connection for each notice); arming again starts another."""
        with self._lock:
            self._conn, self._until, self._thread = None, None, None
            self._stop.set()

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            with self._lock:
                if self._until is None or time.monotonic() < self._until:
                    continue
                conn, self._conn, self._until, self.expired = self._conn, None, None, True
            # The socket as it is now: connect() creates it after the deadline is armed.
            sock: socket.socket | None = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed: nothing to cut
                    sock.shutdown(socket.SHUT_RDWR)


class Transport:
    """One SMTP connection, opened on first use, reused, and re-opened after a drop."""

    def __init__(self, smtp: SmtpSettings, *, retry_delay: float = 1.0) -> None:
        self._smtp = smtp
        self._retry_delay = retry_delay
        self._conn: smtplib.SMTP | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._opening = False
        self._deadline = _Deadline()

    def send(
        self, sender: str, recipient: str, data: bytes, before_data: Callable[[], bool]
    ) -> Result:
        """One SMTP transaction: MAIL, RCPT, then `before_data()`, then DATA; when
        `before_data()` says no, the transaction is reset and nothing is sent."""
        try:
            conn = self._connection()
        except _Unreachable as exc:
            return Result("unreachable", str(exc))
        if data.count(b"\n") != data.count(b"\r\n"):
            # SMTP needs CRLF line ends; smtplib fixes them in str messages, not in bytes.
            data = re.sub(rb"\r?\n", b"\r\n", data)
        stage = "MAIL"
        # From the moment the message starts going out, the server may take it.
        sending = False
        # The whole transaction: a few exchanges, and the data at no less than ~10 KB/s.
        self._deadline.arm(conn, self._smtp.timeout * 3 + len(data) / 10_000)
        try:
            code, reply = conn.mail(sender)
            if code != 250:
                return self._refused(stage, code, reply, sender=sender)
            stage = "RCPT"
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(stage, code, reply)
            stage = "DATA"
            if not before_data():
                self._reset()
                return Result("cancelled", "left before the message went out")
            # smtplib's `data()` in its two steps, to know whether the message went out.
            code, reply = conn.docmd("DATA")
            if code != 354:
                return self._refused(stage, code, reply, data_sent=True)
            sending = True
            conn.send(_dot_stuffed(data))
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            why = "no complete answer in time" if self._deadline.expired else self._describe(exc)
            if sending:
                return Result(
                    "in_doubt", f"no answer after the message was sent: {why}", data_sent=True
                )
            return Result(
                "temporary", f"connection lost at {stage}: {why}", data_sent=stage == "DATA"
            )
        finally:
            self._deadline.disarm()
        if code == 250:
            return Result("sent", _reply(code, reply), data_sent=True)
        return self._refused(stage, code, reply, data_sent=True)

    @property
    def connected(self) -> bool:
        """Open now, or being opened (it may still find the connection dropped, or refused, at
        its next command)."""
        return self._conn is not None or self._opening

    def check(self) -> str:
        """Connect, log in and say hello: what `feeds check --smtp` reports."""
        try:
            conn = self._connection()
        except _Unreachable as exc:
            raise DeliveryError(f"{self._where}: cannot connect: {self._describe(exc)}") from None
        code, reply = conn.noop()
        return _reply(code, reply)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        finally:
            self._deadline.stop()

    @property
    def _where(self) -> str:
        # Where, as every error line starts: the setting that names the server.
        return f"[smtp] {self._smtp.host}:{self._smtp.port}"

    def _refused(
        self,
        stage: str,
        code: int,
        reply: bytes | str,
        *,
        data_sent: bool = False,
        sender: str | None = None,
    ) -> Result:
        text = f"{stage}: {_reply(code, reply)}"
        if code == 421 or not 400 <= code < 600:
            # 421: the server is closing the connection; anything else is out of protocol.
            self._drop()
            return Result("temporary", text, data_sent)
        if stage == "MAIL" and code >= 500:
            # Every message would be refused the same way: a configuration problem.
            raise DeliveryError(
                f"{self._where}: refused the sender {sender}: {self._scrub(text)}",
                hint="check [newsletter] from and the relay's sender rules",
            )
        self._reset()
        return Result(
            "temporary" if code < 500 else "permanent", text, data_sent,
            mailbox=stage in ("RCPT", "DATA") and reply_about_the_mailbox(stage, code, text),
        )

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._opening = True
        try:
            self._conn = self._open()
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"the TLS certificate of {self._smtp.host} did not verify: {exc.verify_message}",
                hint="check [smtp] host (it must match the certificate)",
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._failures += 1
            reason = "no complete answer in time" if self._deadline.expired else (
                self._describe(exc)
            )
            if self._failures >= max(1, self._smtp.max_attempts):
                raise Unreachable(
                    f"{self._where}: cannot connect after {self._failures} "
                    f"{'try' if self._failures == 1 else 'tries'}: {reason}"
                ) from None
            self._retry_at = time.monotonic() + backoff(self._retry_delay, self._failures)
            raise _Unreachable(reason) from None
        finally:
            self._opening = False
        self._failures = 0
        return self._conn

    def _open(self) -> smtplib.SMTP:
        smtp = self._smtp
        conn: smtplib.SMTP
        if smtp.security == "ssl":
            context = ssl.create_default_context()
            conn = smtplib.SMTP_SSL(timeout=smtp.timeout, context=context)
        else:
            conn = smtplib.SMTP(timeout=smtp.timeout)
        # Made without a host (so that the deadline covers the greeting), the object would
        # check the TLS certificate against an empty name: smtplib takes it from `_host`, which
        # only its constructor sets.
        conn._host = smtp.host  # type: ignore[attr-defined]
        # Greeting, hello, TLS and login: a few exchanges, each within the timeout.
        self._deadline.arm(conn, smtp.timeout * 4)
        try:
            code, greeting = conn.connect(smtp.host, smtp.port)
            if code != 220:
                # A relay that will not talk to us now (421: too many connections) says why in
                # its greeting; smtplib checks it only when it connects in its constructor.
                raise smtplib.SMTPConnectError(code, greeting)
            conn.ehlo()
            if smtp.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise DeliveryError(
                        f"{self._where}: does not offer STARTTLS",
                        hint="use [smtp] security = ssl, or none to a local relay",
                    )
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if smtp.username:
                self._login(conn)
        except BaseException:
            conn.close()
            raise
        finally:
            self._deadline.disarm()
        return conn

    def _login(self, conn: smtplib.SMTP) -> None:
        smtp = self._smtp
        if not smtp.password:
            raise DeliveryError(
                f"[smtp] username is set but {PASSWORD_ENV} is not",
                hint=f"export {PASSWORD_ENV} in the environment cron runs with",
            )
        try:
            conn.login(smtp.username or "", smtp.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{self._where}: refused the login of {smtp.username}: "
                + self._scrub(_reply(exc.smtp_code, exc.smtp_error)),
                hint=f"check [smtp] username and {PASSWORD_ENV}",
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError(
                f"{self._where}: does not offer AUTH",
                hint="remove [smtp] username, or use starttls/ssl (AUTH is often only "
                "offered on an encrypted connection)",
            ) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(
                f"{self._where}: login failed: {self._describe(exc)}"
            ) from None

    def _reset(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, smtplib.SMTPResponseException):
            text = _reply(exc.smtp_code, exc.smtp_error)
        elif isinstance(exc, OSError) and exc.strerror:
            text = exc.strerror  # "Connection refused", not "[Errno 111] Connection refused"
        else:
            text = str(exc) or type(exc).__name__
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._smtp.password, self._smtp.username)


def scrub(text: str, password: str | None, username: str | None = None) -> str:
    """Remove the password, and the base64 forms AUTH sends it in, from a message."""
    if not password:
        return text
    forms = {
        password,
        _b64(password.encode()),
        _b64(f"\0{username or ''}\0{password}".encode()),
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}"


def backoff(base: float, failures: int) -> float:
    """Seconds to wait before try number `failures + 1`: base, 2*base, 4*base ... capped."""
    return min(MAX_RETRY_DELAY, base * float(2 ** max(0, failures - 1)))


