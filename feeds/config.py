"""Settings: what one run is configured with, as frozen dataclasses, one per feeds.toml section.

Every stage receives a `Settings` as an argument and reads nothing else. Reading a file and the
environment into one, and checking every value, is feeds.config_file's work; only the edge
(the CLI, the web endpoint's `app_from_env`) calls its `load_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# zoneinfo is imported where a time zone is made: every `feeds` start-up imports this module.
if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

# Secrets come from the environment only, never from the file.
PASSWORD_ENV = "FEEDS_SMTP_PASSWORD"
UNSUBSCRIBE_SECRET_ENV = "FEEDS_UNSUBSCRIBE_SECRET"
IMAP_PASSWORD_ENV = "FEEDS_IMAP_PASSWORD"


def _default_templates() -> Path:
    """The templates an installed package carries (feeds/templates/), else those at the top
    of a source checkout, where the repository keeps them."""
    package = Path(__file__).resolve().parent
    installed = package / "templates"
    return installed if (installed / "newsletter").is_dir() else package.parent / "templates"


DEFAULT_TEMPLATES = _default_templates()


@dataclass(frozen=True)
class SiteSettings:
    """[site]: what the feeds, pages and newsletters say about the publication."""

    title: str = "ML Paper Digest"
    description: str = "Daily machine-learning paper digests, by arXiv category."
    base_url: str = "https://digest.example.org/"
    author: str = "ML Paper Digest"
    author_email: str | None = None
    language: str = "zh-CN"
    timezone: str = "Asia/Shanghai"
    items_per_feed: int = 100
    # A WebSub hub (e.g. "https://pubsubhubbub.appspot.com/"): the RSS, Atom and JSON feeds
    # name it, and the build tells it which feeds changed (feeds.websub). Empty: no hub.
    websub_hub: str | None = None
    # Full-text search over every paper (Pagefind), indexed a month at a time; what it costs
    # a site is in docs/operations.md, "Decisions".
    search: bool = True

    @property
    def tz(self) -> ZoneInfo:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def url(self, path: str) -> str:
        """Absolute public URL of a path under output/."""
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class PathSettings:
    """[paths]: where digests are read, output and state written, templates found."""

    input: Path = Path("digests")
    output: Path = Path("output")
    state: Path = Path("state/feeds.sqlite3")
    templates: Path = DEFAULT_TEMPLATES
    subscribers: Path = Path("subscribers.csv")


@dataclass(frozen=True)
class NewsletterSettings:
    """[newsletter]: the headers and size of the emailed issue."""

    sender: str = "ML Paper Digest <digest@example.org>"
    reply_to: str | None = None
    list_id: str = "ml-digest.example.org"
    # Gmail clips messages over 102 KB; stay under 100 KB as sent.
    size_budget: int = 100_000
    unsubscribe_mailto: str = "unsubscribe@example.org"
    # e.g. "https://digest.example.org/unsubscribe?token={token}"; empty: mailto only.
    unsubscribe_url: str | None = None
    # e.g. "bounces@digest.example.org": messages then go out with a VERP envelope sender,
    # bounces+TOKEN@digest.example.org, so that a bounce names its recipient and issue.
    bounce_address: str | None = None
    # Days a sent digest's ledger rows are kept one by one; then they collapse to counts
    # (feeds.retention), and the digest can never be queued again.
    ledger_retention_days: int = 30


@dataclass(frozen=True)
class SmtpSettings:
    """[smtp]: the relay, and how hard and how fast to send through it."""

    host: str = "127.0.0.1"
    port: int = 25
    security: str = "starttls"  # starttls | ssl | none
    username: str | None = None
    # `none` sends in clear text; allowed to a loopback host only unless this is set.
    allow_insecure: bool = False
    messages_per_second: float = 0.0  # 0: no limit
    connections: int = 1
    # Seconds any one exchange with the server may take in all (a server that trickles its
    # reply a byte at a time is cut off too).
    timeout: float = 30.0
    max_attempts: int = 5
    # Seconds one send may take in all; then it stops cleanly and the rest stays due.
    send_time_limit: float = 3600.0
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BouncesSettings:
    """[bounces]: where delivery status notifications arrive, and when an address is given up."""

    # A Maildir that receives the bounce address's mail (`feeds bounces --maildir` overrides).
    maildir: Path | None = None
    # An IMAP mailbox that receives it; the password comes from FEEDS_IMAP_PASSWORD.
    imap_host: str | None = None
    imap_port: int = 993
    imap_security: str = "ssl"  # ssl | starttls | none (none: loopback only)
    imap_user: str | None = None
    imap_folder: str = "INBOX"
    # Where processed notifications are moved; nothing else in the mailbox is touched.
    processed_folder: str = "processed"
    unmatched_folder: str = "unmatched"
    # Temporary failures on this many different days suppress an address; a week without one
    # starts the count afresh (Mailman's defaults).
    soft_limit: int = 5
    soft_reset_days: int = 7
    imap_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WebSettings:
    """[web]: the subscription endpoint (`feeds serve`)."""

    # Where /subscribe, /confirm, /unsubscribe, /preferences and /manage are reachable, e.g.
    # "https://digest.example.org/list". Every link in emails points here; empty: no endpoint,
    # and no subscribe form on the site.
    public_url: str | None = None
    # Form submissions (subscribe, manage) per client address per minute; one-click
    # unsubscribes are never limited.
    requests_per_minute: int = 20
    # Confirmation and manage emails to one address per day, whoever asks for them.
    notices_per_day: int = 3
    # Behind a reverse proxy: take the client address from its X-Forwarded-For header.
    behind_proxy: bool = False

    def url(self, route: str) -> str | None:
        return self.public_url.rstrip("/") + route if self.public_url else None


@dataclass(frozen=True)
class Settings:
    """Everything one run is configured with."""

    site: SiteSettings = SiteSettings()
    paths: PathSettings = PathSettings()
    newsletter: NewsletterSettings = NewsletterSettings()
    smtp: SmtpSettings = SmtpSettings()
    web: WebSettings = WebSettings()
    bounces: BouncesSettings = BouncesSettings()
    unsubscribe_secret: str | None = field(default=None, repr=False)
    # The file the settings came from, for messages; None when running on defaults.
    source: Path | None = None

    @property
    def unsubscribe_template(self) -> str | None:
        """The personal unsubscribe link with a `{token}` field: `[newsletter] unsubscribe_url`,
        else the endpoint's /unsubscribe; None when there is neither."""
        if self.newsletter.unsubscribe_url:
            return self.newsletter.unsubscribe_url
        return self.web.url("/unsubscribe?token={token}")


def is_loopback(host: str) -> bool:
    """This machine: where clear text and http:// links are allowed (a local relay, a preview)."""
    return host in ("localhost", "::1") or host.startswith("127.")
