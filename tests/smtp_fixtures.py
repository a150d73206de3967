"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it accepts and injects faults.

Faults, all optional and per server: 451 at RCPT for chosen addresses (a number of times), 550 at
RCPT, 451 after DATA, 421 and a closed connection after k messages on one connection, a
connection cut without a word after DATA, a delay per message, and gates that hold a chosen
message at RCPT or DATA until the test lets it go (to kill a sender at a known moment).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from feeds.config import Settings


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    def parsed(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def message_id(self) -> str:
        return str(self.parsed()["Message-ID"])


@dataclass
class Gate:
    """Holds the n-th message (1-based, counted over the server's life) at a stage: at RCPT
    before answering it, at DATA after the message is queued but before the reply."""

    stage: str  # "RCPT" or "DATA"
    number: int
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


class FaultyHandler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.rcpt_temporary: dict[str, int] = {}
        self.data_temporary: dict[str, int] = {}
        self.rejected: set[str] = set()
        # Refused after the message data (a content filter): 554.
        self.data_rejected: set[str] = set()
        self.close_after: int | None = None
        self.cut_after: int | None = None
        self.delay = 0.0
        # Seconds between taking a message and answering for it (a slow content scan).
        self.answer_delay = 0.0
        self.gate: Gate | None = None
        self.connections = 0
        # A relay that takes this many connections from one client at a time, and greets any
        # more with a 421 (Postfix's smtpd_client_connection_count_limit).
        self.max_connections: int | None = None
        self.open_now = 0
        self.replies: list[str] = []
        self._seen = {"RCPT": 0, "DATA": 0}

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        if getattr(session, "counted", False) is False:
            session.counted = True
            session.accepted = 0
            with self.lock:
                self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.close_after is not None and getattr(session, "accepted", 0) >= self.close_after:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return self._say("421 4.7.0 Too many messages on one connection, closing")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await self._hold("RCPT")
        if address in self.rejected:
            return self._say("550 5.1.1 No such user here")
        with self.lock:
            left = self.rcpt_temporary.get(address, 0)
            if left:
                self.rcpt_temporary[address] = left - 1
        if left:
            return self._say("451 4.2.0 Mailbox busy, try again later")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.cut_after is not None and getattr(session, "accepted", 0) >= self.cut_after:
            server.transport.abort()
            return "451 never seen"
        with self.lock:
            rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
            left = self.data_temporary.get(rcpt, 0)
            if left:
                self.data_temporary[rcpt] = left - 1
        if left:
            return self._say("451 4.3.0 Temporary local problem, try later")
        if rcpt in self.data_rejected:
            return self._say("554 5.7.1 Message refused for this mailbox")
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content))
            )
        session.accepted = getattr(session, "accepted", 0) + 1
        # Held after the message is queued, before the reply: what a client killed now
        # cannot know is that the message was accepted.
        await self._hold("DATA")
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        return "250 2.0.0 Queued"

    async def _hold(self, stage: str) -> None:
        with self.lock:
            self._seen[stage] += 1
            number = self._seen[stage]
        gate = self.gate
        if gate is not None and gate.stage == stage and gate.number == number:
            gate.reached.set()
            while not gate.released.is_set():
                await asyncio.sleep(0.01)

    def _say(self, reply: str) -> str:
        with self.lock:
            self.replies.append(reply)
        return reply

    # -- reading the tally -----------------------------------------------------------------

    def copies(self) -> dict[str, int]:
        """How many messages each recipient got."""
        out: dict[str, int] = {}
        with self.lock:
            for message in self.received:
                for rcpt in message.recipients:
                    out[rcpt] = out.get(rcpt, 0) + 1
        return out

    def for_recipient(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.received if address in m.recipients]


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.username = username.encode()
        self.password = password.encode()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = auth_data.login == self.username and auth_data.password == self.password
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    handler: FaultyHandler
    host: str
    port: int


class _LimitedSMTP(SMTP):
    """aiosmtpd's server, greeting with a 421 when the handler's `max_connections` are open."""

    async def _handle_client(self) -> None:
        handler: FaultyHandler = self.event_handler
        with handler.lock:
            full = handler.max_connections is not None and (
                handler.open_now >= handler.max_connections
            )
            if not full:
                handler.open_now += 1
        if full:
            await self.push("421 4.7.0 Too many connections from your host")
            assert self.transport is not None
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            with handler.lock:
                handler.open_now -= 1


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _LimitedSMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def running_server(*, login: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    handler = FaultyHandler()
    kwargs: dict[str, Any] = {}
    if login is not None:
        kwargs = {"authenticator": _Authenticator(*login), "auth_require_tls": False}
    port = free_port()
    controller = _Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer(handler, "127.0.0.1", port)
    finally:
        if handler.gate is not None:
            handler.gate.released.set()
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_server() as server:
        yield server


SECRET = "test-secret-for-unsubscribe-tokens"
UNSUBSCRIBE = "https://digest.example.org/unsubscribe?token={token}"


def delivery_settings(
    root: Path,
    server: SmtpServer | None,
    *,
    unsubscribe_url: str | None = UNSUBSCRIBE,
    secret: str | None = SECRET,
    **smtp: Any,
) -> Settings:
    """Settings for a sender in `root` talking to `server` without TLS (loopback)."""
    base = Settings()
    paths = replace(
        base.paths,
        input=root / "digests",
        output=root / "output",
        state=root / "state" / "feeds.sqlite3",
        subscribers=root / "subscribers.csv",
    )
    defaults: dict[str, Any] = {
        "host": server.host if server else "127.0.0.1",
        "port": server.port if server else free_port(),
        "security": "none",
        "timeout": 5.0,
        # One connection unless a test asks for more: the order of an exchange is then known.
        "connections": 1,
    }
    smtp_settings = replace(base.smtp, **{**defaults, **smtp})
    newsletter = replace(base.newsletter, unsubscribe_url=unsubscribe_url)
    return replace(
        base, paths=paths, smtp=smtp_settings, newsletter=newsletter, unsubscribe_secret=secret
    )
