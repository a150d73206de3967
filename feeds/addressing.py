"""What each message is sent as: its Message-ID, its envelope sender (a VERP address when
bounces are read), and the sender settings checked before anything is sent.

The Message-ID is made again, the same, whenever it is needed (the ledger keeps none once a
message is sent), and is keyed with the signing secret: a bounce that quotes it suppresses its
recipient, so nobody else may be able to make one up.
"""

from __future__ import annotations

import hashlib
import hmac
from email.utils import parseaddr
from functools import lru_cache

from feeds import verp
from feeds.config import Settings
from feeds.errors import ConfigError
from feeds.ledger import Entry
from feeds.subscribers import normalize_email
from feeds.unsubscribe import check_template


def check_sending(settings: Settings) -> None:
    """What must hold before anything is sent (also run by `feeds check`)."""
    where = str(settings.source) if settings.source else None
    check_template(settings.unsubscribe_template, settings.unsubscribe_secret, where=where)
    if not envelope_sender(settings):
        raise ConfigError(
            f"[newsletter] from has no address: {settings.newsletter.sender!r}", path=where
        )
    bounce = settings.newsletter.bounce_address
    if bounce and not isinstance(normalize_email(bounce), str):
        raise ConfigError(
            f"[newsletter] bounce_address is not an address: {bounce!r}", path=where
        )
    if bounce and not settings.unsubscribe_secret:
        raise ConfigError(
            "[newsletter] bounce_address is set but FEEDS_UNSUBSCRIBE_SECRET is not",
            path=where,
            hint="the secret signs the bounce tokens, so that a forged bounce suppresses nobody",
        )
    reply_to = settings.newsletter.reply_to
    if reply_to and not isinstance(normalize_email(parseaddr(reply_to)[1]), str):
        raise ConfigError(f"[newsletter] reply_to is not an address: {reply_to!r}", path=where)


def envelope_sender(settings: Settings) -> str:
    """The `MAIL FROM` address: the `From` address, if it is a plain one."""
    return _plain_address(settings.newsletter.sender)


@lru_cache(maxsize=8)
def _plain_address(sender: str) -> str:
    # Asked for every message (its envelope, its Message-ID's domain): validating the address
    # costs about 0.1 ms each time, a tenth of what a connection can spend per message.
    address = parseaddr(sender)[1]
    return address if isinstance(normalize_email(address), str) else ""


def message_id(entry: Entry, settings: Settings) -> str:
    """The same for every attempt at one (digest, recipient), so a copy sent again after a crash
    can be recognised as the same message; it does not reveal the address, and with the
    signing secret set nobody else can compute it."""
    if entry.message_id:
        return entry.message_id
    seed = f"{settings.newsletter.list_id}\0{entry.digest_id}\0{entry.recipient}".encode()
    # Keyed when there is a secret: a bounce that quotes a Message-ID suppresses its recipient,
    # so nobody must be able to make up the Message-ID of another subscriber's copy.
    secret = settings.unsubscribe_secret
    digest = (
        hmac.new(secret.encode(), seed, hashlib.sha256) if secret else hashlib.sha256(seed)
    ).hexdigest()[:24]
    domain = envelope_sender(settings).rpartition("@")[2] or "localhost"
    return f"<{entry.digest_id}.{digest}@{domain}>"


def envelope_for(settings: Settings, message_id: str) -> str:
    """The `MAIL FROM` of one message: a VERP address when `[newsletter] bounce_address` is
    set, so that its bounce names it; the plain sender address otherwise."""
    bounce = settings.newsletter.bounce_address
    if bounce and settings.unsubscribe_secret:
        return verp.envelope_sender(bounce, message_id, settings.unsubscribe_secret)
    return envelope_sender(settings)
