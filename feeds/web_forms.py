"""What a visitor may send the subscription endpoint, and how it is read: the size limits, the
form encodings, an email address and a choice of categories.

Apart from feeds.web (routes, the endpoint's state, error pages) because none of this needs the
endpoint: each function reads the request or a form and returns a clean value, or raises a
`Refusal` carrying the one sentence the visitor then sees.
"""

from __future__ import annotations

from flask import request
from werkzeug.datastructures import MultiDict

from feeds.subscribers import normalize_email

# Every form of the endpoint fits in a few hundred bytes; nothing larger is read.
MAX_REQUEST = 16 * 1024
MAX_TOKEN = 512
MAX_EMAIL = 254
MAX_CATEGORIES = 64
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Refusal(Exception):
    """A request the endpoint will not act on, with the one sentence the visitor sees."""

    def __init__(self, sentence: str, status: int = 400) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.status = status


def check_form_type() -> None:
    """A POST carries a form (RFC 8058 allows both encodings), or nothing at all."""
    if request.mimetype not in FORM_TYPES and (request.mimetype or request.content_length):
        raise Refusal("This page accepts a web form only.")


def read_form() -> MultiDict[str, str]:
    check_form_type()
    return request.form


def read_email(form: MultiDict[str, str]) -> str:
    raw = form.get("email", "").strip()
    if not raw:
        raise Refusal("Please enter your email address.")
    checked = normalize_email(raw) if len(raw) <= MAX_EMAIL and raw.isprintable() else None
    if not isinstance(checked, str):
        raise Refusal("That is not an email address we can send to.")
    return checked


def read_categories(form: MultiDict[str, str], offered: dict[str, str]) -> frozenset[str]:
    """The category codes ticked, spelled as offered; none ticked means every category."""
    by_fold = {code.casefold(): code for code in offered}
    codes = form.getlist("categories")
    if len(codes) > MAX_CATEGORIES:
        raise Refusal("Too many categories were chosen.")
    chosen = set()
    for code in codes:
        known = by_fold.get(code.strip().casefold())
        if known is None:
            shown = code[:40] if code.isprintable() else "that"
            raise Refusal(f"We have no category called {shown!r}.")
        chosen.add(known)
    return frozenset(chosen)
