"""Text helpers: decoding, lines, Chinese/English splitting, terminal widths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.errors import ParseError, display_path
from feeds.textutil import (
    HEADER_UNSAFE,
    INVISIBLE,
    XML_ILLEGAL,
    cut,
    decode,
    display_width,
    fit,
    split_lines,
    split_zh_en,
    strip_tags,
    wrap,
)

ZH = "用多视角看自监督学习。从理论和经验两方面研究了自监督学习。"
EN = "As a subset of unsupervised representation learning, it adopts self-defined signals."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{ZH} {EN}", (ZH, EN)),
        (f"{ZH}{EN}", (ZH, EN)),
        (ZH, (ZH, None)),
        (EN, (None, EN)),
        ("模型在ImageNet上取得了83.2%的准确率(ViT-L)。 We find that it works well here.",
         ("模型在ImageNet上取得了83.2%的准确率(ViT-L)。", "We find that it works well here.")),
        ("提出一种基于ResNet", ("提出一种基于ResNet", None)),
        ("提出一种新方法 ResNet", ("提出一种新方法 ResNet", None)),
        ("We show the model’s “robustness” holds， even under shift, for all tasks we tried "
         "and across the many settings studied in this paper.", (None, None)),
        ("", (None, None)),
    ],
)
def test_chinese_summary_and_english_abstract_split_where_the_chinese_ends(
    text: str, expected: tuple[str | None, str | None]
) -> None:
    if expected == (None, None) and text:
        expected = (None, text)
    assert split_zh_en(text) == expected


def test_lines_are_numbered_as_an_editor_numbers_them() -> None:
    text = "\ufeffa\r\nb\rc\n\u00a0\nd\x0ce\u2028f"
    # Form feeds and U+2028 separate words, not lines: they become spaces.
    assert split_lines(text) == ["a", "b", "c", "", "d e f"]


def test_lines_lose_controls_and_direction_overrides() -> None:
    text = "a\tb\x00c\x1b[1m\x7f\x85d\x9b\u202ee\u2066f\ud800g\x1fh\n"
    assert split_lines(text) == ["a bc[1m defg h", ""]


def test_html_tags_go_and_their_text_stays_even_when_cut_off() -> None:
    assert strip_tags('x <a href="u">link</a> and <B>bold</B><br/>') == "x link and bold"
    assert strip_tags('cut <a href="ht') == "cut "
    assert strip_tags('twice <a href="ht<a href="ht') == "twice "
    assert strip_tags("math $a<b$, a <Generic> title, 1 < 2 > 0") == (
        "math $a<b$, a <Generic> title, 1 < 2 > 0"
    )


def test_utf8_with_bom_and_gb18030_decode_to_the_same_text() -> None:
    text = "1、[LG] 标题\n摘要：中文"
    assert decode(b"\xef\xbb\xbf" + text.encode(), path="x") == text
    assert decode(text.encode("gb18030"), path="x") == text


def test_mostly_control_characters_is_binary() -> None:
    with pytest.raises(ParseError, match="binary"):
        decode(b"\x01\x02\x03abc" * 10, path="x")


def test_wide_characters_take_two_columns() -> None:
    assert display_width("ab中文") == 6
    assert fit("中文标题很长", 7) == "中文标…"
    assert display_width(fit("中文标题很长", 7)) == 7
    assert fit("ab", 4) == "ab  "


@pytest.mark.parametrize(
    ("text", "width"),
    [
        ("", 0),
        ("abc", 3),
        ("中文", 4),
        ("ab中文", 6),
        ("，：（）", 8),  # full-width punctuation
        ("\u3000", 2),  # the ideographic space is wide too
        ("e\u0301", 1),  # a combining accent draws on the e
        ("中\u0301", 2),
        ("a\u200bb", 2),  # zero-width space
        ("Transformer图像分类", 19),
        ("ｆｕｌｌ", 8),  # full-width Latin
    ],
)
def test_display_width_counts_terminal_columns(text: str, width: int) -> None:
    assert display_width(text) == width


def test_fit_never_cuts_between_a_character_and_its_accent() -> None:
    assert fit("cafe\u0301s", 5) == "cafe\u0301s"
    assert display_width(fit("ab中\u0301文字", 5)) == 5


ABSTRACT = (
    "Deep Convolutional Neural Networks (CNNs) have long been the architecture of choice for "
    "computer vision tasks. Recently, Transformer-based architectures like Vision Transformer "
    "(ViT) have matched or even surpassed ResNets for image classification."
)


def test_wrap_breaks_english_between_words() -> None:
    lines = wrap(ABSTRACT, 40)
    assert all(len(line) <= 40 for line in lines)
    assert " ".join(lines) == ABSTRACT


def test_wrap_breaks_chinese_by_display_width_and_keeps_punctuation_attached() -> None:
    text = "对视觉模型各种不同的鲁棒性度量进行了广泛研究，并将研究结果与基线进行了比较。" * 3
    lines = wrap(text, 20)
    assert all(display_width(line) <= 20 for line in lines)
    assert "".join(lines) == text
    assert not any(line[0] in "，。" for line in lines)


def test_wrap_never_splits_a_url() -> None:
    url = "https://arxiv.org/abs/2208.05688?some=very-long-query-string-that-does-not-fit"
    lines = wrap(f"论文链接 {url} 见此", 30)
    assert url in lines


def test_wrap_keeps_accents_on_their_letters_and_counts_them_as_nothing() -> None:
    text = "re\u0301sume\u0301 " * 6 + "漢\u0301字" * 8
    lines = wrap(text.strip(), 20)
    assert all(display_width(line) <= 20 for line in lines)
    assert not any(line[0] == "\u0301" for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_wrap_indents_every_line() -> None:
    lines = wrap(ABSTRACT, 30, "    ")
    assert all(line.startswith("    ") and display_width(line) <= 30 for line in lines)


def test_xml_illegal_characters_are_a_subset_of_what_an_email_drops() -> None:
    every = "".join(chr(c) for c in range(0x3000)) + "\ud800\udfff\ufeff\ufffe\uffff"
    illegal = set(XML_ILLEGAL.findall(every))
    assert illegal <= set(INVISIBLE.findall(every))
    assert {"\x00", "\x0b", "\x0c", "\x7f", "\x85", "\ud800", "\ufffe"} <= illegal
    assert not illegal & {"\t", "\n", "\r"}
    assert {"\u200b", "\u202e", "\u2066", "\ufeff"} <= set(INVISIBLE.findall(every))
    # A header also loses every line break and tab (header injection).
    header = "".join(HEADER_UNSAFE.findall(every))
    assert set("\t\n\r\u2028\u2029\u202e") <= set(header)


def test_a_cut_ends_at_a_word_or_between_characters_and_is_marked() -> None:
    assert cut("short", 10) == "short"
    assert cut("one two three four five six", 20) == "one two three four…"
    assert cut("中文" * 10, 7) == "中文中文中文…"
    assert cut("x" * 50, 10) == "x" * 9 + "…"


def test_a_file_name_is_shown_as_is_unless_it_holds_something_unusual() -> None:
    assert display_path("digests/2021-03-30.txt") == "digests/2021-03-30.txt"
    assert display_path("digests/论文精选.txt") == "digests/论文精选.txt"
    assert display_path("x.txt\nerror: forged") == "'x.txt\\nerror: forged'"
    assert display_path("my digest.txt") == "'my digest.txt'"
    assert display_path("evil\u202etxt.exe") == "'evil\\u202etxt.exe'"
    assert display_path("\udcff.txt") == "'\\udcff.txt'"
    assert display_path("") == "''"


def test_a_tag_joined_by_removing_another_is_removed_too() -> None:
    from feeds.textutil import strip_tags

    found = strip_tags('<<a href="https://arxiv.org/abs/2101.00001">a href="ht')
    assert found == 'a href="ht'
    assert strip_tags("<<<b>b>b>x") == "b>b>x"
    assert "<" not in strip_tags("<<<<a href='x'>a href='y'>a href='z'>i>")
    assert strip_tags("1 < 2 and <Something> stays") == "1 < 2 and <Something> stays"


# Letters, Chinese, punctuation that must not start or end a line, marks, zero-width and odd
# spaces, and a word longer than any line.
WRAP_PIECES = [*"ab1 中文，。（）“”([.,\u0301\u200b\u3000\t\n", "xyz" * 9]


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.sampled_from(WRAP_PIECES), max_size=60).map("".join),
    width=st.integers(min_value=1, max_value=80),
)
def test_wrap_keeps_every_character_and_passes_the_width_only_with_one_unbreakable_piece(
    text: str, width: int
) -> None:
    lines = wrap(text, width)
    assert "".join("".join(lines).split()) == "".join(text.split())
    room = max(10, width)
    for line in lines:
        assert line == line.strip() and line
        assert display_width(line) <= room or " " not in line
