"""A synthetic ten-year corpus of daily digests, made from the bundled samples.

Each generated day is one of the daily sample digests with its paper identities rewritten, so
every paper is distinct (new arXiv / OpenReview ids, new Weibo post ids that decode to that day,
distinct titles) while the text keeps the real shape and size of a digest.
"""

from __future__ import annotations

import random
import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The daily samples (the weekly list has a different shape and is rare in real life).
DAILY_SAMPLES = ("2021-03-30.txt", "2021-03-10.txt", "2021-06-17.txt", "2022-08-13.txt")

_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WEIBO = re.compile(r"(https://weibo\.com/\d+/)([0-9A-Za-z]{9})")
_ARXIV = re.compile(r"(https?://arxiv\.org/abs/)(\d{4}\.\d{4,5})")
_OPENREVIEW = re.compile(r"(https?://openreview\.net/forum\?id=)([\w-]+)")
_FEATURED = re.compile(r"^(\d+、\[[^\]]+\] )(.+)$")
_MORE = re.compile(r"^(\[[^\]]+\] )(.+)$")
_SHANGHAI = timezone(timedelta(hours=8))
_WORDS = (
    "Sparse", "Robust", "Scalable", "Causal", "Latent", "Neural", "Bayesian", "Efficient",
    "Contrastive", "Federated", "Adaptive", "Implicit", "Hierarchical", "Diffusion",
)


def _base62(n: int, width: int) -> str:
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
    return digits.rjust(width, "0")


def weibo_id_for(moment: datetime, low: int) -> str:
    """Encode a post id that decodes (as the parser does) to `moment`."""
    mid = str(((int(moment.timestamp()) - 515483463) << 22) | (low & 0x3FFFFF))
    groups = []
    while mid:
        groups.insert(0, mid[-7:])
        mid = mid[:-7]
    return "".join(
        _base62(int(g), 0 if i == 0 else 4) for i, g in enumerate(groups)
    )


def _rewrite(text: str, day: date, rng: random.Random, serial: list[int]) -> str:
    def next_serial() -> int:
        serial[0] += 1
        return serial[0]

    def weibo(m: re.Match[str]) -> str:
        start = datetime.combine(day, time(5, 0), _SHANGHAI)
        moment = start + timedelta(minutes=next_serial() % 600)
        return m.group(1) + weibo_id_for(moment, rng.getrandbits(22))

    def arxiv(m: re.Match[str]) -> str:
        return f"{m.group(1)}{day:%y%m}.{next_serial() % 100000:05d}"

    def openreview(m: re.Match[str]) -> str:
        return m.group(1) + _base62(next_serial() * 7919 + 10**10, 11)

    lines = []
    for line in text.splitlines():
        line = _WEIBO.sub(weibo, line)
        line = _ARXIV.sub(arxiv, line)
        line = _OPENREVIEW.sub(openreview, line)
        m = _FEATURED.match(line) or _MORE.match(line)
        if m:
            word = _WORDS[rng.randrange(len(_WORDS))]
            line = f"{m.group(1)}{word} {m.group(2)} {day:%Y%m%d}-{next_serial()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def make_corpus(dest: Path, days: int = 3650, start: date = date(2012, 1, 1)) -> list[Path]:
    """Write `days` daily digests named YYYY-MM-DD.txt into `dest`; return their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    samples = [(ROOT / "digests" / name).read_text(encoding="utf-8") for name in DAILY_SAMPLES]
    rng = random.Random(20210330)
    serial = [0]
    paths = []
    for n in range(days):
        day = start + timedelta(days=n)
        path = dest / f"{day.isoformat()}.txt"
        path.write_text(_rewrite(samples[n % len(samples)], day, rng, serial), encoding="utf-8")
        paths.append(path)
    return paths


def ensure_corpus(days: int = 3650) -> Path:
    """The corpus under benchmarks/.work, generated once and reused by every benchmark."""
    dest = ROOT / "benchmarks" / ".work" / f"corpus-{days}"
    marker = dest / ".complete"
    if not marker.exists():
        make_corpus(dest, days)
        marker.write_text("ok\n", encoding="utf-8")
    return dest


def extra_digest(dest: Path, n: int) -> Path:
    """One more digest, the day after a corpus of `n` days (the 'add one digest' case)."""
    day = date(2012, 1, 1) + timedelta(days=n)
    samples = [(ROOT / "digests" / name).read_text(encoding="utf-8") for name in DAILY_SAMPLES]
    path = dest / f"{day.isoformat()}.txt"
    path.write_text(_rewrite(samples[0], day, random.Random(n), [n * 100]), encoding="utf-8")
    return path


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / ".work" / "corpus"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3650
    written = make_corpus(target, count)
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} digests, {size / 1e6:.1f} MB, into {target}")
