"""The newsletter as an email message: MIME structure, headers, encodings, determinism."""

from __future__ import annotations

import ast
import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds import message
from feeds.config import NewsletterSettings, Settings
from feeds.errors import ConfigError
from feeds.message import Newsletter

SHANGHAI = timezone(timedelta(hours=8))
SETTINGS = Settings()
TEXT = "ML Paper Digest · Daily digest 2021-03-30\n\n1.  [CV] 理解Transformer图像分类的鲁棒性\n"
HTML = "<!DOCTYPE html>\n<html><body><p>理解Transformer图像分类的鲁棒性</p></body></html>"


def make_letter(**fields: object) -> Newsletter:
    values: dict[str, object] = {
        "digest_id": "2021-03-30",
        "subject": "ML Paper Digest 2021-03-30 · 9 papers",
        "html": HTML,
        "text": TEXT,
        "count": 9,
        "categories": None,
        "date": datetime(2021, 3, 30, 4, 48, 5, tzinfo=SHANGHAI),
        "title": "ML Paper Digest · Daily digest 2021-03-30",
    }
    values.update(fields)
    return Newsletter(**values)  # type: ignore[arg-type]


def round_trip(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(msg), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_message_is_multipart_alternative_with_text_then_html_in_utf8() -> None:
    parsed = round_trip(message.compose(make_letter(), SETTINGS))
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == TEXT
    assert parts[1].get_content().replace("\r\n", "\n").rstrip("\n") == HTML
    assert parsed["MIME-Version"] == "1.0"


def test_the_subject_is_encoded_per_rfc_2047_and_reads_back_with_date_and_count() -> None:
    raw = message.as_bytes(message.compose(make_letter(), SETTINGS))
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject_line
    parsed = round_trip(message.compose(make_letter(), SETTINGS))
    assert parsed["Subject"] == "ML Paper Digest 2021-03-30 · 9 papers"


@pytest.mark.parametrize("title", ["ML 论文日报", "Zoë's Digest", "论文, (日报): 精选"])
def test_a_list_id_phrase_that_is_not_ascii_is_encoded_words_never_a_quoted_string(
    title: str,
) -> None:
    settings = replace(SETTINGS, site=replace(SETTINGS.site, title=title))
    raw = message.as_bytes(message.compose(make_letter(), settings))
    header = raw.split(b"\r\nList-Id: ", 1)[1].split(b"\r\n")[0]
    assert b'"' not in header and header.endswith(b" <ml-digest.example.org>")
    parsed = round_trip(message.compose(make_letter(), settings))
    assert parsed["List-Id"].endswith(" <ml-digest.example.org>")
    assert not parsed["List-Id"].defects


def test_the_archive_copy_has_date_message_id_and_list_headers() -> None:
    parsed = round_trip(message.compose(make_letter(), SETTINGS))
    assert parsedate_to_datetime(parsed["Date"]) == datetime(2021, 3, 30, 4, 48, 5, tzinfo=SHANGHAI)
    assert parsed["Message-ID"] == "<2021-03-30@ml-digest.example.org>"
    assert parsed["From"] == "ML Paper Digest <digest@example.org>"
    assert parsed["List-Id"] == "ML Paper Digest <ml-digest.example.org>"
    assert parsed["List-Unsubscribe"] == "<mailto:unsubscribe@example.org?subject=unsubscribe>"
    assert parsed["List-Unsubscribe-Post"] is None
    assert parsed["To"] is None
    assert parsed["Reply-To"] is None


def test_a_category_subset_has_its_own_message_id() -> None:
    letter = make_letter(categories=frozenset({"CV", "CL"}))
    assert round_trip(message.compose(letter, SETTINGS))["Message-ID"] == (
        "<2021-03-30.CL-CV@ml-digest.example.org>"
    )


def test_an_https_unsubscribe_link_adds_one_click_unsubscribe() -> None:
    url = "https://digest.example.org/unsubscribe?token=abc"
    parsed = round_trip(message.compose(make_letter(), SETTINGS, unsubscribe_url=url))
    assert parsed["List-Unsubscribe"] == (
        f"<mailto:unsubscribe@example.org?subject=unsubscribe>, <{url}>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_long_personal_unsubscribe_link_is_written_raw_on_a_line_of_its_own() -> None:
    # A signed per-recipient token makes the link longer than a folded header line; the email
    # package would turn it into RFC 2047 encoded words, which no mail client follows.
    url = "https://digest.example.org/unsubscribe?token=" + "aB3-_" * 30
    raw = message.as_bytes(message.compose(make_letter(), SETTINGS, unsubscribe_url=url))
    head = raw.partition(b"\r\n\r\n")[0].decode("ascii")

    assert f"\r\n <{url}>\r\n" in head
    assert "=?" not in head.split("List-Unsubscribe:", 1)[1].split("\r\nList-Unsubscribe-Post")[0]
    assert round_trip(message.compose(make_letter(), SETTINGS, unsubscribe_url=url))[
        "List-Unsubscribe"
    ] == f"<mailto:unsubscribe@example.org?subject=unsubscribe>, <{url}>"


def test_a_plain_http_unsubscribe_link_is_not_offered_for_one_click() -> None:
    msg = message.compose(make_letter(), SETTINGS, unsubscribe_url="http://insecure.example/u")
    assert round_trip(msg)["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize(
    "url",
    [
        "https://a b/unsubscribe",
        "javascript:alert(1)",
        "https:///unsubscribe",
        "https://example.org/u?a=1,2",
        "https://example.org/u\r\nBcc: victim@example.org",
        "https://evil.example\\@example.org/unsubscribe",
    ],
)
def test_an_unsafe_unsubscribe_link_is_left_out_of_the_list_headers(url: str) -> None:
    parsed = round_trip(message.compose(make_letter(), SETTINGS, unsubscribe_url=url))
    assert parsed["List-Unsubscribe"] == "<mailto:unsubscribe@example.org?subject=unsubscribe>"
    assert parsed["List-Unsubscribe-Post"] is None
    assert parsed["Bcc"] is None


def test_an_international_unsubscribe_link_is_carried_as_a_uri() -> None:
    url = "https://例子.测试/退订?token=abc"
    parsed = round_trip(message.compose(make_letter(), SETTINGS, unsubscribe_url=url))
    assert parsed["List-Unsubscribe"] == (
        "<mailto:unsubscribe@example.org?subject=unsubscribe>, "
        "<https://xn--fsqu00a.xn--0zwm56d/%E9%80%80%E8%AE%A2?token=abc>"
    )


def test_a_subject_with_a_lone_surrogate_still_makes_a_message() -> None:
    parsed = round_trip(message.compose(make_letter(subject="Digest \ud800 today"), SETTINGS))
    assert parsed["Subject"] == "Digest today"


def test_the_message_module_imports_nothing_of_the_renderer() -> None:
    # The renderer composes messages to measure them: imports go renderer -> message only.
    tree = ast.parse(Path(message.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not imported & {"feeds.newsletter", "feeds.issue", "feeds.personalize"}


def test_delivery_sets_recipient_message_id_and_date() -> None:
    when = datetime(2021, 3, 30, 7, 0, tzinfo=UTC)
    msg = message.compose(
        make_letter(),
        SETTINGS,
        to="Ada Lovelace <ada@example.org>",
        message_id="<abc.123@mail.example.org>",
        date=when,
    )
    parsed = round_trip(msg)
    assert parsed["To"] == "Ada Lovelace <ada@example.org>"
    assert parsed["Message-ID"] == "<abc.123@mail.example.org>"
    assert parsedate_to_datetime(parsed["Date"]) == when


def test_reply_to_appears_only_when_configured() -> None:
    configured = replace(SETTINGS, newsletter=NewsletterSettings(reply_to="editor@example.org"))
    assert round_trip(message.compose(make_letter(), configured))["Reply-To"] == (
        "editor@example.org"
    )


def test_identical_input_gives_byte_identical_messages_with_a_content_derived_boundary() -> None:
    first = message.as_bytes(message.compose(make_letter(), SETTINGS))
    second = message.as_bytes(message.compose(make_letter(), SETTINGS))
    assert first == second
    other = message.as_bytes(message.compose(make_letter(text=TEXT + "more\n"), SETTINGS))
    boundary = message.compose(make_letter(), SETTINGS).get_boundary()
    assert boundary and boundary.encode() in first
    assert boundary.encode() not in other


def test_as_bytes_is_seven_bit_with_crlf_and_short_lines() -> None:
    raw = message.as_bytes(message.compose(make_letter(html=HTML * 50), SETTINGS))
    raw.decode("ascii")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_base64_is_the_smaller_encoding_for_chinese_text() -> None:
    chinese = (
        "对视觉Transformer模型各种不同的鲁棒性度量进行了广泛研究,并将研究结果与基线比较。\n" * 200
    )

    def size(cte: str) -> int:
        msg = EmailMessage(policy=message.POLICY)
        msg.set_content(chinese, charset="utf-8", cte=cte)
        return len(message.as_bytes(msg))

    assert size("base64") < size("quoted-printable") * 0.6
    assert size("base64") < len(chinese.encode("utf-8")) * 1.4


@settings(max_examples=150, deadline=None)
@given(st.text(), st.text())
def test_no_text_in_subject_or_message_id_can_break_or_inject_a_header(
    subject: str, message_id: str
) -> None:
    msg = message.compose(make_letter(subject=subject), SETTINGS, message_id=message_id)
    raw = message.as_bytes(msg)
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0] for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")
    ]
    assert names == [
        b"Subject",
        b"From",
        b"Date",
        b"Message-ID",
        b"List-Id",
        b"List-Unsubscribe",
        b"MIME-Version",
        b"Content-Type",
    ]
    parsed = round_trip(msg)
    assert parsed["Message-ID"].startswith("<") and "@" in parsed["Message-ID"]


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_a_recipient_is_a_clean_address_or_a_clear_error(to: str) -> None:
    try:
        msg = message.compose(make_letter(), SETTINGS, to=to)
    except ConfigError as exc:
        assert "not an email address" in str(exc)
        return
    raw = message.as_bytes(msg)
    assert round_trip(msg)["To"].addresses[0].addr_spec.count("@") == 1
    assert raw.count(b"\r\nTo:") == 1


def test_header_injection_through_the_recipient_is_flattened() -> None:
    msg = message.compose(
        make_letter(), SETTINGS, to="Eve <eve@example.org>\r\nBcc: all@example.org"
    )
    parsed = round_trip(msg)
    assert parsed["Bcc"] is None
    assert parsed["To"].addresses[0].addr_spec == "eve@example.org"


def test_a_sender_that_is_not_an_address_is_a_config_error() -> None:
    broken = replace(SETTINGS, newsletter=NewsletterSettings(sender="nobody"))
    with pytest.raises(ConfigError):
        message.compose(make_letter(), broken)


def test_without_any_unsubscribe_address_there_is_no_list_unsubscribe_header() -> None:
    bare = replace(SETTINGS, newsletter=NewsletterSettings(unsubscribe_mailto=""))
    assert round_trip(message.compose(make_letter(), bare))["List-Unsubscribe"] is None
