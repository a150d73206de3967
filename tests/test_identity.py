"""Paper identity and dates: link kinds, keys, guids, post times, dates in names and text."""

from __future__ import annotations

from datetime import date

import pytest

from feeds.identity import (
    classify,
    date_in_filename,
    date_in_text,
    find_urls,
    identify,
    weibo_mid,
)


@pytest.mark.parametrize(
    ("url", "kind", "ident"),
    [
        ("https://arxiv.org/abs/2208.05688", "arxiv", "2208.05688"),
        ("http://arxiv.org/abs/2208.05688v3", "arxiv", "2208.05688"),
        ("https://arxiv.org/pdf/2101.00003.pdf", "arxiv", "2101.00003"),
        ("https://arxiv.org/abs/cs/0112017", "arxiv", "cs/0112017"),
        ("https://openreview.net/forum?id=E4EE_ohFGz", "openreview", "E4EE_ohFGz"),
        ("https://openreview.net/pdf?id=vruwp11pWnO", "openreview", "vruwp11pWnO"),
        ("https://doi.org/10.1145/3386569.3392493", "doi", "10.1145/3386569.3392493"),
        ("https://weibo.com/1402400261/K8wjSoUDC", "weibo", "K8wjSoUDC"),
        ("https://m.weibo.cn/status/K8wjSoUDC", "weibo", "K8wjSoUDC"),
        # Shared from the app or an arXiv listing: the query does not hide the id.
        ("https://m.weibo.cn/status/K8wjSoUDC?sourceType=weixin", "weibo", "K8wjSoUDC"),
        ("https://arxiv.org/abs/2208.05592?context=cs.LG", "arxiv", "2208.05592"),
        ("https://arxiv.org/abs/2208.05592v2#S3", "arxiv", "2208.05592"),
        ("https://zhuanlan.zhihu.com/p/141141365", "other", None),
        ("https://arxiv.org/list/cs.LG/recent", "other", None),
    ],
)
def test_links_are_classified_with_the_id_they_carry(
    url: str, kind: str, ident: str | None
) -> None:
    ref = classify(url)
    assert (ref.link.kind, ref.link.href, ref.ident) == (kind, url, ident)


def test_the_strongest_link_gives_key_and_guid() -> None:
    links = [classify(u) for u in (
        "https://weibo.com/1402400261/K8wjSoUDC",
        "https://doi.org/10.1145/ABC.1",
        "https://arxiv.org/abs/2208.05688v2",
    )]
    assert identify(links, "Any") == ("arxiv:2208.05688", "https://arxiv.org/abs/2208.05688")
    assert identify(links[:2], "Any") == ("doi:10.1145/abc.1", "https://doi.org/10.1145/abc.1")
    assert identify(links[:1], "Any") == (
        "weibo:K8wjSoUDC",
        "https://weibo.com/1402400261/K8wjSoUDC",
    )


def test_without_a_paper_link_the_key_is_a_hash_of_the_normalized_title() -> None:
    key, guid = identify([classify("https://example.org/post")], "DeeBERT: Dynamic Early Exiting")
    assert key == identify([], "deebert -- dynamic early exiting!")[0]
    assert key.startswith("title:") and len(key) == len("title:") + 16
    assert guid == "tag:digest-feeds,2020:" + key


def test_urls_stop_at_sentence_punctuation_and_chinese_text() -> None:
    text = "见https://x.org/p/1中文，和 https://doi.org/10.1/abc. (https://a.b/c_(d)) 来源：https://e.org/42"
    assert [url for _, _, url in find_urls(text)] == [
        "https://x.org/p/1",
        "https://doi.org/10.1/abc",
        "https://a.b/c_(d)",
        "https://e.org/42",
    ]


def test_weibo_mids_grow_with_time() -> None:
    assert weibo_mid("K8wjSoUDC") == 4620308645937592
    assert weibo_mid("K3fnuEfZK") < weibo_mid("K8wjSoUDC")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020.7.11周论文精选与精读", date(2020, 7, 11)),
        ("2021年1月9日 周论文精选", date(2021, 1, 9)),
        ("爱可可 2021-03-30 推介", date(2021, 3, 30)),
        ("2021.2.30周论文", None),
        ("版本 12021.3.3", None),
    ],
)
def test_dates_in_text(text: str, expected: date | None) -> None:
    assert date_in_text(text) == expected


def test_a_file_name_date_is_the_first_valid_one() -> None:
    assert date_in_filename("20211345-2021-03-30.txt") == date(2021, 3, 30)
    assert date_in_filename("000_e4047dbd94f74507.txt") is None
