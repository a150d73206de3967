"""Reading delivery status notifications: bytes of one message -> who could not be reached,
with what status, and which message of ours it is about.

Three shapes are read: RFC 3464 (`multipart/report; report-type=delivery-status` with a
`message/delivery-status` part, one block of fields per recipient), and the plain-text bounces
that name the recipient and the server's reply only in prose, in the two layouts that cover
most of them: Postfix's (`<user@example.org>: host mx said: 550 5.1.1 ...`) and qmail's
(`<user@example.org>:` and the reply on the lines below). The message the notification is
about is named by the addresses it was delivered to (a VERP token) and by the Message-ID of
the original, in an attached `message/rfc822` or `text/rfc822-headers` part or quoted in the
text.

Everything here reads hostile input: a notification that cannot be read raises `Unreadable`
with one line saying why, and never anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses
from typing import Literal

from feeds.smtp_status import ENHANCED, about_the_mailbox

# The header of a message is read from at most this many bytes: enough for any real one, and
# all that deciding whether a message is a notification at all needs.
MAX_HEADER_BYTES = 64 * 1024

Kind = Literal["hard", "soft", "none"]

# Where a notification is delivered: the VERP address it went back to.
_DELIVERY_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
# Who sends notifications: the local part of the From address.
_DAEMONS = frozenset({
    "mailer-daemon", "postmaster", "mail-delivery-system", "mail-delivery-subsystem",
    "mailerdaemon", "mdaemon", "bounce", "bounces",
})
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered mail|delivery (status notification|failure|has failed|problem)"
    r"|failure notice|returned mail|mail delivery failed|non-?delivery|could not be delivered"
    r"|delayed mail|delivery delayed",
    re.IGNORECASE,
)
# Neither may be part of a longer dotted number: text bounces name the server's IP address
# before its reply, and `10.2.0.5` or `52.5.12.34` are no status (`smtp_status.ENHANCED`).
_STATUS = ENHANCED
_SMTP_REPLY = re.compile(r"(?<![\d.])([245])\d\d(?=[ :-])")
# `<user@example.org>:` at the start of a line, then the text up to the next blank line: the
# recipient block of Postfix's and qmail's plain-text bounces.
_TEXT_BLOCK = re.compile(
    r"^<(?P<address>[^<>\s@]+@[^<>\s@]+)>(?:\s*\(expanded from <[^<>\s]*>\))?:[ \t]*"
    r"(?P<text>.*?)(?=\n[ \t]*\n|\Z)",
    re.MULTILINE | re.DOTALL,
)
# One run of blanks, which may hold a line break: two runs of blanks on either side of an
# optional break backtracked on every split of a long run (minutes for one crafted message).
_QUOTED_ID = re.compile(r"^[ \t>]*Message-ID:(?:[ \t]|\n(?=[ \t]*<))*(<[^<>\s]+>)", re.I | re.M)
_PERMANENT = re.compile(r"permanent (error|failure)|I've given up|giving up", re.IGNORECASE)
_DELAYED = re.compile(
    r"\bdelayed\b|will (keep|continue) trying|not (yet )?been delivered yet|still trying"
    r"|temporary (error|failure)|I'll keep trying",
    re.IGNORECASE,
)
_NOT_FAILURES = frozenset({"delivered", "relayed", "expanded"})


class Unreadable(Exception):
    """A message that looks like a notification but cannot be read as one."""


@dataclass(frozen=True)
class Failure:
    """What a notification says of one recipient."""

    recipient: str  # the address the notification names; "" when it names none
    action: str  # failed, delayed, delivered, relayed or expanded (RFC 3464)
    status: str  # the enhanced status code, e.g. 5.1.1
    diagnostic: str  # the remote server's words, on one line

    @property
    def kind(self) -> Kind:
        """hard (5.x.x: stop mailing), soft (4.x.x or delayed: count it) or none; none too
        for a status that is not about the mailbox (`smtp_status.about_the_mailbox`)."""
        if self.action == "delayed":
            return "soft" if about_the_mailbox(self.status, remote=True) else "none"
        if self.action in _NOT_FAILURES:
            return "none"
        if not about_the_mailbox(self.status, remote=True):
            # The relay's or the receiving system's policy, the message: not the address.
            return "none"
        if self.status.startswith("5"):
            return "hard"
        return "soft" if self.status.startswith("4") else "none"

    def describe(self) -> str:
        words = self.diagnostic if self.status in self.diagnostic else (
            f"{self.status} {self.diagnostic}".strip()
        )
        return words if self.action in ("failed", "") else f"{self.action}: {words}"


@dataclass(frozen=True)
class Notification:
    shape: str  # "RFC 3464", "Postfix-style text" or "qmail-style text"
    delivered_to: tuple[str, ...]  # the notification's own recipients, where a VERP token is
    quoted_ids: tuple[str, ...]  # Message-IDs of the original message it quotes
    failures: tuple[Failure, ...]

    @property
    def worst(self) -> Failure:
        """The failure that decides: any hard one, else any soft one, else the first."""
        order: dict[Kind, int] = {"hard": 0, "soft": 1, "none": 2}
        return min(self.failures, key=lambda failure: order[failure.kind])


def read_header(head: bytes) -> Message:
    """The header fields of a message from its first bytes (at most MAX_HEADER_BYTES)."""
    return BytesHeaderParser().parsebytes(head[:MAX_HEADER_BYTES])


def is_notification(header: Message) -> bool:
    """Whether a message is a delivery status notification, from its header alone; what is
    not (a person's reply, an auto-reply, a read receipt) is no business of ours."""
    content_type = _header_text(header, "Content-Type").lower()
    if "multipart/report" in content_type and "delivery-status" in content_type:
        return True
    if "report-type" in content_type:
        return False  # a read receipt or an abuse report: not about delivery
    sender = getaddresses([_header_text(header, "From")])
    local = sender[0][1].partition("@")[0].lower() if sender else ""
    if local in _DAEMONS:
        # Postfix marks its bounces auto-replied too, so the sender is asked first.
        return True
    # Vacation notices go to the envelope sender as well, and are not bounces (RFC 3834).
    if _header_text(header, "Auto-Submitted").lower().startswith("auto-replied"):
        return False
    null_sender = _header_text(header, "Return-Path").strip() in ("<>", "")
    generated = _header_text(header, "Auto-Submitted").lower().startswith("auto-generated")
    bounce_subject = _BOUNCE_SUBJECT.search(_header_text(header, "Subject")) is not None
    return bounce_subject and (generated or (null_sender and "Return-Path" in header))


def read(data: bytes) -> Notification:
    """Read one notification (the whole message, already size-capped by the caller)."""
    try:
        return _read(data)
    except Unreadable:
        raise
    except Exception as error:
        # Hostile MIME can break the email package in many ways (deep nesting, encodings it
        # does not know); each is one unreadable message, not a stopped run.
        raise Unreadable(f"malformed MIME ({type(error).__name__})") from error


def _read(data: bytes) -> Notification:
    message = message_from_bytes(data)
    delivered_to = _delivered_to(message)
    quoted = _quoted_ids(message)
    text = "\n\n".join(_texts(message))
    # The original's header quoted in the prose, where no part carries it.
    quoted = quoted or tuple(dict.fromkeys(_QUOTED_ID.findall(text)))
    failures = _report_failures(message)
    shape = "RFC 3464"
    if not failures:
        failures = _text_failures(text)
        shape = "qmail-style text" if "qmail-send" in text else "Postfix-style text"
    if not failures:
        defects = sorted({type(d).__name__ for part in message.walk() for d in part.defects})
        if defects:
            raise Unreadable(f"malformed MIME ({', '.join(defects)})")
        raise Unreadable("names no recipient with a delivery status")
    return Notification(shape, delivered_to, quoted, failures)


def _delivered_to(message: Message) -> tuple[str, ...]:
    values = [str(v) for name in _DELIVERY_HEADERS for v in message.get_all(name, [])]
    return tuple(dict.fromkeys(a for _, a in getaddresses(values) if "@" in a))


def _quoted_ids(message: Message) -> tuple[str, ...]:
    """Message-IDs of the original, from the parts that carry its header; the notification's
    own Message-ID is not among them."""
    found: list[str] = []
    for part in message.walk():
        if part is message:
            continue
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                found.extend(_ids(str(inner.get("Message-ID", ""))))
            elif isinstance(payload, str):
                found.extend(_QUOTED_ID.findall(_decoded(part)))
        elif content_type in ("text/rfc822-headers", "message/global-headers"):
            found.extend(_QUOTED_ID.findall(_decoded(part)))
    return tuple(dict.fromkeys(found))


def _ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


def _report_failures(message: Message) -> tuple[Failure, ...]:
    """The per-recipient blocks of every delivery-status part (RFC 3464, RFC 6533)."""
    failures: list[Failure] = []
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks = [b for b in payload if isinstance(b, Message)]
            else:
                blocks = _blocks(_decoded(part))
        elif content_type == "message/global-delivery-status":
            blocks = _blocks(_decoded(part))
        else:
            continue
        failures.extend(f for f in map(_block_failure, blocks) if f is not None)
    return tuple(failures)


def _blocks(text: str) -> list[Message]:
    parser = HeaderParser()
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text)
    return [parser.parsestr(chunk.strip("\r\n") + "\n") for chunk in chunks if chunk.strip()]


def _block_failure(block: Message) -> Failure | None:
    action = _field(block, "Action").lower().split(" ")[0]
    recipient = _address(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
    if not action and not recipient:
        return None  # the per-message block
    diagnostic = _field(block, "Diagnostic-Code")
    if ";" in diagnostic:
        diagnostic = diagnostic.partition(";")[2].strip()
    status = _status(_field(block, "Status")) or _status(diagnostic)
    if status is None:
        if action in _NOT_FAILURES:
            status = "2.0.0"
        else:
            raise Unreadable(f"the report for {recipient or 'a recipient'} has no status")
    return Failure(recipient, action or "failed", status, _one_line(diagnostic))


def _text_failures(text: str) -> tuple[Failure, ...]:
    failures = []
    delayed = _DELAYED.search(text) is not None and _PERMANENT.search(text) is None
    for block in _TEXT_BLOCK.finditer(text):
        words = _one_line(block["text"])
        status = _status(words)
        if status is None:
            if _PERMANENT.search(text):
                status = "5.0.0"
            elif delayed:
                status = "4.0.0"
            else:
                continue
        action = "delayed" if delayed and status[0] == "4" else "failed"
        failures.append(Failure(block["address"], action, status, words))
    return tuple(failures)


def _status(text: str) -> str | None:
    """An enhanced status code (5.1.1), else one made from a bare SMTP reply code (550)."""
    found = _STATUS.search(text)
    if found:
        return ".".join(found.groups())
    reply = _SMTP_REPLY.search(text)
    return f"{reply[1]}.0.0" if reply else None


def _texts(message: Message) -> list[str]:
    """The human-readable text of a notification: its text/plain parts, not those of a message
    it attaches (whose text a stranger wrote)."""
    texts: list[str] = []
    stack = [message]
    while stack:
        part = stack.pop()
        content_type = part.get_content_type()
        if part.is_multipart() and not content_type.startswith("message/"):
            stack.extend(reversed([p for p in part.get_payload() if isinstance(p, Message)]))
        elif content_type == "text/plain":
            texts.append(_decoded(part))
    return texts


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw.replace("\r\n", "\n") if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:
        text = payload.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n")


def _field(block: Message, name: str) -> str:
    return _one_line(str(block.get(name, "")))


def _address(value: str) -> str:
    """The address of a `Final-Recipient: rfc822; user@example.org` field."""
    value = value.partition(";")[2] if ";" in value else value
    return value.strip().strip("<>").lower()


def _header_text(header: Message, name: str) -> str:
    raw = header.get(name)
    if raw is None:
        return ""
    try:
        return str(make_header(decode_header(str(raw))))
    except Exception:
        # A broken encoded word reads as its raw text.
        return str(raw)


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]
