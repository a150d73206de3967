"""Per-recipient unsubscribe tokens, signed with HMAC-SHA256.

A token is `<address>.<mac>`, both URL-safe base64 without padding, so the endpoint that receives
`?token=...` can tell who asked without a database and can reject forged or altered tokens. The
MAC covers the list id too, so a token for one list cannot unsubscribe from another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import urlsplit

from feeds.config import is_loopback
from feeds.errors import ConfigError

TOKEN_FIELD = "{token}"
# Stands in for the token while a newsletter is rendered once for many recipients; it is made
# of URL-safe characters only, so no escaping in HTML or text can change it before substitution.
PLACEHOLDER = "UNSUBSCRIBE-TOKEN-7c1f0e9a2b4d"


def make_token(recipient: str, *, list_id: str, secret: str) -> str:
    address = recipient.lower()
    return f"{_b64(address.encode('utf-8'))}.{_b64(_mac(address, list_id, secret))}"


def verify_token(token: str, *, list_id: str, secret: str) -> str | None:
    """The address a token was made for, or None when it is malformed or not ours."""
    head, dot, tail = token.partition(".")
    if not dot:
        return None
    try:
        address = _unb64(head).decode("utf-8")
        mac = _unb64(tail)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not hmac.compare_digest(mac, _mac(address, list_id, secret)):
        return None
    return address


def personal_url(template: str, token: str) -> str:
    return template.replace(TOKEN_FIELD, token)


def check_template(template: str | None, secret: str | None, *, where: str | None) -> None:
    """Refuse a configured unsubscribe URL that cannot be filled in or signed."""
    if not template:
        return
    if TOKEN_FIELD not in template:
        raise ConfigError(
            f"[newsletter] unsubscribe_url has no {TOKEN_FIELD} field",
            path=where,
            hint="e.g. https://digest.example.org/unsubscribe?token={token}",
        )
    if not template.startswith("https://") and not _local(template):
        raise ConfigError(
            "[newsletter] unsubscribe_url must be an https:// URL (mail clients ignore others "
            "for one-click unsubscribe)",
            path=where,
        )
    if not secret:
        raise ConfigError(
            "[newsletter] unsubscribe_url is set but FEEDS_UNSUBSCRIBE_SECRET is not",
            path=where,
            hint="export FEEDS_UNSUBSCRIBE_SECRET to a long random string (it signs the tokens)",
        )


def _local(url: str) -> bool:
    """An http:// link to this machine: a local preview of the endpoint (`feeds serve`)."""
    return url.startswith("http://") and is_loopback(urlsplit(url).hostname or "")


def _mac(address: str, list_id: str, secret: str) -> bytes:
    message = f"{list_id}\n{address}".encode()
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(ch not in _ALPHABET for ch in text):
        raise ValueError("not URL-safe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
