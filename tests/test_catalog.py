"""The feed catalog: slugs, the list of feeds, and which papers each feed holds."""

from __future__ import annotations

import pytest
from conftest import make_context, make_paper

from feeds.catalog import FeedInfo, category_slug, feed_list, select
from feeds.config import Settings, SiteSettings


@pytest.mark.parametrize(
    ("code", "slug"),
    [
        ("LG", "lg"),
        ("CV", "cv"),
        ("stat.ML", "stat-ml"),
        ("cs.AI", "cs-ai"),
        ("  q-bio..NC  ", "q-bio-nc"),
        ("ＣＶ", "cv"),  # full-width letters fold to ASCII
        ("ALL", "cat-all"),  # never takes the place of the "all" feed
        ("Starred", "cat-starred"),
    ],
)
def test_category_slug_is_lower_case_ascii_joined_by_hyphens(code: str, slug: str) -> None:
    assert category_slug(code) == slug


def test_category_slug_of_a_code_without_ascii_is_a_stable_hash() -> None:
    slug = category_slug("机器学习")
    assert slug.startswith("cat-") and len(slug) == 12
    assert slug == category_slug("机器学习")
    assert slug != category_slug("计算机视觉")


def test_feed_list_has_all_and_starred_first_then_categories_by_slug() -> None:
    ctx = make_context(
        make_paper(1, category="RO", category_name="机器人"),
        make_paper(2, category="CV", category_name="计算机视觉"),
        make_paper(3, category="stat.ML", category_name=None),
        make_paper(4, category=None, category_name=None),
    )
    feeds = feed_list(ctx, Settings())
    assert [f.slug for f in feeds] == ["all", "starred", "cv", "ro", "stat-ml"]
    assert [f.kind for f in feeds] == ["all", "starred", "category", "category", "category"]
    cv = feeds[2]
    assert cv.title == "ML Paper Digest — 计算机视觉 (CV)"
    assert cv.category == "CV" and cv.category_name == "计算机视觉"
    assert (cv.rss, cv.atom, cv.json, cv.html) == (
        "feeds/cv.rss",
        "feeds/cv.atom",
        "feeds/cv.json",
        "feeds/cv.html",
    )
    assert feeds[4].title == "ML Paper Digest — stat.ML"


def test_feed_list_keeps_the_starred_feed_when_nothing_is_starred() -> None:
    feeds = feed_list(make_context(), Settings())
    assert [f.slug for f in feeds] == ["all", "starred"]


def test_feed_titles_follow_the_site_title() -> None:
    settings = Settings(site=SiteSettings(title="Papers"))
    feeds = feed_list(make_context(make_paper(1, category="LG")), settings)
    assert [f.title for f in feeds] == [
        "Papers — 全部论文",
        "Papers — 重点关注",
        "Papers — 机器学习 (LG)",
    ]


def test_codes_folding_to_one_slug_share_one_feed_named_after_the_smallest_code() -> None:
    ctx = make_context(
        make_paper(1, category="stat.ML", category_name="统计机器学习"),
        make_paper(2, category="STAT-ML", category_name="统计机器学习"),
        make_paper(3, category="stat.ML", category_name="Statistics"),
    )
    feeds = feed_list(ctx, Settings())
    assert [f.slug for f in feeds] == ["all", "starred", "stat-ml"]
    assert feeds[2].category == "STAT-ML"
    assert feeds[2].category_name == "统计机器学习"  # the most frequent name
    assert [p.key for p in select(ctx, feeds[2], 100)] == [p.key for p in ctx.papers]


def test_category_name_ties_are_broken_by_the_name_not_by_input_order() -> None:
    a = make_paper(1, category_name="乙")
    b = make_paper(2, category_name="甲")
    assert feed_list(make_context(a, b), Settings())[2].category_name == "乙"
    assert feed_list(make_context(b, a), Settings())[2].category_name == "乙"


def test_select_keeps_the_contexts_newest_first_order_ties_included() -> None:
    ctx = make_context(
        make_paper(2, days_ago=0),
        make_paper(4, days_ago=0),
        make_paper(3, days_ago=1),
        make_paper(1, days_ago=2),
    )
    feed = feed_list(ctx, Settings())[0]
    assert [p.item.rank for p in select(ctx, feed, 100)] == [2, 4, 3, 1]


def test_select_keeps_only_the_newest_limit_papers() -> None:
    ctx = make_context(*(make_paper(n, days_ago=n) for n in range(1, 8)))
    feed = feed_list(ctx, Settings())[0]
    assert [p.item.rank for p in select(ctx, feed, 3)] == [1, 2, 3]
    assert select(ctx, feed, 0) == []


def test_select_filters_by_category_and_by_star() -> None:
    ctx = make_context(
        make_paper(1, category="CV", starred=True),
        make_paper(2, category="LG"),
        make_paper(3, category="CV"),
        make_paper(4, category=None, starred=True),
    )
    feeds = {f.slug: f for f in feed_list(ctx, Settings())}
    assert [p.item.rank for p in select(ctx, feeds["cv"], 100)] == [1, 3]
    assert [p.item.rank for p in select(ctx, feeds["lg"], 100)] == [2]
    assert [p.item.rank for p in select(ctx, feeds["starred"], 100)] == [1, 4]
    assert len(select(ctx, feeds["all"], 100)) == 4


def test_feed_info_label_names_the_feed() -> None:
    assert FeedInfo("all", "t", "d", "all").label == "全部论文"
    assert FeedInfo("starred", "t", "d", "starred").label == "重点关注"
    assert FeedInfo("cv", "t", "d", "category", "CV", "计算机视觉").label == "计算机视觉 (CV)"
    assert FeedInfo("ir", "t", "d", "category", "IR", None).label == "IR"
