"""Settings: an optional feeds.toml plus the environment, frozen once at start-up.

Only the CLI calls `load_settings`; every stage receives the resulting `Settings` as an argument.
Relative paths in the file are relative to the file's own folder, so cron can run from anywhere.
Secrets are never read from the file: the SMTP password and the unsubscribe signing secret come
from the environment only.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feeds.errors import ConfigError

# tomllib and zoneinfo are imported where used: every `feeds` start-up imports this module,
# and without a config file there is nothing to parse.
if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

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


_SECTIONS: dict[str, type[Any]] = {
    "site": SiteSettings,
    "paths": PathSettings,
    "newsletter": NewsletterSettings,
    "smtp": SmtpSettings,
    "web": WebSettings,
    "bounces": BouncesSettings,
}
# TOML keys that are not Python names.
_RENAMES = {("newsletter", "from"): "sender"}
_SECRET_KEYS = {("smtp", "password"), ("bounces", "imap_password")}


def load_settings(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    base: Path | None = None,
) -> Settings:
    """Read `path` (optional) and the environment into frozen settings.

    Without a file, relative default paths are taken from `base` (the current folder).
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    root = (base or Path.cwd()).resolve()
    if path is not None:
        import tomllib

        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc.strerror}", path=str(path)) from exc
        try:
            data = tomllib.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise ConfigError("config is not UTF-8", path=str(path)) from exc
        except tomllib.TOMLDecodeError as exc:
            # tomllib (before 3.14) says where only in its text, "... (at line 3, column 7)".
            message, line = str(exc), getattr(exc, "lineno", None)
            if where := re.search(r" \(at line (\d+), column (\d+)\)$", message):
                message, line = f"{message[: where.start()]} (column {where[2]})", int(where[1])
            raise ConfigError(f"invalid TOML: {message}", path=str(path), line=line) from exc
        root = path.resolve().parent

    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in _SECTIONS:
            raise ConfigError(
                f"unknown section [{name}]",
                path=str(path),
                hint=f"known sections: {', '.join(sorted(_SECTIONS))}",
            )
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table", path=str(path))
        sections[name] = _build_section(name, value, path)

    paths: PathSettings = sections.get("paths", PathSettings())
    paths = PathSettings(
        input=_absolute(paths.input, root),
        output=_absolute(paths.output, root),
        state=_absolute(paths.state, root),
        templates=_absolute(paths.templates, root),
        subscribers=_absolute(paths.subscribers, root),
    )
    smtp: SmtpSettings = sections.get("smtp", SmtpSettings())
    password = env.get(PASSWORD_ENV) or None
    smtp = SmtpSettings(**{**smtp.__dict__, "password": password})
    site: SiteSettings = sections.get("site", SiteSettings())
    web: WebSettings = sections.get("web", WebSettings())
    newsletter: NewsletterSettings = sections.get("newsletter", NewsletterSettings())
    _validate(site, newsletter, smtp, path)
    _validate_web(web, path)
    return Settings(
        site=site,
        paths=paths,
        newsletter=newsletter,
        smtp=smtp,
        web=web,
        bounces=_bounces(sections.get("bounces", BouncesSettings()), root, env, path),
        unsubscribe_secret=env.get(UNSUBSCRIBE_SECRET_ENV) or None,
        source=path,
    )


def _build_section(name: str, table: dict[str, Any], path: Path | None) -> Any:
    cls = _SECTIONS[name]
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if (name, key) in _SECRET_KEYS:
            raise ConfigError(
                f"[{name}] {key} must not be in the config file",
                path=str(path),
                hint="set it in the environment instead (FEEDS_SMTP_PASSWORD, "
                "FEEDS_IMAP_PASSWORD)",
            )
        attr = _RENAMES.get((name, key), key)
        fields = defaults.__dataclass_fields__
        if attr not in fields or attr.endswith("password"):
            raise ConfigError(f"unknown key [{name}] {key}", path=str(path))
        default = getattr(defaults, attr)
        if default is None and str(fields[attr].type).startswith("Path"):
            default = Path()  # an optional path: read as a path all the same
        kwargs[attr] = _coerce(name, key, value, default, path)
    return cls(**kwargs)


def _coerce(section: str, key: str, value: Any, default: Any, path: Path | None) -> Any:
    where = f"[{section}] {key}"
    if isinstance(value, str) and any(
        unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value
    ):
        # A line break in `from` or `reply_to` would be cut or folded into another header
        # when the message is composed; no setting has a use for one.
        raise ConfigError(
            f"{where} must not contain a line break or another control character",
            path=str(path),
        )
    if isinstance(default, Path):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path string", path=str(path))
        return Path(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false", path=str(path))
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer", path=str(path))
        return value
    if isinstance(default, float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a number", path=str(path))
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string", path=str(path))
    return value


def _absolute(p: Path, root: Path) -> Path:
    return p if p.is_absolute() else root / p


def _validate(
    site: SiteSettings, newsletter: NewsletterSettings, smtp: SmtpSettings, path: Path | None
) -> None:
    """Every value is checked when read, naming its key: a wrong one never waits for the send
    (or the traceback) that would find it."""
    from urllib.parse import urlsplit
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    def wrong(key: str, why: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{key} {why}", path=str(path), hint=hint)

    try:
        ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise wrong("[site] timezone", f"is not a known time zone: {site.timezone!r}") from exc
    base = urlsplit(site.base_url)
    if base.scheme not in ("https", "http") or not base.hostname:
        raise wrong("[site] base_url", f"must be an http(s) URL with a host, not {site.base_url!r}")
    if site.items_per_feed < 1:
        raise wrong("[site] items_per_feed", "must be at least 1")
    if site.websub_hub:
        hub = urlsplit(site.websub_hub)
        if hub.scheme not in ("https", "http") or not hub.hostname or hub.fragment:
            raise wrong("[site] websub_hub", f"must be an http(s) URL, not {site.websub_hub!r}",
                        "e.g. https://pubsubhubbub.appspot.com/")
        if hub.scheme == "http" and not is_loopback(hub.hostname):
            # The hub is told which feeds changed at every build: over https, as hubs serve.
            raise wrong("[site] websub_hub", "must be https:// (http:// on 127.0.0.1 only)")
    if not 20_000 <= newsletter.size_budget <= 10_000_000:
        raise wrong(
            "[newsletter] size_budget", "must be between 20000 and 10000000 bytes",
            "Gmail clips messages over 102 KB: 100000 is the default",
        )
    if not newsletter.list_id.strip():
        raise wrong("[newsletter] list_id", "must not be empty")
    if not 7 <= newsletter.ledger_retention_days <= 36500:
        raise wrong(
            "[newsletter] ledger_retention_days", "must be between 7 and 36500 days",
            "a digest is given up 3 days after it was queued; 30 is the default",
        )
    if smtp.security not in ("starttls", "ssl", "none"):
        raise wrong("[smtp] security", f"must be starttls, ssl or none, not {smtp.security!r}")
    if smtp.security == "none" and not smtp.allow_insecure and not is_loopback(smtp.host):
        raise wrong(
            "[smtp] security", f"= none to {smtp.host} would send mail and password in clear text",
            "use starttls or ssl, or set allow_insecure = true",
        )
    if not 0 < smtp.port < 65536:
        raise wrong("[smtp] port", f"must be a port number (1 to 65535), not {smtp.port}")
    if not 1 <= smtp.connections <= 64:
        raise wrong("[smtp] connections", "must be between 1 and 64")
    if not 0 < smtp.timeout <= 600:
        raise wrong("[smtp] timeout", "must be more than 0 and at most 600 seconds")
    if smtp.max_attempts < 1:
        raise wrong("[smtp] max_attempts", "must be at least 1")
    if smtp.messages_per_second < 0:
        raise wrong("[smtp] messages_per_second", "must be 0 (no limit) or more")
    if smtp.send_time_limit <= 0:
        raise wrong("[smtp] send_time_limit", "must be more than 0 seconds")


def _bounces(
    bounces: BouncesSettings, root: Path, env: Mapping[str, str], path: Path | None
) -> BouncesSettings:
    if bounces.imap_security not in ("ssl", "starttls", "none"):
        raise ConfigError(
            f"[bounces] imap_security must be ssl, starttls or none, not {bounces.imap_security!r}",
            path=str(path),
        )
    host = bounces.imap_host
    if bounces.imap_security == "none" and host and not is_loopback(host):
        raise ConfigError(
            f"[bounces] imap_security = none to {bounces.imap_host} would send the password in "
            "clear text",
            path=str(path),
        )
    if bounces.soft_limit < 1 or bounces.soft_reset_days < 1:
        raise ConfigError(
            "[bounces] soft_limit and soft_reset_days must be at least 1", path=str(path)
        )
    if not 0 < bounces.imap_port < 65536:
        raise ConfigError("[bounces] imap_port must be a port number", path=str(path))
    maildir = _absolute(bounces.maildir, root) if bounces.maildir else None
    return replace(bounces, maildir=maildir, imap_password=env.get(IMAP_PASSWORD_ENV) or None)


def _validate_web(web: WebSettings, path: Path | None) -> None:
    from urllib.parse import urlsplit

    if web.public_url:
        parts = urlsplit(web.public_url)
        host = parts.hostname or ""
        if parts.scheme not in ("https", "http") or not host or parts.query or parts.fragment:
            raise ConfigError(
                f"[web] public_url must be an http(s) URL without query, not {web.public_url!r}",
                path=str(path),
                hint="e.g. https://digest.example.org/list",
            )
        if parts.scheme == "http" and not is_loopback(host):
            raise ConfigError(
                "[web] public_url must be https:// (mail clients ignore other one-click "
                "unsubscribe links); http:// is for a local preview on 127.0.0.1 only",
                path=str(path),
            )
    if web.requests_per_minute < 1:
        raise ConfigError("[web] requests_per_minute must be at least 1", path=str(path))
    if not 1 <= web.notices_per_day <= 100:
        raise ConfigError("[web] notices_per_day must be between 1 and 100", path=str(path))


def is_loopback(host: str) -> bool:
    """This machine: where clear text and http:// links are allowed (a local relay, a preview)."""
    return host in ("localhost", "::1") or host.startswith("127.")
