"""The package as a user installs it: a wheel carries its templates and builds a site from a
folder that is not the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT, SAMPLE_DIGESTS


def test_a_wheel_installs_outside_the_checkout_makes_a_site_adds_a_digest_and_builds(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
         str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("digest_feeds-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.removeprefix("feeds/templates/") for n in names
                     if n.startswith("feeds/templates/"))
    assert shipped == sorted(
        p.relative_to(ROOT / "templates").as_posix()
        for p in (ROOT / "templates").rglob("*") if p.is_file()
    )

    target = tmp_path / "installed"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    # The installed copy first; its dependencies from this environment.
    env = {**os.environ, "PYTHONPATH": str(target)}

    def feeds(
        *args: str, cwd: Path = tmp_path, stdin: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-c",
             "import feeds, sys; from feeds.cli import main;"
             f" assert feeds.__file__.startswith({str(target)!r}), feeds.__file__;"
             " sys.argv = ['feeds', *sys.argv[1:]]; main()", *args],
            cwd=cwd, env=env, input=stdin, capture_output=True, timeout=300,
        )

    made = feeds("init", "site")
    assert made.returncode == 0, made.stderr.decode()[-2000:]
    site = tmp_path / "site"
    assert len(made.stdout.decode().splitlines()) == 3
    assert "set [site] base_url" in made.stdout.decode()
    assert {p.name for p in (site / "deploy").iterdir()} == {
        "digest-feeds.service", "digest-feeds.timer", "crontab"
    }
    assert f"WorkingDirectory={site}" in (site / "deploy" / "digest-feeds.service").read_text()
    again = feeds("init", "site")
    assert again.returncode == 1 and b"already exists; nothing was written" in again.stderr

    text = (SAMPLE_DIGESTS / "2021-03-30.txt").read_bytes()
    added = feeds("add", "-", cwd=site, stdin=text)
    assert added.returncode == 0, added.stderr.decode()
    assert added.stdout.decode().startswith(f"added {site / 'digests' / '2021-03-30.txt'}: ")
    second = feeds("add", "-", cwd=site, stdin=text)
    assert (site / "digests" / "2021-03-30-2.txt").read_bytes() == text
    assert second.returncode == 0
    refused = feeds("add", "-", cwd=site, stdin=b"a shopping list\n")
    assert refused.returncode == 1 and b"no entry recognized: not added" in refused.stderr

    built = feeds("build", cwd=site)
    assert built.returncode == 0, built.stderr.decode()[-2000:]
    assert (site / "output" / "newsletter" / "2021-03-30.html").is_file()
    assert (site / "output" / "feeds" / "all.atom").is_file()
    version = feeds("--version")
    assert version.stdout.decode().startswith("feeds (digest-feeds) 0.1.0 (feedgen 1.0")
    assert b"jinja2" in version.stdout and b"premailer" in version.stdout

    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        checked = subprocess.run(
            [analyze, "verify", str(site / "deploy" / "digest-feeds.service"),
             str(site / "deploy" / "digest-feeds.timer")],
            capture_output=True, text=True, timeout=60,
        )
        # It may complain about the machine (no systemd running here), never about the units.
        assert "digest-feeds" not in checked.stderr, checked.stderr
