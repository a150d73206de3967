"""The state database: schema, WAL, the parse cache, published identities, the lock."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_digest, make_item

from feeds import state, store
from feeds.errors import StateError
from feeds.model import Digest, Link, ParseWarning

SEEN = datetime(2021, 3, 30, 4, 48, 5, tzinfo=UTC)


def sample_digest() -> Digest:
    item = make_item(
        15134,
        rank=1,
        line=3,
        category="LG",
        starred=True,
        title="Self-supervised Learning <from> a \"Multi-view\" Perspective",
        title_zh="用多视角看自监督学习",
        authors=("Y H Tsai", "Y Wu"),
        authors_truncated=True,
        affiliations=("CMU",),
        summary_zh="从理论和经验两方面研究了自监督学习。",
        abstract="As a subset of unsupervised representation learning ...",
        links=(Link("arxiv", "https://arxiv.org/abs/2103.15134"),
               Link("weibo", "https://weibo.com/1402400261/K8wjSoUDC")),
        published=SEEN,
    )
    return make_digest(
        [item],
        date=SEEN,
        title="爱可可 AI 前沿推介",
        warnings=(ParseWarning(12, "stray line"),),
        content_hash="ab" * 32,
        credit="爱可可爱生活",
        links=(Link("other", "https://example.org/source"),),
    )


def test_a_new_database_is_in_wal_mode_with_the_current_schema(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "state" / "feeds.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == state.SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"digests", "files", "papers", "paper_keys", "paper_titles", "renders",
                "outputs", "meta"} <= tables
    finally:
        conn.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StateError, match="newer"):
        state.connect(path)


def test_a_file_that_is_not_a_database_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StateError, match="unusable") as info:
        state.connect(path)
    assert info.value.path == str(path)


def test_a_parsed_digest_survives_the_cache_unchanged(tmp_path: Path) -> None:
    digest = sample_digest()
    conn = state.connect(tmp_path / "feeds.sqlite3")
    try:
        store.save_digest(conn, digest, first_seen=SEEN, parser="p1")
        headers = store.load_headers(conn, {digest.content_hash, "missing"})
        loaded = store.load_digests(conn, headers)
        short = store.load_digests(conn, headers, texts=False)
        rows = store.digest_rows(conn)
    finally:
        conn.close()
    assert headers == {digest.content_hash: replace(digest, items=())}
    assert loaded == {digest.content_hash: digest}
    item = short[digest.content_hash].items[0]
    assert (item.key, item.guid, item.title, item.title_zh, item.starred, item.category) == (
        digest.items[0].key, digest.items[0].guid, digest.items[0].title,
        digest.items[0].title_zh, True, "LG",
    )
    assert (item.authors, item.affiliations, item.links, item.summary_zh, item.abstract) == (
        (), (), (), None, None
    )
    assert (item.digest_id, item.published) == ("2021-03-30", SEEN)
    assert rows[digest.content_hash].first_seen == SEEN
    assert rows[digest.content_hash].parser == "p1"


def test_a_first_version_database_keeps_its_facts_and_parses_again(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite3"
    raw = sqlite3.connect(path)
    raw.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE digests (content_hash TEXT PRIMARY KEY, first_seen TEXT NOT NULL,"
        " assigned_id TEXT, parser TEXT, parsed TEXT, light TEXT);"
        f"INSERT INTO digests VALUES ('h1', '{SEEN.isoformat()}', '2021-03-30', 'p1', '{{}}',"
        " '{}');"
        "PRAGMA user_version = 1;"
    )
    raw.close()
    conn = state.connect(path)
    try:
        rows = store.digest_rows(conn)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(digests)")]
    finally:
        conn.close()
    assert rows == {"h1": store.DigestRow("h1", SEEN, "2021-03-30", None)}
    assert "parsed" not in columns and "light" not in columns


def test_a_new_database_and_its_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "feeds.sqlite3"
    state.connect(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_first_seen_is_recorded_once_and_never_moves(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "feeds.sqlite3")
    try:
        store.record_first_seen(conn, "h1", SEEN)
        store.record_first_seen(conn, "h1", datetime(2030, 1, 1, tzinfo=UTC))
        store.save_digest(conn, sample_digest(), first_seen=SEEN, parser="p1")
        store.save_digest(
            conn, sample_digest(), first_seen=datetime(2031, 1, 1, tzinfo=UTC), parser="p2"
        )
        rows = store.digest_rows(conn)
    finally:
        conn.close()
    assert rows["h1"].first_seen == SEEN
    assert rows["ab" * 32].first_seen == SEEN
    assert rows["ab" * 32].parser == "p2"


def test_published_guids_are_never_overwritten(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "feeds.sqlite3")
    try:
        state.record_papers(conn, [("g1", SEEN, "d1")], [("k", "g1")], [("title", "g1")])
        state.record_papers(conn, [("g2", SEEN, "d2")], [("k", "g2")], [("title", "g2")])
        keys, titles = state.guid_maps(conn)
    finally:
        conn.close()
    assert keys == {"k": "g1"}
    assert titles == {"title": "g1"}


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "feeds.sqlite3")
    try:
        with pytest.raises(RuntimeError), state.transaction(conn):
            state.set_meta(conn, "published", "[]")
            raise RuntimeError("killed halfway")
        assert state.get_meta(conn, "published") is None
    finally:
        conn.close()


def test_another_module_can_keep_its_own_table_in_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite3"
    conn = state.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS ledger (digest_id TEXT, address TEXT)")
    conn.execute("INSERT INTO ledger VALUES ('2021-03-30', 'a@example.org')")
    conn.close()
    again = state.connect(path)
    try:
        assert again.execute("SELECT count(*) FROM ledger").fetchone()[0] == 1
    finally:
        again.close()


def test_the_stamp_round_trips_and_a_damaged_one_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite3"
    assert state.read_stamp(path) == {}
    state.write_stamp(path, {"stamp": "x", "errors": ["a.txt: empty"]})
    assert state.read_stamp(path) == {"stamp": "x", "errors": ["a.txt: empty"]}
    state.stamp_path(path).write_text("{not json")
    assert state.read_stamp(path) == {}
    state.clear_stamp(path)
    assert not state.stamp_path(path).exists()


def test_a_database_readable_by_others_is_made_private_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite3"
    state.connect(path).close()
    path.chmod(0o644)
    state.connect(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        # What SQLite says when its write-ahead log cannot grow on a full disk: the database is
        # sound, and moving it aside would lose every subscriber and the send ledger.
        (sqlite3.OperationalError("disk I/O error"), "is it full?"),
        (sqlite3.OperationalError("database or disk is full"), "free some space"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "-wal and -shm"),
        (sqlite3.DatabaseError("file is not a database"), "restore it from a backup"),
        (sqlite3.DatabaseError("database disk image is malformed"), "restore it from a backup"),
        (sqlite3.OperationalError("no such savepoint: x"), "PRAGMA integrity_check"),
    ],
)
def test_only_a_damaged_database_is_advised_to_be_restored_or_moved_aside(
    tmp_path: Path, error: sqlite3.Error, advice: str
) -> None:
    explained = state.explain(error, tmp_path / "feeds.sqlite3")
    assert advice in str(explained) and str(explained).startswith(f"{tmp_path}/feeds.sqlite3: ")
    damaged = "malformed" in str(error) or "not a database" in str(error)
    assert ("move it aside" in str(explained)) == damaged


def test_a_state_path_under_a_file_is_one_line_without_the_errno(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("", encoding="utf-8")
    path = tmp_path / "afile" / "state" / "feeds.sqlite3"
    with pytest.raises(StateError) as caught:
        state.connect(path)
    assert str(caught.value) == f"{path}: cannot open the state database: Not a directory"
