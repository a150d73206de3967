"""Delivered newsletters as a spam filter scores them: SpamAssassin (Debian's), offline rules.

Each sample digest is sent through a real SMTP server on 127.0.0.1 (aiosmtpd) to a subscriber
of every category and to one of a few; `spamassassin -t -L` (test mode, local tests only: no
network, no DNS blocklists) scores every message exactly as it arrived. The score must be 0.0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import IN_CI, SAMPLE_DIGESTS
from smtp_fixtures import SmtpServer, delivery_settings, smtp_server
from test_deliver import _run

from feeds.parse import parse_file
from feeds.send import Issues
from feeds.subscribers import parse_subscribers

__all__ = ["smtp_server"]
pytestmark = pytest.mark.smtp

SPAMASSASSIN = "spamassassin"
_STATUS = re.compile(r"^X-Spam-Status: (Yes|No), score=(-?[0-9.]+).*?(?:tests=(.*?))?\s+autolearn",
                     re.M | re.S)


def spam_report(data: bytes, home: Path) -> tuple[float, list[str]]:
    """The message's score and the rules that fired, as `spamassassin -t -L` reports them."""
    home.mkdir(parents=True, exist_ok=True)
    # -x: no user preferences are created; HOME keeps whatever it writes out of the real one.
    run = subprocess.run(
        [SPAMASSASSIN, "-t", "-L", "-x"], input=data, capture_output=True, timeout=300,
        check=False, env={**os.environ, "HOME": str(home)},
    )
    headers = run.stdout.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
    found = _STATUS.search(headers)
    assert found, (run.returncode, headers[:2000], run.stderr.decode()[-2000:])
    rules = [r for r in re.split(r"[\s,]+", found.group(3) or "") if r and r != "none"]
    return float(found.group(2)), rules


@pytest.fixture(scope="module")
def spamassassin() -> str:
    path = shutil.which(SPAMASSASSIN)
    if path is None:
        reason = "SpamAssassin is not installed (apt-get install spamassassin)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the spam test")
        pytest.skip(reason)
    return path


def test_every_delivered_sample_newsletter_scores_zero_in_spamassassin(
    spamassassin: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    digests = [parse_file(path, tz=tz) for path in sorted(SAMPLE_DIGESTS.glob("*.txt"))]
    digests.sort(key=lambda d: d.date.timestamp() if d.date else 0, reverse=True)
    people = parse_subscribers(
        "email,name,categories\nall@example.org,Ada Reader,\nsome@example.org,Bo Reader,CV;CL\n"
    )
    for digest in digests:
        # A send delivers the newest issue: each digest gets a fresh state of its own.
        settings = delivery_settings(tmp_path / digest.id, smtp_server)
        tally = _run(settings, Issues.of([digest]), people)
        assert tally.ok, tally
    received = smtp_server.handler.received
    assert len(received) >= 2 * len(digests) - 1  # a subset may have no paper in a digest
    scores = {}
    for n, message in enumerate(received):
        score, rules = spam_report(message.data, tmp_path / f"sa-{n}")
        scores[f"{message.parsed()['Subject']} to {message.recipients[0]}"] = (score, rules)
    assert all(score == 0.0 for score, _ in scores.values()), scores
    # The report was read, not missed: every message is HTML, a rule worth nothing.
    assert all("HTML_MESSAGE" in rules for _, rules in scores.values()), scores
    assert not any("LOW_CONTRAST" in " ".join(rules) for _, rules in scores.values())
