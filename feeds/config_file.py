"""Reading feeds.toml and the environment into `Settings`, checking every value as it is read.

Kept apart from feeds.config, which only declares the settings: every stage imports those
types, and none needs to know how a file becomes one. Only the edge calls `load_settings`
(the CLI's session and `feeds check`, the web endpoint's `app_from_env`); a stage receives the
frozen result as an argument.

Relative paths in the file are relative to the file's own folder, so cron can run from anywhere.
Secrets are never read from the file: the SMTP password and the unsubscribe signing secret come
from the environment only.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from feeds.config import (
    IMAP_PASSWORD_ENV,
    PASSWORD_ENV,
    UNSUBSCRIBE_SECRET_ENV,
    BouncesSettings,
    NewsletterSettings,
    PathSettings,
    Settings,
    SiteSettings,
    SmtpSettings,
    WebSettings,
    is_loopback,
)
from feeds.errors import ConfigError

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
        # Imported here, as zoneinfo is in _validate: every `feeds` start-up imports this
        # module, and without a config file there is nothing to parse.
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
    check_unpublished(paths, path)
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


def check_unpublished(paths: PathSettings, path: Path | None) -> None:
    """Refuse a state database, a subscriber list or the settings file inside the output
    folder, which is published as it is: the database holds every subscriber's address and
    the record of what was sent (`output = "."` put it on the web). Also for an output given
    on the command line (`feeds build --output`)."""
    output = paths.output.resolve()
    private = [("[paths] state", paths.state), ("[paths] subscribers", paths.subscribers)]
    if path is not None:
        private.append(("the settings file", path))
    for what, given in private:
        where = given.resolve()
        if where == output or output in where.parents:
            raise ConfigError(
                f"{what} ({where}) is inside [paths] output ({output}), which is published",
                path=str(path) if path else None,
                hint="give [paths] output a folder of its own, such as \"output\"",
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
    # Written so that NaN (which TOML allows, and which no comparison holds for) is refused.
    if not 0 <= smtp.messages_per_second < math.inf:
        raise wrong("[smtp] messages_per_second", "must be 0 (no limit) or more")
    if not 0 < smtp.send_time_limit < math.inf:
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
