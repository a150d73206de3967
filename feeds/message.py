"""A newsletter as an email message: multipart/alternative, UTF-8, list headers.

`Newsletter` (what the renderer produces) is defined here, where it is consumed: the renderer
composes messages to measure them against the size budget, so it imports this module, and this
module imports nothing of the renderer.

Messages use `email.policy.SMTP` throughout (CRLF line ends), so `as_bytes` is exactly what goes
over the wire and what the size budget measures. The archive copy of a message is a pure function
of its content: Date is the digest's date, Message-ID comes from the digest id and the list id,
and the MIME boundary from a hash of the parts, so rebuilding writes byte-identical `.eml` files.

Both parts are sent base64-encoded: quoted-printable turns each Chinese character (3 UTF-8
bytes) into 9, while base64 costs a flat third and, unlike 8bit, needs nothing of the relay
(8BITMIME) and is safe with premailer's long lines. Figures in docs/newsletter.md.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from feeds.config import Settings
from feeds.errors import ConfigError
from feeds.links import safe_url
from feeds.textutil import HEADER_UNSAFE


@dataclass(frozen=True)
class Newsletter:
    """One email as rendered for one set of categories (None: all of them)."""

    digest_id: str
    subject: str
    html: str
    text: str
    # Distinct papers in this email (after the category filter, before any size degradation).
    count: int
    categories: frozenset[str] | None
    date: datetime
    title: str
    # Index into `feeds.issue.LEVELS`: 0 when nothing was left out.
    degradation: int = 0


class _ListPolicy(email.policy.EmailPolicy):
    """The SMTP policy, except that List-Unsubscribe is folded between its URLs, never inside.

    The email package folds a line that is too long by turning the long word into RFC 2047
    encoded words, and a personal unsubscribe link always is that long. Mail clients read
    List-Unsubscribe raw (RFC 2369: angle-bracketed URLs), so an encoded link is no link; a URL
    on a line of its own stays well under SMTP's 998-character limit.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() == "list-unsubscribe":
            return self._fold_urls(name, value)
        folded: str = super().fold(name, value)
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() == "list-unsubscribe":
            return self._fold_urls(name, value).encode("ascii")
        folded: bytes = super().fold_binary(name, value)
        return folded

    def _fold_urls(self, name: str, value: str) -> str:
        urls = re.findall(r"<[!-;=?-~]+>", str(value))
        return f"{name}: " + f",{self.linesep} ".join(urls) + self.linesep


POLICY = _ListPolicy(linesep="\r\n")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.\-]+")
_ID_LOCAL_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_+=$]+")
_URL_UNSAFE = re.compile(r"[^!#-;=?-~]+")  # printable ASCII except space, quotes and <>
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


def compose(
    newsletter: Newsletter,
    settings: Settings,
    *,
    to: str | None = None,
    unsubscribe_url: str | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The message for `newsletter`; without `to`/`message_id`/`date` it is the archive copy."""
    ns = settings.newsletter
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = header_text(newsletter.subject)
    msg["From"] = _configured(settings, "from", ns.sender)
    if to is not None:
        msg["To"] = address(to)
    if ns.reply_to:
        msg["Reply-To"] = _configured(settings, "reply_to", ns.reply_to)
    msg["Date"] = format_datetime(date or newsletter.date)
    domain = _list_domain(settings)
    msg["Message-ID"] = (
        _clean_message_id(message_id, domain)
        if message_id
        else archive_message_id(newsletter, settings)
    )
    list_headers(msg, settings, unsubscribe_url)
    msg["MIME-Version"] = "1.0"
    msg.set_content(newsletter.text, subtype="plain", charset="utf-8", cte="base64")
    msg.add_alternative(newsletter.html, subtype="html", charset="utf-8", cte="base64")
    digest = hashlib.sha256(
        (newsletter.text + "\0" + newsletter.html).encode("utf-8", "surrogatepass")
    ).hexdigest()
    # Derived from the content, so rebuilds are byte-identical; "_" never occurs in base64.
    msg.set_boundary(f"=_{digest[:32]}_=")
    return msg


def list_headers(msg: EmailMessage, settings: Settings, unsubscribe_url: str | None) -> None:
    """List-Id, List-Unsubscribe (the mailto and the personal https link) and, with an https
    link, List-Unsubscribe-Post: what every message of the list carries."""
    msg["List-Id"] = f"{_phrase(settings.site.title)} <{_list_domain(settings)}>"
    mailto = unsubscribe_mailto(settings)
    targets = [f"<{mailto}>"] if mailto else []
    https = _https(unsubscribe_url)
    if https:
        targets.append(f"<{https}>")
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if https:
        # RFC 8058: mail clients may unsubscribe with one POST to the https link.
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def as_bytes(msg: EmailMessage) -> bytes:
    """The message exactly as sent over SMTP (CRLF line ends)."""
    return msg.as_bytes(policy=POLICY)


def unsubscribe_mailto(settings: Settings) -> str | None:
    """The mailto: link that unsubscribes by email, None without `unsubscribe_mailto`.

    Only printable ASCII without quotes or angle brackets survives: the link goes into the
    List-Unsubscribe header between angle brackets, and into the email's footer.
    """
    mailto = _URL_UNSAFE.sub("", settings.newsletter.unsubscribe_mailto)
    return f"mailto:{mailto}?subject=unsubscribe" if mailto else None


def archive_message_id(newsletter: Newsletter, settings: Settings) -> str:
    """<digest id[.categories]@list id>: stable across builds, distinct per issue and subset."""
    local = newsletter.digest_id or "issue"
    if newsletter.categories is not None:
        local += "." + "-".join(sorted(newsletter.categories))
    local = _ID_UNSAFE.sub("-", local).strip("-.") or "issue"
    return f"<{local}@{_list_domain(settings)}>"


def address(value: str) -> Address:
    """One mailbox from `value` ("Name <user@example.org>" or a bare address).

    Raises ConfigError for anything that is not a plain ASCII address, rather than letting the
    email library fail (or fold garbage into a header) at some later point.
    """
    name, addr = parseaddr(header_text(value))
    if not _ADDRESS.fullmatch(addr):
        raise ConfigError(f"not an email address: {header_text(value)!r}")
    user, domain = addr.rsplit("@", 1)
    return Address(display_name=header_text(name), username=user, domain=domain)


def _configured(settings: Settings, key: str, value: str) -> Address:
    """A `[newsletter]` address, or an error naming the settings file and the key: met by the
    build too (the archive copy), which otherwise stopped with no word of where to look."""
    try:
        return address(value)
    except ConfigError as exc:
        raise ConfigError(
            f"[newsletter] {key}: {exc.message}",
            path=str(settings.source) if settings.source else None,
            hint="a plain address, or Name <user@example.org>",
        ) from None


def header_text(value: str) -> str:
    """A header value that cannot break out of its header: one line, no control characters."""
    return " ".join(HEADER_UNSAFE.sub(" ", value).split())


def _list_domain(settings: Settings) -> str:
    return _ID_UNSAFE.sub("-", settings.newsletter.list_id).strip("-.") or "newsletter.invalid"


def _clean_message_id(value: str, domain: str) -> str:
    """<local@domain> in plain ASCII, whatever the caller passed."""
    text = header_text(value).strip("<>")
    local, at, right = text.rpartition("@")
    if not at:
        local, right = text, ""
    local = _ID_LOCAL_UNSAFE.sub("", local) or "message"
    right = _ID_UNSAFE.sub("", right).strip("-.") or domain
    return f"<{local}@{right}>"


def _phrase(text: str) -> str:
    """A display name for List-Id (RFC 2919: a phrase): quoted when ASCII with specials; a
    non-ASCII one is left to the email package, which writes it as encoded words, and so
    loses its specials (an encoded word may not sit inside a quoted string, RFC 2047 5)."""
    clean = header_text(text).replace("\\", "").replace('"', "")
    if re.fullmatch(r"[A-Za-z0-9 !#$%&'*+\-/=?^_`{|}~]*", clean):
        return clean
    if clean.isascii():
        return f'"{clean}"'
    return " ".join(re.sub(r"[()<>\[\]:;@,.]", " ", clean).split())


def _https(url: str | None) -> str | None:
    """A link List-Unsubscribe may carry: safe, https (RFC 8058), printable ASCII between its
    angle brackets, and no comma (RFC 2369 separates the header's URLs with commas)."""
    url = safe_url(url)
    if url is None or not url.lower().startswith("https://"):
        return None
    if _URL_UNSAFE.search(url) or "," in url:
        return None
    return url
