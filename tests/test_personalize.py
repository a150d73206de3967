"""One rendering per category set, one message per recipient, byte for byte what compose gives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import SAMPLE_DIGESTS, make_digest, make_item
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_fixtures import delivery_settings

from feeds.model import Digest
from feeds.parse import parse_file
from feeds.personalize import Job, Messages
from feeds.subscribers import MAX_NAME, parse_subscribers

NOW = datetime(2022, 8, 14, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def digest() -> Digest:
    parsed = parse_file(SAMPLE_DIGESTS / "2022-08-13.txt", tz=ZoneInfo("Asia/Shanghai"))
    return replace(parsed, items=parsed.items[:8])


def _words(value: object) -> str:
    return " ".join(str(value).split())


@pytest.mark.parametrize("template", [None, "https://digest.example.org/u?token={token}"])
def test_the_fast_path_builds_the_message_compose_would_for_awkward_names(
    tmp_path: Path, digest: Digest, template: str | None
) -> None:
    settings = delivery_settings(tmp_path, None, unsubscribe_url=template)
    people = parse_subscribers(
        "email,name,categories\n"
        'a@example.org,"Zoë ""Z"" O\'Brien, PhD",\n'
        "b@example.org,张三 李四 王五 赵六 钱七 孙八 周九 吴十 郑十一 冯十二 陈十三 褚十四,CV\n"
        f"c@example.org,{'x' * 150},\n"
        "d@example.org,,\n"
    )
    messages = Messages(settings, {digest.id: digest}, now=NOW)
    for person in people.subscribers:
        job = Job(digest.id, person, f"<{digest.id}.abc@example.org>")
        stencil = messages.stencil(job)
        assert stencil is not None and stencil.fast
        fast = message_from_bytes(messages.build(job) or b"", policy=policy.default)
        token = None
        if template:
            token = str(fast["List-Unsubscribe"]).rsplit("token=", 1)[1].rstrip(">")
        full = message_from_bytes(
            stencil._compose(person.address, job.message_id, token), policy=policy.default
        )
        assert [(k, _words(v)) for k, v in fast.items() if k != "Content-Type"] == [
            (k, _words(v)) for k, v in full.items() if k != "Content-Type"
        ]
        assert [p.get_content() for p in fast.iter_parts()] == [  # type: ignore[attr-defined]
            p.get_content() for p in full.iter_parts()  # type: ignore[attr-defined]
        ]


def test_a_category_set_is_rendered_once_however_it_is_spelt(
    tmp_path: Path, digest: Digest
) -> None:
    settings = delivery_settings(tmp_path, None)
    people = parse_subscribers("email,name,categories\na@example.org,,CV\nb@example.org,,cv\n")
    messages = Messages(settings, {digest.id: digest}, now=NOW)

    stencils = {id(messages.stencil(Job(digest.id, p, "<x@example.org>"))) for p in
                people.subscribers}

    assert len(stencils) == 1


def test_a_subscriber_whose_categories_are_not_in_the_digest_gets_nothing(
    tmp_path: Path, digest: Digest
) -> None:
    settings = delivery_settings(tmp_path, None)
    (robots,) = parse_subscribers("email,name,categories\nr@example.org,,RO\n").subscribers

    assert Messages(settings, {digest.id: digest}, now=NOW).build(
        Job(digest.id, robots, "<x@example.org>")
    ) is None


def test_category_sets_that_differ_only_in_codes_the_digest_lacks_share_one_rendering(
    tmp_path: Path, digest: Digest
) -> None:
    settings = delivery_settings(tmp_path, None)
    present = {i.category for i in digest.items if i.category}
    assert "AS" not in present and "CV" in present
    people = parse_subscribers(
        "email,name,categories\na@example.org,,AS CV\nb@example.org,,CV\nc@example.org,,CV XX\n"
    )
    messages = Messages(settings, {digest.id: digest}, now=NOW)

    stencils = [messages.stencil(Job(digest.id, p, "<x@example.org>")) for p in
                people.subscribers]

    assert stencils[0] is not None and stencils[0].fast
    assert all(s is stencils[0] for s in stencils)
    assert "CV" in str(message_from_bytes(
        messages.build(Job(digest.id, people.subscribers[0], "<x@example.org>")) or b"",
        policy=policy.default,
    )["Subject"])


_NAME_CHARS = "abcXYZ019 .,'\"=?!#&*+/^_`{|}~-<>@()[]:;\\é测"


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(alphabet=_NAME_CHARS, max_size=50),
    local=st.text(alphabet="abz09.+-_=?'~", min_size=1, max_size=40),
    domain=st.sampled_from(["example.org", "mail.example.co.uk", "x-y.example"]),
)
def test_a_to_header_written_directly_is_the_one_the_email_package_writes(
    name: str, local: str, domain: str
) -> None:
    from email.headerregistry import Address

    from feeds.message import POLICY, header_text
    from feeds.personalize import _folded

    try:
        value = str(Address(display_name=name, username=local, domain=domain))
    except ValueError:
        return
    for header, text in (("To", value), ("Message-ID", f"<{local}@{domain}>")):
        slow = POLICY.header_factory(header, header_text(text)).fold(policy=POLICY)
        assert _folded(header, text) == slow.encode("ascii")


def test_the_size_budget_holds_for_the_longest_address_and_name_a_list_may_hold(
    tmp_path: Path,
) -> None:
    # The budget is checked once per category set, with a placeholder for the personal
    # parts: the longest address (254 characters), a name of MAX_NAME Chinese characters and
    # their token, in both parts and in List-Unsubscribe, must still fit what it leaves.
    settings = delivery_settings(tmp_path, None, unsubscribe_url=None)
    settings = replace(settings, web=replace(settings.web, public_url="https://x.example/list"))
    items = [
        make_item(n, category="CV", summary_zh="很长的中文摘要。" * 60, abstract="word " * 400,
                  section="featured" if n < 10 else "more")
        for n in range(1, 80)
    ]
    big = make_digest(items, summary="摘要:" + "总结" * 100)
    address = "a" * 64 + "@" + ".".join(["b" * 61] * 3) + ".org"
    assert len(address) == 254
    people = parse_subscribers(f"email,name,categories\n{address},{'张' * MAX_NAME},\n")
    (person,) = people.subscribers
    messages = Messages(settings, {big.id: big}, now=NOW)
    data = messages.build(Job(big.id, person, f"<{big.id}.0123456789abcdef01234567@x.example>"))
    assert data is not None
    assert len(data) <= settings.newsletter.size_budget

