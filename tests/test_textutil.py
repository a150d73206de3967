"""Text helpers: decoding, lines, Chinese/English splitting, terminal widths."""

from __future__ import annotations

import pytest

from feeds.errors import ParseError
from feeds.textutil import decode, display_width, fit, split_lines, split_zh_en

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
    assert split_lines(text) == ["a", "b", "c", "", "d\x0ce\u2028f"]


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
