"""The digest parser: seeds parsed exactly, every variant read, nothing lost silently."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, REGENERATE, ROOT, SAMPLE_DIGESTS, SEEDS

from feeds.cli import cli
from feeds.errors import ParseError
from feeds.model import Digest, Item
from feeds.parse import format_table, normalize_title, parse_file, parse_text, weibo_post_time

SHANGHAI = ZoneInfo("Asia/Shanghai")
GOLDEN = ROOT / "tests" / "golden" / "parse"
VARIANTS = FIXTURES / "variants"


def seed(prefix: str) -> Path:
    return next(SEEDS.glob(f"{prefix}_*.txt"))


def parse(path: Path) -> Digest:
    return parse_file(path, tz=SHANGHAI)


def by_rank(digest: Digest, rank: int) -> Item:
    return next(item for item in digest.items if item.rank == rank)


def as_json(digest: Digest) -> str:
    """What `feeds parse --json` prints for this one digest."""
    return json.dumps({"digests": [digest.as_dict()]}, ensure_ascii=False, indent=2) + "\n"


# -- golden files: every field of every seed entry ------------------------------------------


@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.txt")), ids=lambda p: p.stem[:3])
def test_every_field_of_every_seed_entry_matches_its_golden_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    actual = as_json(parse(path.relative_to(ROOT)))
    golden = GOLDEN / f"{path.stem}.json"
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def test_parsing_twice_gives_identical_output() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        assert as_json(parse(path)) == as_json(parse(path))


# -- the seeds, by the figures the product promises -----------------------------------------


@pytest.mark.parametrize("prefix", ["000", "001", "002", "004"])
def test_daily_seeds_have_five_featured_and_four_further_papers(prefix: str) -> None:
    digest = parse(seed(prefix))
    assert digest.format == "daily"
    assert [item.section for item in digest.items] == ["featured"] * 5 + ["more"] * 4
    assert [item.rank for item in digest.items] == list(range(1, 10))
    assert digest.warnings == ()
    for item in digest.items:
        assert item.title and item.title_zh and item.authors and item.affiliations
        assert item.category in {"LG", "CV", "CL", "AS", "RO"}
        assert item.category_name is not None
        assert item.url is not None and item.links
    for item in digest.items[:5]:
        assert item.summary_zh and item.abstract


def test_weekly_seed_has_thirty_picks_six_of_them_starred() -> None:
    digest = parse(seed("003"))
    assert digest.format == "weekly"
    assert [item.rank for item in digest.items] == list(range(1, 31))
    assert {item.section for item in digest.items} == {"weekly"}
    assert [item.rank for item in digest.items if item.starred] == [1, 4, 5, 19, 20, 28]
    assert {item.category for item in digest.items} == {None}


def test_weekly_entries_26_and_29_are_one_paper_reported_once() -> None:
    digest = parse(seed("003"))
    assert by_rank(digest, 26).key == by_rank(digest, 29).key
    assert by_rank(digest, 26).guid == by_rank(digest, 29).guid
    assert len({item.key for item in digest.items}) == 29
    assert [(w.line, w.message) for w in digest.warnings] == [
        (69, "No 29 repeats No 26 (same paper); both kept, one key")
    ]


def test_weekly_entry_12_has_its_chinese_title_as_title() -> None:
    item = by_rank(parse(seed("003")), 12)
    assert item.title == item.title_zh == "具有周期激活函数的隐式神经网络表示"
    assert item.key.startswith("title:")


def test_weekly_commentary_becomes_notes_with_latex_and_source_links() -> None:
    digest = parse(seed("003"))
    first = by_rank(digest, 1)
    assert first.title == "Debiased Contrastive Learning"
    assert first.notes is not None
    assert first.notes.startswith("技术背景:\n\nMotivation & Framework\n\n很多研究者认为")
    assert "$$s ( f(x), f(x^+)) >> s ( f(x), f(x^-))$$" in first.notes
    assert [(link.kind, link.href) for link in first.links] == [
        ("other", "https://zhuanlan.zhihu.com/p/141141365")
    ]
    second = by_rank(digest, 2)
    assert second.key == "doi:10.1145/3386569.3392493"
    assert second.guid == "https://doi.org/10.1145/3386569.3392493"
    assert second.notes is not None and second.notes.endswith("似乎是它的优势")


def test_weekly_page_chrome_and_closing_source_belong_to_no_entry() -> None:
    digest = parse(seed("003"))
    assert digest.title == "2020.7.11周论文精选与精读"
    assert digest.credit == "爱可可老师"
    assert [link.href for link in digest.links] == ["https://www.yuque.com/fly51fly/gvl1ma/esp4c7"]
    last = by_rank(digest, 30)
    assert last.notes is None and last.links == ()
    assert by_rank(digest, 4).title == (
        "The Art of Natural Language Processing: Classical, Modern and Contemporary "
        "Approaches to Text Document Classification"
    )


def test_one_line_bodies_split_where_the_chinese_ends() -> None:
    item = by_rank(parse(seed("000")), 1)
    assert item.title_zh == "用多视角看自监督学习"
    assert item.summary_zh is not None and item.summary_zh.endswith("丢弃任务不相关信息。")
    assert item.abstract is not None
    assert item.abstract.startswith("As a subset of unsupervised representation learning")
    assert item.abstract.endswith("may not be clearly observed.")
    assert item.links[0].href == "https://weibo.com/1402400261/K8wjSoUDC"
    medselect = by_rank(parse(seed("000")), 4)
    assert medselect.title_zh == "MedSelect: 结合元学习与深度强化学习的选择性标记医学图像分类"
    assert medselect.affiliations == (
        "Stanford University",
        "Harvard T.H. Chan School of Public Health",
    )


def test_paragraph_bodies_split_into_summary_and_abstract() -> None:
    item = by_rank(parse(seed("002")), 1)
    assert item.title_zh == "BEIT:图像Transformer的BERT预训练"
    assert item.summary_zh is not None and "\n" not in item.summary_zh
    assert item.summary_zh.endswith("ViT-L(85.2%)。")
    assert item.abstract is not None and item.abstract.startswith("We introduce")
    assert item.abstract.endswith("Dosovitskiy et al., 2020).")


def test_2022_digest_reads_its_front_matter_and_cut_author_lists() -> None:
    digest = parse(seed("004"))
    assert digest.credit == "爱可可爱生活"
    assert digest.summary is not None
    assert digest.summary.startswith("大规模半监督视觉Transformer、通过权重插值修补开放词表模型")
    fourth = by_rank(digest, 4)
    assert fourth.authors == ("D Hendrycks", "S Basart", "M Mazeika", "A Zou", "J Kwon")
    assert fourth.authors_truncated
    assert [i.rank for i in digest.items if i.authors_truncated] == [4]
    assert fourth.key == "openreview:vruwp11pWnO"
    assert fourth.guid == "https://openreview.net/forum?id=vruwp11pWnO"
    first = by_rank(digest, 1)
    assert (first.key, first.guid) == ("arxiv:2208.05688", "https://arxiv.org/abs/2208.05688")
    everything = as_json(digest)
    assert "版权" not in everything and "\u00a0" not in everything


def test_a_summary_may_follow_its_label_on_the_next_line() -> None:
    text = "转自爱可可爱生活\n\n摘要：\n第一篇、第二篇\n\n1、[LG] A Title\nA Author\n[Lab]\n"
    digest = parse_text(text, source="x", tz=SHANGHAI)
    assert (digest.summary, digest.credit) == ("第一篇、第二篇", "爱可可爱生活")
    assert digest.title == "Daily digest"


def test_image_placeholders_leave_no_trace() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        text = as_json(parse(path))
        for name in ("image.png", ".png.jpg", "biden_fs.gif"):
            assert name not in text, (path.name, name)


# -- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("post", "expected"),
    [("K8wjSoUDC", "2021-03-30T04:48:05+08:00"), ("K3fnuEfZK", "2021-02-23T12:28:47+08:00")],
)
def test_weibo_post_ids_decode_to_their_publication_time(post: str, expected: str) -> None:
    moment = weibo_post_time(post)
    assert moment.tzinfo is not None and moment.utcoffset() is not None
    assert moment.astimezone(SHANGHAI).isoformat() == expected


@pytest.mark.parametrize("post", ["", "K8wj-oUDC", "ZZZZZZZZZ"])
def test_a_malformed_weibo_post_id_is_a_value_error(post: str) -> None:
    with pytest.raises(ValueError):
        weibo_post_time(post)


@pytest.mark.parametrize(
    ("prefix", "day", "source"),
    [
        ("000", "2021-03-30T04:48:05+08:00", "weibo"),
        ("001", "2021-03-10T05:09:21+08:00", "weibo"),
        ("002", "2021-06-17T05:04:13+08:00", "weibo"),
        ("003", "2020-07-11T00:00:00+08:00", "text"),
    ],
)
def test_seeds_under_their_original_names_are_dated(prefix: str, day: str, source: str) -> None:
    digest = parse(seed(prefix))
    assert digest.date is not None
    assert (digest.date.isoformat(), digest.date_source) == (day, source)
    assert {item.published for item in digest.items} == {digest.date}
    assert {item.digest_id for item in digest.items} == {digest.id}


def test_a_digest_nothing_dates_is_left_for_the_build() -> None:
    digest = parse(seed("004"))
    assert (digest.date, digest.date_source, digest.id) == (None, "unknown", "")
    assert {item.published for item in digest.items} == {None}


@pytest.mark.parametrize(
    ("name", "digest_id", "day", "source"),
    [
        ("2021-03-30.txt", "2021-03-30", "2021-03-30T04:48:05+08:00", "weibo"),
        ("2022-08-13.txt", "2022-08-13", "2022-08-13T00:00:00+08:00", "filename"),
        ("2020-07-11-weekly.txt", "2020-07-11-weekly", "2020-07-11T00:00:00+08:00", "filename"),
    ],
)
def test_sample_digests_are_dated_by_their_file_names(
    name: str, digest_id: str, day: str, source: str
) -> None:
    digest = parse(SAMPLE_DIGESTS / name)
    assert digest.date is not None
    assert (digest.id, digest.date.isoformat(), digest.date_source) == (digest_id, day, source)


def test_a_header_date_comes_first_and_weibo_gives_the_time_on_that_day() -> None:
    body = seed("000").read_text(encoding="utf-8")
    same_day = parse_text("date: 2021-03-30\n" + body, source="x", tz=SHANGHAI)
    assert same_day.date == datetime(2021, 3, 30, 4, 48, 5, tzinfo=SHANGHAI)
    assert same_day.date_source == "weibo"
    assert same_day.items[0].line == 4
    other_day = parse_text(
        "Date: 2021-04-02\n" + body, source="x", tz=SHANGHAI, filename="2021-03-30.txt"
    )
    assert other_day.date == datetime(2021, 4, 2, tzinfo=SHANGHAI)
    assert (other_day.date_source, other_day.id) == ("header", "2021-04-02")


@pytest.mark.parametrize("header", ["date: 0202-03-10", "date: 0001-01-01", "date: 2021-02-30"])
def test_a_header_date_no_digest_can_have_is_a_warning_and_the_digest_is_dated_another_way(
    header: str,
) -> None:
    text = f"{header}\n[LG] A Paper Title\nA Author\n"
    digest = parse_text(text, source="x", tz=SHANGHAI, filename="2021-03-30.txt")
    assert (digest.id, digest.date_source) == ("2021-03-30", "filename")
    assert [w.line for w in digest.warnings if w.message.startswith("invalid date")] == [1]
    assert len(digest.items) == 1


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("20210330.txt", "2021-03-30"),
        ("digest-2021-03-30-v2.txt", "2021-03-30"),
        ("120210330.txt", None),
        ("2021033012.txt", None),
        ("2021-13-45.txt", None),
        ("2021-0330.txt", None),
    ],
)
def test_file_name_dates_need_digit_boundaries_and_a_real_day(
    filename: str, expected: str | None
) -> None:
    text = "[LG] A Paper Title\nA Author\n"
    digest = parse_text(text, source="x", tz=SHANGHAI, filename=filename)
    assert digest.id == (expected or "")
    assert digest.date_source == ("filename" if expected else "unknown")


def test_the_time_zone_is_the_one_given() -> None:
    digest = parse_file(seed("000"), tz=ZoneInfo("UTC"))
    assert digest.date is not None and digest.date.isoformat() == "2021-03-29T20:48:05+00:00"
    assert digest.id == "2021-03-29"


# -- encodings and damaged files ------------------------------------------------------------


def test_crlf_and_a_bom_change_nothing(tmp_path: Path) -> None:
    original = seed("002")
    copy = tmp_path / original.name
    text = original.read_text(encoding="utf-8")
    copy.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert parse(copy).as_dict()["items"] == parse(original).as_dict()["items"]


def test_gb18030_files_read_like_utf8(tmp_path: Path) -> None:
    original = seed("004")
    copy = tmp_path / original.name
    copy.write_bytes(original.read_text(encoding="utf-8").encode("gb18030"))
    assert parse(copy).as_dict()["items"] == parse(original).as_dict()["items"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_files_with_a_byte_order_mark_read_like_utf8(tmp_path: Path, encoding: str) -> None:
    """What Notepad saves as "Unicode", and PowerShell 5 writes with `>`."""
    original = seed("004")
    copy = tmp_path / original.name
    text = original.read_text(encoding="utf-8")
    copy.write_bytes(("\ufeff" + text).encode(encoding) if encoding.endswith("be") else
                     text.encode(encoding))
    assert copy.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert parse(copy).as_dict()["items"] == parse(original).as_dict()["items"]


def test_a_utf8_file_cut_inside_a_character_stays_utf8_with_a_warning(tmp_path: Path) -> None:
    original = seed("002")
    data = original.read_bytes()
    cut = data.index("基于核依赖最大化".encode()) + 7  # inside 核
    copy = tmp_path / "cut.txt"
    copy.write_bytes(data[:cut])
    digest = parse(copy)
    assert [i.title for i in digest.items] == [i.title for i in parse(original).items][:3]
    assert digest.items[-1].summary_zh == "基于"
    assert digest.warnings[-1].message == "file ends inside a character (is it truncated?)"
    assert digest.warnings[-1].line == 31


def test_a_stray_byte_in_a_utf8_file_is_replaced_and_reported(tmp_path: Path) -> None:
    data = seed("000").read_bytes().replace(b"[CMU]", b"[CM\xffU]")
    copy = tmp_path / "stray.txt"
    copy.write_bytes(data)
    digest = parse(copy)
    assert digest.items[0].affiliations == ("CM\ufffdU",)
    assert [(w.line, w.message) for w in digest.warnings] == [
        (6, "1 byte(s) that are not UTF-8 replaced by U+FFFD")
    ]


def test_a_short_gb18030_file_is_still_gb18030(tmp_path: Path) -> None:
    copy = tmp_path / "short.txt"
    copy.write_bytes("No 1. 中文标题\n".encode("gb18030"))
    assert parse(copy).items[0].title == "中文标题"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b" \r\n\t\n", "empty file"),
        (b"\xef\xbb\xbf\n", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (bytes(range(1, 32)) * 20, "binary file"),
        (b"1\xe3\x80\x81[LG] Title\n\xff\xfe\x80\x80\n", "undecodable"),
        # A byte order mark, then half a UTF-16 unit: cut off.
        (b"\xff\xfe1\x00\x01\x30\x00", "undecodable UTF-16"),
    ],
)
def test_files_that_are_no_digest_raise_a_parse_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ParseError) as caught:
        parse(path)
    assert caught.value.path == str(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_missing_file_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="cannot read"):
        parse(tmp_path / "absent.txt")


def test_the_cli_reports_a_bad_file_in_one_line_and_parses_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\x01binary")
    result = CliRunner().invoke(cli, ["parse", str(bad), str(seed("000")), "--json"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}: binary file (NUL bytes) (expected a text digest)"]
    assert "Traceback" not in result.output
    payload = json.loads(result.stdout)
    assert [len(d["items"]) for d in payload["digests"]] == [9]


def test_the_cli_calls_a_file_without_entries_an_error_as_the_build_does(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("just some words\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["parse", str(words), str(seed("000"))])
    assert result.exit_code == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {words}:1: no entry recognized: not published"
    ]


def test_the_cli_prints_warnings_with_file_and_line() -> None:
    result = CliRunner().invoke(cli, ["parse", str(seed("003"))])
    assert result.exit_code == 0
    assert f"warning: {seed('003')}:69: No 29 repeats No 26" in result.stderr


def test_a_tag_in_the_legend_leaves_no_markup_in_a_category_name() -> None:
    legend = 'LG -<a href="ht 机器学习 CV - <b>计算机视觉</b>\n'
    digest = parse_text(legend + "[LG] A Paper\n[CV] Another Paper\n", source="x", tz=SHANGHAI)
    assert [item.category_name for item in digest.items] == [None, "计算机视觉"]


# -- variants seen in real copies -----------------------------------------------------------


def test_full_width_markers_and_extra_categories_are_read() -> None:
    digest = parse(VARIANTS / "fullwidth.txt")
    assert [item.category for item in digest.items] == ["LG", "IR", "stat.ML", "GR"]
    assert [item.category_name for item in digest.items] == ["机器学习", "信息检索", None, None]
    assert [item.starred for item in digest.items] == [True, False, True, False]
    first = digest.items[0]
    assert first.authors == ("A Lee", "B Kumar", "C Müller")
    assert first.affiliations == ("Lab One", "Lab Two")
    assert first.key == "arxiv:2101.00001"
    assert first.title_zh == "稀疏注意力就够了"
    assert digest.warnings == ()


def test_an_english_abstract_without_chinese_summary_is_kept_alone() -> None:
    item = parse(VARIANTS / "fullwidth.txt").items[1]
    assert (item.summary_zh, item.title_zh) == (None, None)
    assert item.abstract is not None and item.abstract.startswith("We study dense retrieval")


def test_a_link_around_the_title_is_the_papers_link() -> None:
    item = parse(VARIANTS / "fullwidth.txt").items[2]
    assert item.title == "Conformal Prediction Revisited"
    assert (item.key, item.url) == ("arxiv:2101.00003", "https://arxiv.org/abs/2101.00003")
    assert (item.summary_zh, item.abstract) == ("共形预测再探。回顾了共形预测方法。", None)


def test_damaged_entries_are_kept_or_reported_never_dropped_silently() -> None:
    digest = parse(VARIANTS / "broken.txt")
    assert [item.title for item in digest.items] == [
        "First Paper Title",
        "A Title Without Category",
        "Further Paper Without Link",
        "Truncated Last Paper",
    ]
    assert [(w.line, w.message) for w in digest.warnings] == [
        (8, "entry 2 has no title; skipped"),
        (12, "entry 3 has no [category]: 3、A Title Without Category"),
        (17, "entry 'Further Paper Without Link' has no link"),
        (21, "entry 'Truncated Last Paper' has no link (is the file truncated?)"),
    ]
    last = digest.items[-1]
    assert (last.title_zh, last.authors) == ("截断的论文", ("F Six", "G Sev"))


def test_weekly_variants_html_links_brackets_and_repeats() -> None:
    digest = parse(VARIANTS / "weekly_html.txt")
    assert digest.title == "2021年1月9日 周论文精选"
    assert (digest.id, digest.date_source) == ("2021-01-09-weekly", "text")
    assert [item.starred for item in digest.items] == [False, True, False, True, False, False]
    assert digest.items[1].key == "openreview:qVyeW-grC2k"
    assert digest.items[2].title == (
        "Learning Transferable Visual Models From Natural Language Supervision"
    )
    assert digest.items[4].title_zh == "神经辐射场综述"
    assert digest.items[0].key == digest.items[5].key == "arxiv:2012.07436"
    notes = digest.items[5].notes
    assert notes is not None and "$O(n^2)$" in notes and "1、这一行是点评里的编号" in notes
    assert [w.message for w in digest.warnings] == [
        "No 6 repeats No 1 (same paper); both kept, one key"
    ]


def test_weekly_title_forms_and_empty_titles() -> None:
    text = "No.1《Title One》\nNO 2：【Title Two】\nNo 3、*Bare Title\nNo 4. 《》\nNo 5.\n"
    digest = parse_text(text, source="x", tz=SHANGHAI)
    assert [(i.rank, i.title, i.starred) for i in digest.items] == [
        (1, "Title One", False),
        (2, "Title Two", False),
        (3, "Bare Title", True),
    ]
    assert [(w.line, w.message) for w in digest.warnings] == [
        (4, "No 4 has no title; skipped"),
        (5, "No 5 has no title; skipped"),
    ]


def test_missing_blank_lines_between_entries_change_nothing() -> None:
    text = seed("001").read_text(encoding="utf-8")
    squeezed = "\n".join(line for line in text.splitlines() if line.strip())
    digest = parse_text(squeezed, source="x", tz=SHANGHAI)
    original = parse(seed("001"))
    assert [i.title for i in digest.items] == [i.title for i in original.items]
    assert [i.abstract for i in digest.items] == [i.abstract for i in original.items]
    assert [i.summary_zh for i in digest.items] == [i.summary_zh for i in original.items]


def _line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


@pytest.mark.parametrize(
    "start",
    ["\u200b5、[LG]", "\ufeff5、[LG]", "\u200e5、[LG]", "５．[LG]", "5、\u2060[LG]"],
)
def test_an_entry_start_behind_invisible_characters_or_in_full_width_digits_is_read(
    start: str,
) -> None:
    text = seed("004").read_text(encoding="utf-8")
    original = parse(seed("004"))
    digest = parse_text(text.replace("5、[LG]", start), source="x", tz=SHANGHAI)
    assert [(i.rank, i.key, i.title) for i in digest.items] == [
        (i.rank, i.key, i.title) for i in original.items
    ]
    assert digest.warnings == original.warnings


@pytest.mark.parametrize(
    ("start", "damaged"),
    [
        ("5、[LG]", "📄5、[LG]"),
        ("5、[LG]", "【5】[LG]"),
        ("5、[LG]", "5) [LG]"),
        ("[LG] Quality", "[lg] Quality"),
        ("[LG] Quality", "🔥 [LG] Quality"),
    ],
)
def test_an_entry_start_the_parser_cannot_read_is_said_at_its_line(
    start: str, damaged: str
) -> None:
    text = seed("004").read_text(encoding="utf-8").replace(start, damaged)
    digest = parse_text(text, source="x", tz=SHANGHAI)
    # The paper stays text of the entry above (nothing invented), and the curator hears of it.
    assert len(digest.items) == len(parse(seed("004")).items) - 1
    ((line, message),) = [(w.line, w.message) for w in digest.warnings]
    assert line == _line_of(text, damaged)
    assert message.startswith("read as text of the entry above, but looks like an entry start: ")
    assert damaged in message


def test_an_entry_start_glued_to_the_line_before_is_said_at_that_line() -> None:
    text = seed("004").read_text(encoding="utf-8")
    glued = text.replace("forum?id=vruwp11pWnO\n\n\xa0\n\n5、", "forum?id=vruwp11pWnO 5、")
    assert glued != text
    digest = parse_text(glued, source="x", tz=SHANGHAI)
    assert [(w.line, w.message[:40]) for w in digest.warnings] == [
        (_line_of(glued, "vruwp11pWnO 5、"), "read as text of the entry above, but loo")
    ]


@pytest.mark.parametrize(
    "links",
    [
        "[PDF] https://arxiv.org/pdf/2208.05592\nhttps://arxiv.org/abs/2208.05592",
        "[Code] https://github.com/example/code\nhttps://arxiv.org/abs/2208.05592",
        "https://arxiv.org/abs/2208.05592\n【代码】https://github.com/example/code",
        "https://arxiv.org/abs/2208.05592\nCode: https://github.com/example/code",
    ],
)
def test_a_labelled_link_line_is_a_link_of_its_entry_not_an_entry_or_text(links: str) -> None:
    text = seed("004").read_text(encoding="utf-8")
    original = by_rank(parse(seed("004")), 2)
    digest = parse_text(
        text.replace("https://arxiv.org/abs/2208.05592", links), source="x", tz=SHANGHAI
    )
    assert len(digest.items) == len(parse(seed("004")).items)
    entry = by_rank(digest, 2)
    assert (entry.key, entry.title, entry.abstract, entry.summary_zh, entry.affiliations) == (
        original.key, original.title, original.abstract, original.summary_zh,
        original.affiliations,
    )
    assert len(entry.links) == 2
    assert digest.warnings == ()


def _with_a_line_before_the_link_of_entry_2(line: str) -> Digest:
    text = seed("004").read_text(encoding="utf-8")
    link = "https://arxiv.org/abs/2208.05592"
    return parse_text(text.replace(link, f"{line}\n{link}"), source="x", tz=SHANGHAI)


@pytest.mark.parametrize(
    "line",
    [
        "实验表明该方法优于所有基线：https://github.com/example/code",
        "Table 2: [CLS] pooling helps. In Figure 1, [CLS] tokens do too. 3、see above",
    ],
)
def test_text_before_a_link_or_around_a_bracket_stays_text_without_a_warning(line: str) -> None:
    digest = _with_a_line_before_the_link_of_entry_2(line)
    entry = by_rank(digest, 2)
    kept = line.split("https://")[0]
    assert kept in (entry.summary_zh or "") + (entry.abstract or "")
    assert digest.warnings == ()


def test_a_second_digest_pasted_below_the_first_is_said_at_its_legend() -> None:
    first = seed("000").read_text(encoding="utf-8").rstrip("\n")
    second = seed("001").read_text(encoding="utf-8")
    text = f"{first}\n\n{second}"
    digest = parse_text(text, source="x", tz=SHANGHAI)
    legend = second.splitlines()[0]
    line = first.count("\n") + 3
    assert text.splitlines()[line - 1] == legend
    said = "a digest's legend inside an entry: is a second digest pasted into this file? "
    assert (digest.warnings[0].line, digest.warnings[0].message[: len(said)]) == (line, said)


@pytest.mark.parametrize(
    "line",
    [
        "本文比较三类模型: CNN - 卷积神经网络, RNN - 循环神经网络, GNN - 图神经网络。",
        "[Mila - 魁北克人工智能研究所 & MSR - 微软研究院 & FAIR - 脸书AI研究院]",
        "Based on GPT-3, BERT-large and T5-base, 我们提出",
    ],
)
def test_a_line_that_glosses_terms_is_no_legend(line: str) -> None:
    assert _with_a_line_before_the_link_of_entry_2(line).warnings == ()


def test_a_zero_width_space_between_title_words_keeps_the_titles_key() -> None:
    text = "1、[LG] Self{}Supervised Learning Works\n\nA Author\n\n摘要。\n"
    spaced = parse_text(text.format(" "), source="x", tz=SHANGHAI).items[0]
    hidden = parse_text(text.format("\u200b"), source="x", tz=SHANGHAI).items[0]
    # A published guid never changes: the key a title gives is the one it always gave.
    assert (hidden.key, hidden.guid, hidden.title) == (spaced.key, spaced.guid, spaced.title)


@pytest.mark.parametrize(
    "heading",
    [
        "另外几篇值得关注的论文（4篇）:\n\n",
        "另外几篇值得关注的论文:",
        "另外几篇值得关注的论文 (4):",
    ],
)
def test_the_further_papers_heading_with_a_count_or_glued_to_its_first_entry_is_a_heading(
    heading: str,
) -> None:
    text = seed("004").read_text(encoding="utf-8")
    original = parse(seed("004"))
    changed = text.replace("另外几篇值得关注的论文:\n\n\xa0\n\n", heading)
    assert changed != text
    digest = parse_text(changed, source="x", tz=SHANGHAI)
    assert [(i.rank, i.section, i.title) for i in digest.items] == [
        (i.rank, i.section, i.title) for i in original.items
    ]
    assert [i.summary_zh for i in digest.items] == [i.summary_zh for i in original.items]
    assert digest.warnings == ()


def test_a_file_cut_in_the_middle_keeps_what_is_there() -> None:
    text = seed("002").read_text(encoding="utf-8")
    cut = text[: text.index("We focus on the problem") + 40]
    digest = parse_text(cut, source="x", tz=SHANGHAI)
    assert len(digest.items) == 4
    last = digest.items[-1]
    assert last.abstract is not None and last.abstract.startswith("We focus on the problem")
    assert [w.message for w in digest.warnings] == ["entry 4 has no link (is the file truncated?)"]


def test_text_without_entries_is_a_digest_with_a_warning() -> None:
    digest = parse_text("just some words\n", source="x", tz=SHANGHAI)
    assert digest.items == ()
    assert [w.message for w in digest.warnings] == ["no entries found"]


# -- clean text: nothing a reader cannot see, no markup ------------------------------------


def test_control_and_bidi_characters_never_reach_an_item() -> None:
    text = (
        "1、[LG] Deep\x07 Nets\x1b[31m \u202eevil\x85Title\tHere\n"
        "A Auth\x00or, B\x9b Author\n"
        "[MIT\x0c & CMU]\n"
        "中文摘要\x08。 We study\x01 nets with\ttabs and more words.\n"
        "https://arxiv.org/abs/2101.00001\x7f\n"
    )
    item = parse_text(text, source="x", tz=SHANGHAI).items[0]
    assert item.title == "Deep Nets[31m evil Title Here"
    assert item.authors == ("A Author", "B Author")
    assert item.affiliations == ("MIT", "CMU")
    assert item.abstract == "We study nets with tabs and more words."
    assert item.url == "https://arxiv.org/abs/2101.00001"


def test_a_file_cut_inside_a_title_link_gives_a_warning_not_a_title_of_markup() -> None:
    text = "1、[LG] First Paper\nA Author\nhttps://arxiv.org/abs/2101.00001\n\n2、[LG] <a href=\"ht"
    digest = parse_text(text, source="x", tz=SHANGHAI)
    assert [item.title for item in digest.items] == ["First Paper"]
    assert (5, "entry 2 has no title (only cut-off HTML markup); skipped") in [
        (w.line, w.message) for w in digest.warnings
    ]


def test_html_tags_in_an_entry_body_become_links_and_plain_text() -> None:
    text = (
        "No 1. 《A Pick》\n"
        "Read <b>this</b> at <a href=\"https://arxiv.org/abs/2101.00009\">the paper</a>, "
        "where $a<b$ holds.<br/>\n"
        "More <i>notes</i> and a cut <a href=\"ht\n"
    )
    item = parse_text(text, source="x", tz=SHANGHAI).items[0]
    assert item.notes == (
        "Read this at the paper, where $a<b$ holds.\nMore notes and a cut"
    )
    assert item.key == "arxiv:2101.00009"


def test_oversized_fields_are_cut_at_a_word_with_a_warning_each() -> None:
    title = "Word " * 400  # 2,000 characters
    abstract = "We study " + "long words " * 3_000
    summary = "中" * 30_000 + "。"
    text = (
        f"1、[LG] {title}\nA Author\n[Lab]\n{summary}\n\n{abstract}\n"
        "https://arxiv.org/abs/2101.00001\n"
    )
    digest = parse_text(text, source="x", tz=SHANGHAI)
    item = digest.items[0]
    assert len(item.title) <= 1_000 and item.title.endswith("Word…")
    assert item.abstract is not None and len(item.abstract) <= 20_000
    assert item.abstract.endswith("words…")
    assert item.summary_zh == "中" * 19_999 + "…"
    assert [(w.line, w.message) for w in digest.warnings] == [
        (1, "entry 1: title cut from 1,999 to 1,000 characters"),
        (1, "entry 1: title_zh cut from 30,000 to 1,000 characters"),
        (1, "entry 1: summary_zh cut from 30,001 to 20,000 characters"),
        (1, f"entry 1: abstract cut from {len(abstract.strip()):,} to 20,000 characters"),
    ]


# -- scale: any number of entries, each read once -------------------------------------------


def numbered_digest(entries: int, *, weekly: bool = False) -> str:
    """A daily digest (or weekly list) of `entries` distinct papers numbered from 1."""
    lines = ["LG - 机器学习 CV - 计算机视觉 (*表示值得重点关注)", ""]
    for n in range(1, entries + 1):
        if weekly:
            lines += [f"No {n}. 《Weekly Title {n}》", f"Commentary on pick {n}.", ""]
            continue
        lines += [
            f"{n}、[{'LG' if n % 2 else 'CV'}] Title {n}",
            "A Author, B Author",
            "[MIT & CMU]",
            f"论文{n}的中文摘要。提出一种方法。 We study problem {n} and propose a method.",
            f"https://arxiv.org/abs/2101.{n:05d}",
            "",
        ]
    return "\n".join(lines)


def test_a_digest_of_two_thousand_entries_gives_two_thousand_items_ranked_in_order() -> None:
    digest = parse_text(numbered_digest(2000), source="x", tz=SHANGHAI)
    assert [item.rank for item in digest.items] == list(range(1, 2001))
    assert digest.items[1499].title == "Title 1500"
    assert digest.items[1499].key == "arxiv:2101.01500"
    assert digest.warnings == ()


def test_a_weekly_list_of_two_thousand_picks_gives_two_thousand_items() -> None:
    digest = parse_text(numbered_digest(2000, weekly=True), source="x", tz=SHANGHAI)
    assert [item.rank for item in digest.items] == list(range(1, 2001))
    assert digest.items[-1].notes == "Commentary on pick 2000."


def test_twenty_thousand_entries_are_each_read_once() -> None:
    # Each entry's body is its own five lines: nothing piles up under one entry, which is what
    # made large files slow (benchmarks/bench_parse_scale.py times 10k and 100k).
    digest = parse_text(numbered_digest(20_000), source="x", tz=SHANGHAI)
    assert len(digest.items) == 20_000
    assert digest.items[-1].rank == 20_000
    assert digest.items[-1].links[0].href == "https://arxiv.org/abs/2101.20000"
    assert all(len(item.links) == 1 for item in digest.items)


def test_a_number_too_long_for_an_entry_is_not_an_entry() -> None:
    text = "1、[LG] First\nA Author\nhttps://arxiv.org/abs/2101.00001\n" + "9" * 5000 + "、[LG] X\n"
    digest = parse_text(text, source="x", tz=SHANGHAI)
    assert [item.rank for item in digest.items] == [1]


# -- helpers other stages use ---------------------------------------------------------------


def test_normalized_titles_ignore_case_punctuation_and_width() -> None:
    assert normalize_title("DeeBERT: Dynamic  Early-Exiting!") == "deebert dynamic early exiting"
    wide = "ＤｅｅＢＥＲＴ：Dynamic Early Exiting"
    assert normalize_title(wide) == "deebert dynamic early exiting"
    chinese = "具有周期激活函数的隐式神经网络表示"
    assert normalize_title(chinese + "。") == chinese


def test_the_table_shows_rank_category_star_title_authors_link_and_date() -> None:
    table = format_table(parse(seed("003")))
    lines = table.splitlines()
    assert lines[0].startswith(f"{seed('003')}: weekly digest 2020-07-11-weekly")
    assert lines[1].split()[:3] == ["#", "cat", "*"]
    assert len(lines) == 2 + 30
    assert lines[2].split()[:4] == ["1", "-", "*", "Debiased"]
    assert lines[2].split()[-2:] == ["https://zhuanlan.zhihu.com/p/141141365", "2020-07-11"]


def test_the_table_quotes_a_file_name_with_a_line_break(tmp_path: Path) -> None:
    path = tmp_path / "2021-03-30.txt\nerror: forged"
    path.write_bytes(seed("000").read_bytes())
    table = format_table(parse(path))
    assert table.splitlines()[0].startswith(repr(str(path)) + ": daily digest 2021-03-30")
    assert not any(line.startswith("error:") for line in table.splitlines())


def imported_modules(name: str) -> set[str]:
    """The modules of the package that module `name` imports, anywhere in it."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "feeds":
            found.update(f"feeds.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("feeds."):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("feeds."))
    return found


def test_the_parser_names_every_module_a_parse_depends_on() -> None:
    # What a parse cache is keyed by: a module left out would leave stale parses cached.
    from feeds.parse import MODULES

    seen: set[str] = set()
    todo = ["feeds.parse"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported_modules(name) - {"feeds.errors", "feeds.collector"})
    assert seen == set(MODULES)
