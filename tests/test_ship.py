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


def test_a_wheel_carries_the_templates_and_builds_outside_the_checkout(tmp_path: Path) -> None:
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
    site = tmp_path / "site"
    (site / "digests").mkdir(parents=True)
    shutil.copy(SAMPLE_DIGESTS / "2022-08-13.txt", site / "digests")
    # The installed copy first; its dependencies from this environment.
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c",
         "import feeds, sys; from feeds.cli import main; print(feeds.__file__, file=sys.stderr);"
         " sys.argv = ['feeds', 'build']; main()"],
        cwd=site, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.startswith(str(target / "feeds"))
    assert (site / "output" / "newsletter" / "2022-08-13.html").is_file()
    assert (site / "output" / "feeds" / "all.atom").is_file()
