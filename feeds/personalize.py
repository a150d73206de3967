"""Personalization: one rendering per (digest, category set), one message per recipient.

Only To, Message-ID and the unsubscribe token differ between the messages of one category set.
The newsletter is rendered with a placeholder token (URL-safe, so no escaping touches it) and
each recipient's message is made from that rendering.
"""

from __future__ import annotations

import binascii
import re
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from feeds.config import Settings
from feeds.model import Digest
from feeds.subscribers import Subscriber, resolve_categories
from feeds.unsubscribe import PLACEHOLDER, make_token, personal_url

if TYPE_CHECKING:
    from feeds.message import Newsletter


@dataclass(frozen=True, slots=True)
class Job:
    """One message to send: a digest to a subscriber, under a Message-ID fixed in advance."""

    digest_id: str
    subscriber: Subscriber
    message_id: str
    # An earlier run was deferred by a temporary failure for this message (and said so).
    retried: bool = False

    @property
    def recipient(self) -> str:
        return self.subscriber.key


class Messages:
    """One rendering per (digest, category set); per recipient only To, Message-ID and the
    unsubscribe token change (see `Stencil`)."""

    def __init__(
        self, settings: Settings, digests: dict[str, Digest], *, now: datetime
    ) -> None:
        self._settings = settings
        self._digests = digests
        self._now = now
        self._stencils: dict[tuple[str, frozenset[str] | None], Stencil | None] = {}
        self._present: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self._template = settings.unsubscribe_template or None

    def build(self, job: Job) -> bytes | None:
        stencil = self.stencil(job)
        if stencil is None:
            return None
        token = None
        if self._template is not None:
            token = make_token(
                job.subscriber.email,
                list_id=self._settings.newsletter.list_id,
                secret=self._settings.unsubscribe_secret or "",
            )
        return stencil.fill(to=job.subscriber.address, message_id=job.message_id, token=token)

    def stencil(self, job: Job) -> Stencil | None:
        digest = self._digests[job.digest_id]
        wanted = job.subscriber.categories
        categories = None
        if wanted and digest.format != "weekly":
            # Keyed on the codes this digest has: on a day without AS, `AS CV` and `CV` are
            # the same newsletter, rendered once (weekly picks, never filtered, are one for
            # everybody).
            present = self._present.get(digest.id)
            if present is None:
                present = frozenset(i.category for i in digest.items if i.category)
                self._present[digest.id] = present
            categories = resolve_categories(wanted, present) & present
        key = (digest.id, categories)
        # Rendering takes a while (premailer); the lock keeps two threads from doing it twice.
        with self._lock:
            if key not in self._stencils:
                self._stencils[key] = self._render(digest, categories)
            return self._stencils[key]

    def _render(self, digest: Digest, categories: frozenset[str] | None) -> Stencil | None:
        from feeds.newsletter import render_newsletter

        url = None if self._template is None else personal_url(self._template, PLACEHOLDER)
        # The endpoint's preferences page takes the same personal token.
        preferences = self._settings.web.url("/preferences?token=" + PLACEHOLDER)
        newsletter = render_newsletter(
            digest, self._settings, categories=categories, unsubscribe_url=url,
            preferences_url=preferences if url else None,
        )
        if newsletter is None:
            return None
        return Stencil(newsletter, self._settings, date=self._now, template=self._template)


_TO_MARK = "stencil@stencil.invalid"
_ID_MARK = "<stencil@stencil.invalid>"
_CHECK_TO = '"Zoë O\'Brien, 测试" <check@example.org>'
_CHECK_PLAIN_TO = "Reader 7 <reader.7@mail.example.org>"


class Stencil:
    """A newsletter composed once, as bytes, with marks where each recipient's message differs.

    Composing a message with the email package costs milliseconds (its header objects are slow),
    which alone would cap a connection below 300 messages per second. `fill` builds the same
    message by swapping in the To and Message-ID headers (folded by the email package's own
    header classes) and re-encoding the two body parts only when they carry an unsubscribe token.
    Every stencil checks itself once against a full `compose` and falls back to composing each
    message if anything differs, so a change in `feeds.message` can never be silently lost.
    """

    def __init__(
        self, newsletter: Newsletter, settings: Settings, *, date: datetime, template: str | None
    ) -> None:
        self.newsletter = newsletter
        self._settings = settings
        self._date = date
        self._template = template
        raw = self._compose(_TO_MARK, _ID_MARK, PLACEHOLDER if template else None)
        head, _, body = raw.partition(b"\r\n\r\n")
        self._headers = _split_headers(head + b"\r\n")
        self._body = body
        self._parts: list[tuple[int, int, str]] = []
        self.fast = self._prepare()
        if self.fast:
            self.fast = self._agrees()

    def fill(self, *, to: str, message_id: str, token: str | None) -> bytes:
        if not self.fast:
            return self._compose(to, message_id, token)
        mark = PLACEHOLDER.encode("ascii")
        swap = token.encode("ascii") if token is not None else mark
        head = [
            _folded("To", to) if name == "to"
            else _folded("Message-ID", message_id) if name == "message-id"
            else raw.replace(mark, swap) if name == "list-unsubscribe"
            else raw
            for name, raw in self._headers
        ]
        body: list[bytes] = []
        at = 0
        for start, end, text in self._parts:
            body.append(self._body[at:start])
            body.append(_base64_body(text.replace(PLACEHOLDER, token or PLACEHOLDER)))
            at = end
        body.append(self._body[at:])
        return b"".join(head) + b"\r\n" + b"".join(body)

    def _compose(self, to: str, message_id: str, token: str | None) -> bytes:
        from feeds.message import as_bytes, compose

        newsletter = self.newsletter
        url = None
        if self._template is not None and token is not None:
            url = personal_url(self._template, token)
            newsletter = replace(
                newsletter,
                html=newsletter.html.replace(PLACEHOLDER, token),
                text=newsletter.text.replace(PLACEHOLDER, token),
            )
        msg = compose(
            newsletter, self._settings, to=to, unsubscribe_url=url, message_id=message_id,
            date=self._date,
        )
        return as_bytes(msg)

    def _prepare(self) -> bool:
        names = [name for name, _ in self._headers]
        if names.count("to") != 1 or names.count("message-id") != 1:
            return False
        if self._template is None:
            return True
        for text in (self.newsletter.text, self.newsletter.html):
            if PLACEHOLDER not in text:
                continue
            block = _base64_body(text)
            start = self._body.find(block)
            if start < 0:
                return False
            self._parts.append((start, start + len(block), text))
        self._parts.sort()
        return True

    def _agrees(self) -> bool:
        """The fast path gives the message `compose` gives, boundary aside."""
        token = None
        if self._template is not None:
            list_id = self._settings.newsletter.list_id
            token = make_token("check@example.org", list_id=list_id, secret="check")
        mid = "<check.0123456789abcdef@example.org>"
        return _same_message(
            self.fill(to=_CHECK_TO, message_id=mid, token=token),
            self._compose(_CHECK_TO, mid, token),
        ) and _same_message(
            self.fill(to=_CHECK_PLAIN_TO, message_id=mid, token=token),
            self._compose(_CHECK_PLAIN_TO, mid, token),
        )


def _split_headers(head: bytes) -> list[tuple[str, bytes]]:
    """Header fields of a CRLF message head, each with its continuation lines."""
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + b"\r\n")
        else:
            name = line.split(b":", 1)[0].decode("ascii", "replace").strip().lower()
            fields.append((name, line + b"\r\n"))
    return fields


# An address the email package writes as it is given: a display name of plain words (atext,
# single spaces, no dot: a dot makes it quote the name) before <local@domain>, or a bare
# local@domain, or a Message-ID <local@domain>. Without = and ?, so that nothing in it can be
# read as an encoded word.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]"
_PLAIN = re.compile(
    rf"(?:(?:{_ATEXT}+ )*{_ATEXT}+ )?<{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>"
    rf"|{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def _folded(name: str, value: str) -> bytes:
    """One header field exactly as `compose` and the SMTP policy write it.

    A plain address on a short line is written as it is, without the email package's header
    parser and folder (0.25 ms a header, two headers a message): tests hold the two to the
    same bytes, and every stencil checks a plain address against a full compose as well."""
    if len(name) + 2 + len(value) <= 78 and _PLAIN.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    from feeds.message import POLICY, header_text

    header = POLICY.header_factory(name, header_text(value))
    folded: str = header.fold(policy=POLICY)
    return folded.encode("ascii")


def _base64_body(text: str) -> bytes:
    """A text part's body as the email package encodes it with cte="base64" (57-byte lines)."""
    data = b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"
    lines = (binascii.b2a_base64(data[i : i + 57]) for i in range(0, len(data), 57))
    return b"".join(lines).replace(b"\n", b"\r\n")


def _same_message(fast: bytes, full: bytes) -> bool:
    """The two messages are the same bytes but for their MIME boundaries (`compose` makes one
    from the content, which the token changes) and where their header fields fold (it folds
    by the length of the token). Compared as bytes: parsing both with the email package cost
    20 ms a stencil, most of a subset newsletter's making."""
    return _unfolded(fast) == _unfolded(full)


_BOUNDARY = re.compile(rb'boundary="([^"]+)"')
_FOLD = re.compile(rb"\r\n[ \t]+|[ \t]+")


def _unfolded(raw: bytes) -> bytes:
    """`raw` with its boundaries numbered and its header section unfolded."""
    for n, boundary in enumerate(_BOUNDARY.findall(raw)):
        raw = raw.replace(boundary, b"boundary-%d" % n)
    head, blank, body = raw.partition(b"\r\n\r\n")
    return _FOLD.sub(b" ", head) + blank + body
