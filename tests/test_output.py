"""Writing under output/: atomic replacement, only changed files, nothing outside the folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from feeds import output
from feeds.errors import OutputError


def test_only_files_whose_bytes_changed_are_written(tmp_path: Path) -> None:
    files = {"index.html": b"<html></html>", "feeds/all.rss": b"<rss/>", "a/b/c.txt": b"c"}
    assert output.write_files(tmp_path, files) == ["a/b/c.txt", "feeds/all.rss", "index.html"]
    inode = (tmp_path / "index.html").stat().st_ino

    changed = {**files, "feeds/all.rss": b"<rss version='2.0'/>"}
    assert output.write_files(tmp_path, changed) == ["feeds/all.rss"]
    assert (tmp_path / "feeds" / "all.rss").read_bytes() == b"<rss version='2.0'/>"
    assert (tmp_path / "index.html").stat().st_ino == inode
    assert output.write_files(tmp_path, changed) == []


def test_a_replaced_file_is_a_new_inode_never_rewritten_in_place(tmp_path: Path) -> None:
    output.write_files(tmp_path, {"x.html": b"old"})
    reader = (tmp_path / "x.html").open("rb")
    output.write_files(tmp_path, {"x.html": b"new and longer"})
    # A reader that opened the old file still sees it whole.
    assert reader.read() == b"old"
    reader.close()
    assert (tmp_path / "x.html").read_bytes() == b"new and longer"


def test_many_files_are_written_in_one_batch_without_leftovers(tmp_path: Path) -> None:
    files = {f"newsletter/{n}.html": f"issue {n}".encode() for n in range(50)}
    assert len(output.write_files(tmp_path, files)) == 50
    names = os.listdir(tmp_path / "newsletter")
    assert len(names) == 50
    assert not [n for n in names if n.startswith(output.TEMP_PREFIX)]


def test_written_files_are_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        output.write_files(tmp_path, {"index.html": b"hello"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "index.html").stat().st_mode) == 0o644


@pytest.mark.parametrize("bad", ["../escape.html", "/etc/passwd", "a/../../b", "", "."])
def test_paths_outside_the_output_folder_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(OutputError, match="outside"):
        output.write_files(tmp_path / "out", {bad: b"x"})
    assert not (tmp_path / "escape.html").exists()


def test_a_failure_while_writing_a_batch_replaces_nothing(tmp_path: Path) -> None:
    output.write_files(tmp_path, {"feeds/all.rss": b"old"})
    # A file where a folder should be: the second file of the batch cannot be written.
    (tmp_path / "x").write_bytes(b"in the way")
    with pytest.raises(OutputError, match="cannot"):
        output.write_files(tmp_path, {"feeds/all.rss": b"new", "x/cv.rss": b"cv"})
    assert (tmp_path / "feeds" / "all.rss").read_bytes() == b"old"
    assert os.listdir(tmp_path / "feeds") == ["all.rss"]


def test_files_no_longer_produced_are_removed(tmp_path: Path) -> None:
    output.write_files(tmp_path, {"feeds/ro.rss": b"x", "feeds/ro.atom": b"y"})
    removed = output.remove_files(tmp_path, ["feeds/ro.rss", "feeds/ro.atom", "feeds/gone.json"])
    assert removed == ["feeds/ro.atom", "feeds/ro.rss"]
    assert os.listdir(tmp_path / "feeds") == []


def test_temporaries_left_by_a_killed_build_are_cleaned_up(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    leftover = tmp_path / "feeds" / f"{output.TEMP_PREFIX}abc.tmp"
    leftover.write_bytes(b"half")
    (tmp_path / "feeds" / "all.rss").write_bytes(b"whole")
    assert output.remove_temporaries(tmp_path) == [leftover]
    assert os.listdir(tmp_path / "feeds") == ["all.rss"]


def test_an_output_belongs_to_the_database_it_names_or_else_to_one_older_than_its_mail(
    tmp_path: Path,
) -> None:
    assert output.publisher(tmp_path) is None
    # No newsletter yet: any database may name itself.
    assert output.belongs_to(tmp_path, "1700000000.5")
    letter = tmp_path / "newsletter" / "2024-01-01.eml"
    letter.parent.mkdir()
    letter.write_bytes(b"Subject: x\r\n\r\nx\r\n")
    os.utime(letter, (1_700_000_100, 1_700_000_100))
    # Without the record: a database younger than the oldest newsletter did not send it.
    assert output.belongs_to(tmp_path, "1700000000.5")
    assert not output.belongs_to(tmp_path, "1800000000.0")
    # With it, the record decides, whatever the files' times.
    output.claim(tmp_path, "1800000000.0")
    assert output.publisher(tmp_path) == "1800000000.0"
    assert output.belongs_to(tmp_path, "1800000000.0")
    assert not output.belongs_to(tmp_path, "1700000000.5")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(output.TEMP_PREFIX)]
