"""Unsubscribe tokens: signed per recipient and list, verifiable without a database."""

from __future__ import annotations

import pytest

from feeds.errors import ConfigError
from feeds.unsubscribe import (
    PLACEHOLDER,
    check_template,
    make_token,
    personal_url,
    verify_token,
)

LIST = "ml-digest.example.org"


def test_a_token_names_its_recipient_and_only_verifies_with_the_secret_and_list() -> None:
    token = make_token("Ada@Example.org", list_id=LIST, secret="s3cret")

    assert verify_token(token, list_id=LIST, secret="s3cret") == "ada@example.org"
    assert verify_token(token, list_id=LIST, secret="other") is None
    assert verify_token(token, list_id="other.example.org", secret="s3cret") is None


def test_an_altered_token_is_refused() -> None:
    token = make_token("ada@example.org", list_id=LIST, secret="s3cret")
    head, mac = token.split(".")
    forged = make_token("eve@example.org", list_id=LIST, secret="guess").split(".")[0]

    assert verify_token(f"{forged}.{mac}", list_id=LIST, secret="s3cret") is None
    assert verify_token(f"{head}.{mac[:-2]}AA", list_id=LIST, secret="s3cret") is None
    for junk in ("", ".", "no-dot", "%%%.%%%", "a.b.c"):
        assert verify_token(junk, list_id=LIST, secret="s3cret") is None


def test_tokens_and_the_placeholder_are_url_safe() -> None:
    token = make_token("o'brien+tag@example.org", list_id=LIST, secret="s3cret")
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")

    assert set(token) <= safe and set(PLACEHOLDER) <= safe
    assert personal_url("https://x.example.org/u?token={token}", token).endswith(token)


@pytest.mark.parametrize(
    ("template", "secret", "message"),
    [
        ("https://x.example.org/unsubscribe", "s", "has no {token} field"),
        ("http://x.example.org/u?t={token}", "s", "must be an https:// URL"),
        ("https://x.example.org/u?t={token}", None, "FEEDS_UNSUBSCRIBE_SECRET is not"),
    ],
)
def test_a_template_that_cannot_be_filled_or_signed_is_refused(
    template: str, secret: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_template(template, secret, where="feeds.toml")


def test_no_template_needs_no_secret() -> None:
    check_template(None, None, where=None)
