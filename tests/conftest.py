"""Shared fixtures: the seed digests as the curator posted them, isolated work folders, and
factories for the model's objects (items, digests, papers, build contexts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from feeds.model import BuildContext, Digest, Item, Link, Paper

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLE_DIGESTS = ROOT / "digests"
# The five digests the product was designed from are kept once, as the bundled samples under
# their dates. The parser's tests read them under the names the curator's files had, which
# carry no date, so that the other date rules (text, Weibo post times, none) are what date them.
SEED_NAMES = {
    "000_e4047dbd94f74507.txt": "2021-03-30.txt",
    "001_17d677ce7aa43e86.txt": "2021-03-10.txt",
    "002_316854c0f982fd8b.txt": "2021-06-17.txt",
    "003_017995b42cc385a9.txt": "2020-07-11-weekly.txt",
    "004_5253b5a3979d5b77.txt": "2022-08-13.txt",
}
SEEDS = ROOT / "tests" / ".artifacts" / "seeds"


def _lay_out_seeds() -> list[Path]:
    SEEDS.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, sample in sorted(SEED_NAMES.items()):
        data = (SAMPLE_DIGESTS / sample).read_bytes()
        path = SEEDS / name
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        paths.append(path)
    return paths


SEED_FILES = _lay_out_seeds()

# Golden files are rewritten, not compared, when this is set: review the diff like code.
REGENERATE = os.environ.get("FEEDS_REGENERATE_GOLDEN") == "1"
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture
def seed_paths() -> list[Path]:
    return list(SEED_FILES)


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """A folder kept after the run (screenshots and the like), one per test."""
    path = ROOT / "tests" / ".artifacts" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real build of the sample digests, shared by the browser tests; its output folder."""
    from feeds.build import build
    from feeds.config import PathSettings, Settings, SiteSettings

    work = tmp_path_factory.mktemp("site")
    settings = Settings(
        # With the search index: the browser tests search it.
        site=SiteSettings(search=True),
        paths=PathSettings(
            input=SAMPLE_DIGESTS,
            output=work / "output",
            state=work / "state" / "feeds.sqlite3",
            templates=ROOT / "templates",
            subscribers=work / "subscribers.csv",
        )
    )
    report = build(settings, now=datetime(2022, 8, 14, tzinfo=UTC), log=lambda _: None)
    assert not report.failed, report.summary_lines(True)
    return settings.paths.output


@pytest.fixture(scope="session")
def served_site(built_site: Path) -> Iterator[str]:
    """`built_site` served by a real http.server on 127.0.0.1 (the search box loads its index
    with a module import, which browsers refuse from file://); its base URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(built_site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


CHROMIUM = Path("/usr/bin/chromium")
# What headless Chromium needs on a closed network, as root, with no GPU.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium (Debian's) per test module, with a fresh profile.

    Skips with the reason where the browser is missing, except in CI, where the browser tests
    must run: there a missing browser fails.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        sync_playwright = None
    if sync_playwright is None or shutil.which(str(CHROMIUM)) is None:
        reason = f"headless Chromium needs playwright and {CHROMIUM}"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        # A persistent context is how playwright takes a fresh --user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield context
        finally:
            context.close()


@contextmanager
def lock_holder(path: Path, seconds: float = 60.0) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock file at `path` (see feeds.lock) until it exits after
    `seconds` or is killed when the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path; from feeds import lock\n"
         f"with lock.held(Path({str(path)!r}), busy='busy', hint='wait'):\n"
         f"    print('locked', flush=True); time.sleep({seconds})"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        holder.kill()
        holder.communicate()


# -- factories --------------------------------------------------------------------------------
# One way to make the model's objects: complete, plausible defaults, any field overridden by
# keyword. A test names the fields its assertions are about and leaves the rest to these.

# When the default digest was posted (the 2021-03-30 sample's Weibo post time).
DIGEST_TIME = datetime(2021, 3, 30, 4, 48, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
DIGEST_ID = "2021-03-30"
CATEGORY_NAMES = {"LG": "机器学习", "CV": "计算机视觉", "CL": "计算与语言", "RO": "机器人"}


def arxiv_abs(n: int) -> str:
    """The abstract page of the arXiv paper numbered `n` (2103.0000n)."""
    return f"https://arxiv.org/abs/2103.{n:05d}"


def make_item(n: int = 1, **fields: Any) -> Item:
    """Paper `n` of the default digest: arXiv 2103.{n:05d}, ranked and placed at `n`.

    `category_name` follows `category` (None for a code it does not know) unless given.
    """
    url = arxiv_abs(n)
    category = fields.pop("category", "CV")
    values: dict[str, Any] = {
        "key": f"arxiv:2103.{n:05d}",
        "guid": url,
        "section": "featured",
        "rank": n,
        "category": category,
        "category_name": CATEGORY_NAMES.get(category or ""),
        "starred": False,
        "title": f"Paper number {n}",
        "title_zh": f"第{n}篇论文",
        "authors": ("Y H Tsai", "R Salakhutdinov"),
        "authors_truncated": False,
        "affiliations": ("CMU", "Google Research"),
        "summary_zh": "一句中文摘要。第二句。",
        "abstract": "An English abstract.",
        "notes": None,
        "url": url,
        "links": (Link("arxiv", url),),
        "published": DIGEST_TIME,
        "line": n,
        "digest_id": DIGEST_ID,
    }
    values.update(fields)
    return Item(**values)


def make_digest(items: Iterable[Item] = (), **fields: Any) -> Digest:
    """The daily digest of 2021-03-30 holding `items` as given (they are not re-dated)."""
    values: dict[str, Any] = {
        "id": DIGEST_ID,
        "date": DIGEST_TIME,
        "date_source": "weibo",
        "source": f"digests/{DIGEST_ID}.txt",
        "format": "daily",
        "title": DIGEST_ID,
        "summary": None,
        "items": tuple(items),
    }
    values.update(fields)
    return Digest(**values)


def make_paper(n: int = 1, *, days_ago: int = 0, **fields: Any) -> Paper:
    """Paper `n` first seen `days_ago` days before the default digest (and published then)."""
    first_seen = DIGEST_TIME - timedelta(days=days_ago)
    fields.setdefault("published", first_seen)
    return Paper(item=make_item(n, **fields), first_seen=first_seen)


def make_context(*papers: Paper, digests: Iterable[Digest] = ()) -> BuildContext:
    """A build context of `papers` in the order given (newest first, as the build makes it)."""
    return BuildContext(digests=tuple(digests), papers=papers)


# -- time and the sample issue for delivery tests ---------------------------------------------

# The moment delivery tests start at; a `Clock` moves on from it.
NOW = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)


class Clock:
    """A clock a test sets by hand (`clock.now += timedelta(days=1)`)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def sample_issue(day: int) -> Digest:
    """A sample digest dated `day` days after NOW, with its first three papers."""
    from dataclasses import replace

    from feeds.parse import parse_file

    found = parse_file(SAMPLE_DIGESTS / "2022-08-13.txt", tz=ZoneInfo("Asia/Shanghai"))
    date = NOW + timedelta(days=day)
    return replace(found, id=f"{date:%Y-%m-%d}", date=date, items=found.items[:3])
