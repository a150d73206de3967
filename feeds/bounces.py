"""Bounces: delivery status notifications in a Maildir or an IMAP folder -> suppressed and
soft-bounced subscribers.

Each notification (read by `feeds.dsn`) is matched to the message it is about: by the VERP
token of the address it came back to, else by the Message-ID of the original it quotes. A
match acts on the recipient the ledger sent that message to, never on an address the
notification's text names: a permanent failure (5.x.x) suppresses it, a temporary one (4.x.x,
or a delayed notice) counts one soft bounce. The notification is then moved to the processed
folder; one that matches nothing of ours, or cannot be read, to the unmatched folder. Mail that
is not a notification (a person's reply) stays where it is, unread as it was. Nothing is ever
deleted.

The subscriber is changed before the notification is moved, so a run stopped in between reads
it again next time: suppressing is idempotent, and a soft bounce counts at most once a day.
"""

from __future__ import annotations

import base64
import imaplib
import os
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from feeds import dsn, state, verp
from feeds.audience import Audience
from feeds.config import BouncesSettings, Settings
from feeds.errors import ConfigError, FeedsError
from feeds.ledger import Entry, Ledger

LogFn = Callable[[str], None]
Folder = Literal["processed", "unmatched"]

# A notification's report is a few kilobytes, and mail servers return at most the first
# 50-100 kB of the original; a bigger message is not read, only filed as unmatched.
MAX_MESSAGE_BYTES = 1024 * 1024
# Every wait on the IMAP server (connect, each reply) ends after this long.
IMAP_TIMEOUT = 30.0


class MailboxError(FeedsError):
    """The mailbox holding the notifications cannot be reached or read."""


@dataclass
class BounceReport:
    """What one pass over a mailbox did."""

    hard: int = 0
    soft: int = 0
    # Notifications of ours that report no failure (a "delivered" or "relayed" notice).
    informational: int = 0
    unmatched: int = 0
    # Mail that is no notification at all, left where it is.
    left_alone: int = 0
    # (address, reason) for each address this pass suppressed.
    suppressed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.hard} permanent and {self.soft} temporary failures, "
            f"{self.informational} other notices, {self.unmatched} unmatched, "
            f"{self.left_alone} other messages left alone; "
            f"{len(self.suppressed)} addresses suppressed"
        )



# -- deciding what a message is and doing it ---------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    folder: Folder
    line: str


class _Judge:
    """Reads one message at a time and acts on the subscriber it is about."""

    def __init__(
        self, settings: Settings, ledger: Ledger, audience: Audience, log: LogFn
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.audience = audience
        self.log = log
        self.report = BounceReport()

    @classmethod
    @contextmanager
    def open(
        cls, settings: Settings, log: LogFn, clock: Callable[[], datetime]
    ) -> Iterator[_Judge]:
        ledger = Ledger.open(settings.paths.state)
        try:
            with Audience.open(settings.paths.state, clock=clock) as audience:
                yield cls(settings, ledger, audience, log)
        finally:
            ledger.close()

    def judge(
        self, label: str, head: bytes, size: int, rest: Callable[[], bytes]
    ) -> _Verdict | None:
        """Where the message goes, and the log line that says why; None: it is not a
        notification, and stays where it is. `head` is its first bytes, `rest()` reads it all
        (called only for a notification no bigger than MAX_MESSAGE_BYTES)."""
        if not dsn.is_notification(dsn.read_header(head)):
            self.report.left_alone += 1
            return None
        if size > MAX_MESSAGE_BYTES:
            return self._unmatched(
                label, f"too big to be read as a notification ({size} bytes; the limit is "
                f"{MAX_MESSAGE_BYTES})"
            )
        try:
            notification = dsn.read(rest())
        except dsn.Unreadable as error:
            return self._unmatched(label, f"unreadable: {error}")
        found = self._match(notification)
        if isinstance(found, str):
            return self._unmatched(label, f"{notification.shape}: {found}")
        entry, how = found
        return self._act(label, notification, entry, how)

    def _match(self, notification: dsn.Notification) -> tuple[Entry, str] | str:
        """The ledger row a notification is about and how it was found, or why none is."""
        secret = self.settings.unsubscribe_secret
        for address in notification.delivered_to:
            if not _carries_token(address):
                continue
            if not secret:
                return f"VERP token in {address} cannot be checked without FEEDS_UNSUBSCRIBE_SECRET"
            found = verp.read_token(address, secret)
            if found is None:
                # Not made by us, or altered on the way: trusting its quoted Message-ID
                # instead would let whoever forged it suppress somebody.
                return f"forged or damaged VERP token in {address}"
            entry = self.ledger.by_message_hash(found)
            if entry is None:
                return f"VERP token of {address} names a message the ledger does not hold"
            return entry, "VERP token"
        quoted = [(mid, verp.message_hash(mid)) for mid in notification.quoted_ids]
        ours = [(mid, found) for mid, found in quoted if found is not None]
        for mid, found in ours:
            entry = self.ledger.by_message_hash(found)
            if entry is not None:
                return entry, f"quoted Message-ID {mid}"
        if ours:
            return f"quotes Message-ID {ours[0][0]}, which the ledger does not hold"
        named = ", ".join(dict.fromkeys(f.recipient for f in notification.failures if f.recipient))
        return (
            f"no VERP token and no quoted Message-ID of ours (it names {named or 'nobody'})"
        )

    def _act(
        self, label: str, notification: dsn.Notification, entry: Entry, how: str
    ) -> _Verdict:
        recipient = entry.recipient
        member = self.audience.get(recipient)
        if member is None:
            return self._unmatched(
                label, f"about {recipient} (by {how}), who is not a subscriber"
            )
        failure = notification.worst
        about = f"{recipient}, {entry.digest_id} (by {how})"
        if failure.recipient and failure.recipient != recipient.lower():
            about += f", reported as {failure.recipient}"
        bounces = self.settings.bounces
        if failure.kind == "hard":
            self.report.hard += 1
            reason = f"bounce {failure.describe()}"
            if self.audience.suppress(recipient, reason):
                self.report.suppressed.append((recipient, reason))
                return self._processed(label, f"permanent failure: {about}: suppressed ({reason})")
            return self._processed(
                label, f"permanent failure: {about}: already {member.status}"
            )
        if failure.kind == "soft":
            self.report.soft += 1
            reply = failure.describe()
            if member.status not in ("confirmed", "pending"):
                return self._processed(
                    label, f"temporary failure: {about}: already {member.status}"
                )
            if self.audience.soft_bounce(
                recipient, reply, limit=bounces.soft_limit, reset_days=bounces.soft_reset_days
            ):
                reason = f"{bounces.soft_limit} days of temporary failures: {reply}"
                self.report.suppressed.append((recipient, reason))
                return self._processed(label, f"temporary failure: {about}: suppressed ({reply})")
            return self._processed(
                label, f"temporary failure: {about}: counted, at most once a day ({reply})"
            )
        self.report.informational += 1
        return self._processed(label, f"{failure.action} notice: {about}: nothing to do")

    def _processed(self, label: str, why: str) -> _Verdict:
        return _Verdict("processed", f"{label}: {why}")

    def _unmatched(self, label: str, why: str) -> _Verdict:
        self.report.unmatched += 1
        return _Verdict("unmatched", f"{label}: {why}")


def _carries_token(address: str) -> bool:
    """Whether an address looks like a VERP address (`local+HASH.MAC@domain`)."""
    local = address.rpartition("@")[0]
    return "+" in local and "." in local.partition("+")[2]


# -- Maildir ----------------------------------------------------------------------------------


def _need_secret(settings: Settings) -> None:
    """Without the signing secret no bounce can be told from a forged one (VERP tokens and
    Message-ID hashes are keyed with it): read none rather than let a forgery suppress."""
    if not settings.unsubscribe_secret:
        raise ConfigError(
            "reading bounces needs FEEDS_UNSUBSCRIBE_SECRET: without it a forged bounce could "
            "suppress any subscriber",
            hint="export FEEDS_UNSUBSCRIBE_SECRET, the secret the messages were sent with",
        )


def process_maildir(
    settings: Settings,
    folder: Path,
    *,
    log: LogFn,
    clock: Callable[[], datetime] = state.utc_now,
) -> BounceReport:
    """Read the notifications in the Maildir `folder` (new/ and cur/) and move each one to its
    Maildir++ subfolder (`folder/.processed`, `folder/.unmatched`) by an atomic rename, keeping
    its file name and flags. Other mail is not touched."""
    _need_secret(settings)
    if not ((folder / "cur").is_dir() and (folder / "new").is_dir()):
        raise ConfigError(
            f"{folder} is not a Maildir", hint="a Maildir holds cur/, new/ and tmp/ folders"
        )
    targets = {
        "processed": _maildir_subfolder(folder, settings.bounces.processed_folder),
        "unmatched": _maildir_subfolder(folder, settings.bounces.unmatched_folder),
    }
    with _Judge.open(settings, log, clock) as judge:
        for sub in ("new", "cur"):
            for path in sorted((folder / sub).iterdir()):
                # Maildir readers skip dot files; a folder here is not a message.
                if path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    verdict = _judge_file(judge, path, f"{sub}/{path.name}")
                    if verdict is not None:
                        _move_file(path, targets[verdict.folder] / sub)
                except FileNotFoundError:
                    log(f"{sub}/{path.name}: gone before it was read (another reader moved it)")
                    continue
                if verdict is not None:
                    log(f"{verdict.line} -> {targets[verdict.folder].name}")
    return judge.report


def _judge_file(judge: _Judge, path: Path, label: str) -> _Verdict | None:
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(dsn.MAX_HEADER_BYTES)
        return judge.judge(
            label, head, size, lambda: head + handle.read(MAX_MESSAGE_BYTES - len(head))
        )


def _maildir_subfolder(folder: Path, name: str) -> Path:
    """`folder/.name` by the Maildir++ convention (`a/b` is `.a.b`)."""
    parts = name.split("/")
    if not name or any(not part or part.startswith(".") or "\\" in part for part in parts):
        raise ConfigError(
            f"[bounces] folder name {name!r} cannot be a Maildir folder",
            hint="use a plain name such as 'processed'",
        )
    return folder / ("." + ".".join(parts))


def _move_file(path: Path, target: Path) -> None:
    """Rename `path` into the Maildir folder `target` (cur/ or new/ of a subfolder), made on
    first use; an existing file of that name is never replaced."""
    if not target.is_dir():
        base = target.parent
        for sub in ("tmp", "new", "cur"):
            (base / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        # Maildir++: marks the directory as a folder for Dovecot and Courier.
        (base / "maildirfolder").touch(mode=0o600, exist_ok=True)
    destination = target / path.name
    count = 0
    while destination.exists():
        count += 1
        stem, colon, info = path.name.partition(":")
        destination = target / f"{stem}.{count}{colon}{info}"
    os.rename(path, destination)


# -- IMAP -------------------------------------------------------------------------------------


def process_imap(
    settings: Settings,
    *,
    log: LogFn,
    clock: Callable[[], datetime] = state.utc_now,
    timeout: float = IMAP_TIMEOUT,
) -> BounceReport:
    """Read the notifications in `[bounces] imap_folder` and move each one to the processed or
    unmatched folder (made when missing): with UID MOVE where the server offers it, else UID
    COPY, \\Deleted and UID EXPUNGE of that message alone. Messages are fetched with BODY.PEEK,
    so mail left alone keeps its unread state; the folder is never expunged as a whole."""
    _need_secret(settings)
    bounces = settings.bounces
    where = f"{bounces.imap_host}:{bounces.imap_port}"
    source = bounces.imap_folder.casefold()
    if source in (bounces.processed_folder.casefold(), bounces.unmatched_folder.casefold()):
        raise ConfigError(
            f"[bounces] imap_folder {bounces.imap_folder!r} cannot also be where notifications "
            "are filed", hint="give processed_folder and unmatched_folder names of their own",
        )
    with _imap_session(bounces, timeout) as conn, _Judge.open(settings, log, clock) as judge:
        try:
            mover = _ImapMover(conn, bounces, log)
            _imap_ok(conn.select(_mailbox(bounces.imap_folder)), f"select {bounces.imap_folder}")
            found = _imap_ok(conn.uid("SEARCH", "ALL"), "search")
            uids = [int(uid) for uid in _text(found).split()]
            for uid in uids:
                label = f"{bounces.imap_folder} UID {uid}"
                verdict = _judge_imap(judge, conn, uid, label)
                if verdict is not None:
                    mover.move(uid, verdict.folder)
                    log(f"{verdict.line} -> {mover.name(verdict.folder)}")
        except (imaplib.IMAP4.error, OSError) as error:
            raise MailboxError(
                f"IMAP {where}: {error}", hint="the notifications read so far are filed"
            ) from error
    return judge.report


@contextmanager
def _imap_session(bounces: BouncesSettings, timeout: float) -> Iterator[imaplib.IMAP4]:
    where = f"{bounces.imap_host}:{bounces.imap_port}"
    if not bounces.imap_host or not bounces.imap_user:
        raise ConfigError(
            "[bounces] imap_host and imap_user are needed to read bounces over IMAP",
            hint="or give a Maildir",
        )
    if not bounces.imap_password:
        raise ConfigError(
            "[bounces] imap_host is set but FEEDS_IMAP_PASSWORD is not",
            hint="the IMAP password comes from the environment only",
        )
    try:
        conn = _imap_connect(bounces, timeout)
    except (imaplib.IMAP4.error, OSError) as error:
        raise MailboxError(f"cannot reach IMAP {where}: {error}") from error
    try:
        try:
            conn.login(bounces.imap_user, bounces.imap_password)
        except (imaplib.IMAP4.error, OSError) as error:
            raise MailboxError(
                f"IMAP {where} refused the login of {bounces.imap_user}: {error}",
                hint="check [bounces] imap_user and FEEDS_IMAP_PASSWORD",
            ) from error
        yield conn
    finally:
        # LOGOUT, never CLOSE: CLOSE would expunge every message flagged \Deleted in the
        # folder, also those flagged by somebody else.
        with suppress(imaplib.IMAP4.error, OSError):
            conn.logout()


def _imap_connect(bounces: BouncesSettings, timeout: float) -> imaplib.IMAP4:
    host = bounces.imap_host or ""
    if bounces.imap_security == "ssl":
        return imaplib.IMAP4_SSL(
            host, bounces.imap_port, ssl_context=ssl.create_default_context(), timeout=timeout
        )
    conn = imaplib.IMAP4(host, bounces.imap_port, timeout=timeout)
    if bounces.imap_security == "starttls":
        conn.starttls(ssl_context=ssl.create_default_context())
    return conn


def _judge_imap(judge: _Judge, conn: imaplib.IMAP4, uid: int, label: str) -> _Verdict | None:
    # The header alone first: mail that is no notification is never downloaded whole.
    wanted = f"(RFC822.SIZE BODY.PEEK[HEADER]<0.{dsn.MAX_HEADER_BYTES}>)"
    answer = _imap_ok(conn.uid("FETCH", str(uid), wanted), "fetch")
    fetched = _fetched(answer, uid)
    if fetched is None:
        return None  # expunged by somebody else since the search
    prefix, head = fetched
    size = re.search(rb"RFC822\.SIZE (\d+)", prefix)

    def rest() -> bytes:
        whole = _imap_ok(conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "fetch")
        found = _fetched(whole, uid)
        return found[1] if found else b""

    return judge.judge(label, head, int(size[1]) if size else 0, rest)


def _fetched(answer: list[Any], uid: int) -> tuple[bytes, bytes] | None:
    """(the response line, the literal) for `uid` among a FETCH's untagged responses, which
    may also carry flag updates for other messages."""
    for item in answer:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes):
            found = re.search(rb"UID (\d+)", item[0])
            if found and int(found[1]) == uid and isinstance(item[1], bytes):
                return item[0], item[1]
    return None


class _ImapMover:
    def __init__(self, conn: imaplib.IMAP4, bounces: BouncesSettings, log: LogFn) -> None:
        self.conn = conn
        self.log = log
        self.names: dict[Folder, str] = {
            "processed": bounces.processed_folder, "unmatched": bounces.unmatched_folder
        }
        capabilities = _imap_ok(conn.capability(), "capability")
        offered = set(_text(capabilities).upper().split())
        self.can_move = b"MOVE" in offered
        self.uidplus = b"UIDPLUS" in offered
        self.made: set[str] = set()
        self.warned = False

    def name(self, folder: Folder) -> str:
        return self.names[folder]

    def move(self, uid: int, folder: Folder) -> None:
        name = _mailbox(self.names[folder])
        self._make(name)
        if self.can_move:
            _imap_ok(self.conn.uid("MOVE", str(uid), name), f"move to {self.names[folder]}")
            return
        _imap_ok(self.conn.uid("COPY", str(uid), name), f"copy to {self.names[folder]}")
        _imap_ok(self.conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)"), "store")
        if self.uidplus:
            _imap_ok(self.conn.uid("EXPUNGE", str(uid)), "expunge")
        elif not self.warned:
            # A plain EXPUNGE would also remove what somebody else flagged \Deleted.
            self.log(
                "the IMAP server offers neither MOVE nor UIDPLUS: filed notifications are "
                "copied and left flagged \\Deleted in the folder, for your mail client to expunge"
            )
            self.warned = True

    def _make(self, name: str) -> None:
        if name in self.made:
            return
        listed = _imap_ok(self.conn.list('""', name), "list")
        if not any(listed):
            kind, data = self.conn.create(name)
            # Created meanwhile by somebody else is as good.
            if kind != "OK" and b"ALREADYEXISTS" not in _text(data):
                raise MailboxError(f"cannot create IMAP folder {name}: {data!r}")
        self.made.add(name)


def _imap_ok(response: tuple[str, Sequence[Any]], what: str) -> list[Any]:
    kind, data = response
    if kind != "OK":
        raise MailboxError(f"IMAP {what} failed: {kind} {_text(data).decode('utf-8', 'replace')}")
    return list(data)


def _text(data: Sequence[Any]) -> bytes:
    """The plain lines of an imaplib answer, joined (literals, which come as tuples, left out)."""
    return b" ".join(d for d in data if isinstance(d, bytes))


def _mailbox(name: str) -> str:
    """A folder name as an IMAP quoted string, in modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + raw.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    quoted = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'
