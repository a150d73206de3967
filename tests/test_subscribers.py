"""subscribers.csv: valid rows kept, bad rows reported with their line and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.errors import ConfigError
from feeds.subscribers import (
    clean_name,
    load_subscribers,
    normalize_email,
    parse_subscribers,
    resolve_categories,
)

ROOT = Path(__file__).resolve().parent.parent


def test_rows_give_address_name_and_categories() -> None:
    people = parse_subscribers(
        "email,name,categories\n"
        "ada@example.org,Ada Lovelace,CV CL\n"
        "alan@example.com,,\n"
        "grace@example.org,Grace,\"LG, stat.ML\"\n"
    )

    assert [(p.email, p.name, sorted(p.categories), p.line) for p in people.subscribers] == [
        ("ada@example.org", "Ada Lovelace", ["CL", "CV"], 2),
        ("alan@example.com", "", [], 3),
        ("grace@example.org", "Grace", ["LG", "stat.ML"], 4),
    ]
    assert people.problems == ()


def test_invalid_rows_are_reported_with_their_line_and_skipped() -> None:
    people = parse_subscribers(
        "email,name,categories\n"
        "ok@example.org,,\n"
        "not-an-address,,\n"
        ",No Address,\n"
        "two@@example.org,,\n"
        "spaces in@example.org,,\n"
        "nodot@localhost,,\n"
        "bad@example.org,,C$V\n"
        "also-ok@example.org,,\n"
    )

    assert [p.email for p in people.subscribers] == ["ok@example.org", "also-ok@example.org"]
    assert [(p.line, p.severity) for p in people.problems] == [
        (3, "error"), (4, "error"), (5, "error"), (6, "error"), (7, "error"), (8, "error")
    ]
    assert "not-an-address" in people.problems[0].message


def test_duplicates_collapse_to_the_first_row_whatever_the_case() -> None:
    people = parse_subscribers(
        "email,name,categories\nada@example.org,Ada,\nADA@Example.ORG,Other,CV\n"
    )

    (ada,) = people.subscribers
    assert (ada.name, ada.categories) == ("Ada", frozenset())
    (problem,) = people.problems
    assert (problem.line, problem.severity) == (3, "warning")
    assert "duplicate of line 2" in problem.message


def test_the_header_is_optional_and_comments_and_blank_lines_are_ignored() -> None:
    people = parse_subscribers("# the list\n\nada@example.org,Ada,CV\n\n#x@example.org\n")

    assert [(p.email, p.line) for p in people.subscribers] == [("ada@example.org", 3)]


def test_columns_follow_the_header_in_any_order() -> None:
    people = parse_subscribers("name,categories,email\nAda,CV,ada@example.org\n")

    (ada,) = people.subscribers
    assert (ada.email, ada.name, ada.categories) == ("ada@example.org", "Ada", frozenset({"CV"}))


def test_a_row_with_too_many_fields_is_an_error() -> None:
    people = parse_subscribers("email,name,categories\na@example.org,A,CV,extra\n")

    assert people.subscribers == ()
    assert people.problems[0].line == 2


def test_a_name_cannot_carry_a_line_break_into_a_header() -> None:
    people = parse_subscribers('email,name\nv@example.org,"Eve\r\nBcc: x@evil.example.com"\n')

    (eve,) = people.subscribers
    assert eve.name == "Eve Bcc: x@evil.example.com"
    assert "\n" not in eve.address and "\r" not in eve.address
    assert eve.address.endswith("<v@example.org>")


def test_a_name_with_specials_is_quoted_in_the_to_header() -> None:
    people = parse_subscribers('email,name\nz@example.org,"O\'Brien, Zoë ""Z"""\n')

    assert people.subscribers[0].address == '"O\'Brien, Zoë \\"Z\\"" <z@example.org>'


def test_an_internationalized_domain_is_sent_in_its_ascii_form() -> None:
    assert normalize_email("user@bücher.example") == "user@xn--bcher-kva.example"


def test_line_numbers_count_lines_inside_quoted_fields() -> None:
    people = parse_subscribers('email,name\na@example.org,"two\nlines"\nbad,\n')

    assert people.problems[0].line == 4


def test_a_bom_and_crlf_line_ends_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_bytes("\ufeffemail,name\r\nada@example.org,Ada\r\n".encode())

    people = load_subscribers(path)

    assert [p.email for p in people.subscribers] == ["ada@example.org"]


def test_a_missing_or_non_utf8_list_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_subscribers(tmp_path / "nope.csv")
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,name\na@example.org,Zo\xeb\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_subscribers(path)


def test_categories_are_spelt_as_the_digests_spell_them() -> None:
    present = frozenset({"CV", "stat.ML"})

    assert resolve_categories(frozenset({"cv", "STAT.ml", "RO"}), present) == frozenset(
        {"CV", "stat.ML", "RO"}
    )


def test_the_sample_list_in_the_repository_is_valid() -> None:
    people = load_subscribers(ROOT / "subscribers.csv")

    assert people.problems == ()
    assert people.subscribers
    assert all(p.email.endswith(("@example.org", "@example.com")) for p in people.subscribers)


@given(st.text())
def test_any_text_gives_subscribers_or_problems_never_an_exception(text: str) -> None:
    people = parse_subscribers(text)

    for person in people.subscribers:
        assert normalize_email(person.email) == person.email
        assert clean_name(person.name) == person.name
        assert "\n" not in person.address and "\r" not in person.address
