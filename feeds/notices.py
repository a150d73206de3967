"""The two emails the endpoint sends on its own: "confirm your subscription" and "manage your
subscription".

Nothing a visitor typed goes into them except the address they are sent to: a form cannot be
used to mail a stranger words of the visitor's choosing. Each carries the list's headers with
the personal one-click unsubscribe link, like every newsletter, and its links in both parts.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape
from typing import Literal

from feeds.config import Settings
from feeds.message import POLICY, address, as_bytes, header_text, list_headers
from feeds.unsubscribe import make_token, personal_url

Kind = Literal["confirm", "manage"]


def compose_notice(
    settings: Settings, kind: Kind, email: str, link: str, *, now: datetime
) -> bytes:
    """The message as sent: `link` is the confirmation link, or the preferences link."""
    title = header_text(settings.site.title)
    unsubscribe = _unsubscribe_url(settings, email)
    if kind == "confirm":
        subject = f"Confirm your subscription to {title}"
        lines = [
            f"Someone, probably you, asked to subscribe {email} to {title}.",
            "",
            "To confirm, open this link and press the button on the page:",
            link,
            "",
            "If it was not you, ignore this email: without the confirmation nothing is sent.",
        ]
        button = "Confirm my subscription"
    else:
        subject = f"Your subscription to {title}"
        lines = [
            f"Someone, probably you, asked for the link to manage the subscription of {email}"
            f" to {title}.",
            "",
            "Choose your categories, or leave, here:",
            link,
        ]
        button = "Manage my subscription"
    if unsubscribe:
        lines += ["", f"Unsubscribe at once: {unsubscribe}"]
    text = "\n".join(lines) + "\n"
    html = _html(lines, link, button, unsubscribe, settings.site.language)

    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = subject
    msg["From"] = address(settings.newsletter.sender)
    msg["To"] = address(email)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=_domain(settings))
    # Transactional, not bulk: no auto-replies, and the list's headers let clients unsubscribe.
    msg["Auto-Submitted"] = "auto-generated"
    list_headers(msg, settings, unsubscribe)
    msg["MIME-Version"] = "1.0"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="base64")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    return as_bytes(msg)


def _unsubscribe_url(settings: Settings, email: str) -> str | None:
    template = settings.unsubscribe_template
    if not template or not settings.unsubscribe_secret:
        return None
    token = make_token(
        email, list_id=settings.newsletter.list_id, secret=settings.unsubscribe_secret
    )
    return personal_url(template, token)


def _html(
    lines: list[str], link: str, button: str, unsubscribe: str | None, language: str
) -> str:
    paragraphs = "\n".join(
        f'<p style="margin:0 0 12px">{escape(line)}</p>'
        for line in lines
        if line and line != link and not line.startswith("Unsubscribe at once")
    )
    leave = (
        f'<p style="margin:24px 0 0;font-size:13px"><a href="{escape(unsubscribe)}" '
        f'style="color:#0b57d0">Unsubscribe at once</a></p>'
        if unsubscribe
        else ""
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body style="margin:0;padding:16px;font-family:sans-serif;font-size:16px;'
        'line-height:1.5;color:#1f1f1f;background:#ffffff"><main style="max-width:560px">'
        f"{paragraphs}"
        f'<p style="margin:20px 0"><a href="{escape(link)}" style="display:inline-block;'
        'padding:10px 18px;background:#0b57d0;color:#ffffff;text-decoration:none;'
        f'border-radius:6px">{escape(button)}</a></p>'
        f'<p style="margin:0 0 12px;font-size:13px;word-break:break-all">{escape(link)}</p>'
        f"{leave}</main></body></html>\n"
    )


def _domain(settings: Settings) -> str | None:
    return settings.newsletter.sender.rpartition("@")[2].rstrip(">") or None
