"""Bounce mailboxes: the Maildir or IMAP folder that receives delivery status notifications.

Each message is read as little as it takes (a header first) and handed to the judge in
`feeds.bounces`, which decides and acts; this module only reads and files. A notification is
moved to the processed or unmatched folder after its subscriber was changed; mail that is no
notification stays where it is, unread as it was. Nothing is ever deleted, and an IMAP folder
is never expunged as a whole.
"""

from __future__ import annotations

import base64
import imaplib
import os
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from feeds import dsn, state
from feeds.bounces import (
    MAX_MESSAGE_BYTES,
    BounceReport,
    Folder,
    Judge,
    LogFn,
    Verdict,
    need_secret,
)
from feeds.config import BouncesSettings, Settings
from feeds.errors import ConfigError, FeedsError

# Every wait on the IMAP server (connect, each reply) ends after this long.
IMAP_TIMEOUT = 30.0


class MailboxError(FeedsError):
    """The mailbox holding the notifications cannot be reached or read."""


# -- Maildir ----------------------------------------------------------------------------------


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
    need_secret(settings)
    if not ((folder / "cur").is_dir() and (folder / "new").is_dir()):
        raise ConfigError(
            "is not a Maildir", path=str(folder),
            hint="a Maildir holds cur/, new/ and tmp/ folders",
        )
    targets = {
        "processed": _maildir_subfolder(folder, settings.bounces.processed_folder),
        "unmatched": _maildir_subfolder(folder, settings.bounces.unmatched_folder),
    }
    with Judge.open(settings, log, clock) as judge:
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


def _judge_file(judge: Judge, path: Path, label: str) -> Verdict | None:
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
    need_secret(settings)
    bounces = settings.bounces
    where = f"[bounces] {bounces.imap_host}:{bounces.imap_port}"
    source = bounces.imap_folder.casefold()
    if source in (bounces.processed_folder.casefold(), bounces.unmatched_folder.casefold()):
        raise ConfigError(
            f"[bounces] imap_folder {bounces.imap_folder!r} cannot also be where notifications "
            "are filed", hint="give processed_folder and unmatched_folder names of their own",
        )
    with _imap_session(bounces, timeout) as conn, Judge.open(settings, log, clock) as judge:
        try:
            mover = _ImapMover(conn, bounces, log)
            _imap_ok(conn.select(_mailbox(bounces.imap_folder)), f"select {bounces.imap_folder}")
            # Not what is flagged \Deleted: without MOVE or UIDPLUS, what an earlier run filed
            # stays in the folder so flagged, and read again it was counted again.
            found = _imap_ok(conn.uid("SEARCH", "UNDELETED"), "search")
            uids = [int(uid) for uid in _text(found).split()]
            for uid in uids:
                label = f"{bounces.imap_folder} UID {uid}"
                verdict = _judge_imap(judge, conn, uid, label)
                if verdict is not None:
                    mover.move(uid, verdict.folder)
                    log(f"{verdict.line} -> {mover.name(verdict.folder)}")
        except (imaplib.IMAP4.error, OSError) as error:
            raise MailboxError(
                f"{where}: {error}", hint="the notifications read so far are filed"
            ) from error
    return judge.report


@contextmanager
def _imap_session(bounces: BouncesSettings, timeout: float) -> Iterator[imaplib.IMAP4]:
    where = f"[bounces] {bounces.imap_host}:{bounces.imap_port}"
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
        why = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise MailboxError(f"{where}: cannot reach the IMAP server: {why}") from error
    try:
        try:
            conn.login(bounces.imap_user, bounces.imap_password)
        except (imaplib.IMAP4.error, OSError) as error:
            raise MailboxError(
                f"{where}: refused the login of {bounces.imap_user}: {error}",
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


def _judge_imap(judge: Judge, conn: imaplib.IMAP4, uid: int, label: str) -> Verdict | None:
    # The header alone first: mail that is no notification is never downloaded whole.
    wanted = f"(RFC822.SIZE BODY.PEEK[HEADER]<0.{dsn.MAX_HEADER_BYTES}>)"
    answer = _imap_ok(conn.uid("FETCH", str(uid), wanted), "fetch")
    fetched = fetched_message(answer, uid)
    if fetched is None:
        return None  # expunged by somebody else since the search
    prefix, head = fetched
    size = re.search(rb"RFC822\.SIZE (\d+)", prefix)

    def rest() -> bytes:
        whole = _imap_ok(conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "fetch")
        found = fetched_message(whole, uid)
        return found[1] if found else b""

    return judge.judge(label, head, int(size[1]) if size else 0, rest)


def fetched_message(answer: list[Any], uid: int) -> tuple[bytes, bytes] | None:
    """(the response line, the literal) for `uid` among a FETCH's untagged responses, which
    may also carry flag updates for other messages."""
    # A server may send the UID after the literal (RFC 3501 allows any order): imaplib then
    # gives it as the bytes that follow the (line, literal) pair.
    for n, item in enumerate(answer):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes):
            after = answer[n + 1] if n + 1 < len(answer) else b""
            tail = after if isinstance(after, bytes) else b""
            found = re.search(rb"UID (\d+)", item[0]) or re.match(rb"\s*UID (\d+)", tail)
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
