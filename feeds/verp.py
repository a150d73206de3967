"""VERP: each message goes out with its own envelope sender, `bounces+TOKEN@domain`, so that a
bounce, which goes back to the envelope sender, says which message it is about.

The token is the hash part of the message's Message-ID (`<digest.HASH@domain>`, fixed per
digest and recipient, see `feeds.addressing.message_id`) and an HMAC of it, so that a forged bounce
cannot suppress anybody: `bounces+HASH.MAC@domain`, 43 characters before the @, within the 64
that SMTP allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_HASH = re.compile(r"[0-9a-f]{24}")
_TOKEN = re.compile(r"\+(?P<hash>[0-9a-f]{24})\.(?P<mac>[a-z2-7]{16})@", re.IGNORECASE)


def message_hash(message_id: str) -> str | None:
    """The hash part of a Message-ID the sender made (`<digest.HASH@domain>`), else None."""
    local = message_id.strip().strip("<>").rpartition("@")[0]
    found = local.rpartition(".")[2]
    return found if _HASH.fullmatch(found) else None


def envelope_sender(bounce_address: str, message_id: str, secret: str) -> str:
    """`bounces+HASH.MAC@domain` for `bounce_address` `bounces@domain`; the plain bounce
    address for a Message-ID that carries no hash (a test copy)."""
    found = message_hash(message_id)
    local, _, domain = bounce_address.rpartition("@")
    if found is None:
        return bounce_address
    return f"{local}+{found}.{_mac(found, secret)}@{domain}"


def read_token(address: str, secret: str) -> str | None:
    """The message hash a VERP address names, if its MAC is right; None for anything else
    (a forged or damaged address names nobody)."""
    match = _TOKEN.search(address)
    if match is None:
        return None
    found = match["hash"].lower()
    if not hmac.compare_digest(match["mac"].lower(), _mac(found, secret)):
        return None
    return found


def _mac(value: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), b"verp\n" + value.encode(), hashlib.sha256).digest()
    # Base32, lower case: letters and digits only, whatever a mail system does to the case.
    return base64.b32encode(digest[:10]).decode("ascii").lower()
