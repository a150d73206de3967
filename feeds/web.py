"""The subscription endpoint (`feeds serve`): subscribe with double opt-in, confirm, choose
categories, and leave in one click (RFC 8058), over the same state file as the build and send.

Views call the library the CLI calls (feeds.audience, feeds.notices, feeds.send); nothing here
holds a transaction across network I/O. Routes sit at the root of the application; in public
they live under `[web] public_url` (a reverse proxy strips its path), so pages link to each
other with relative URLs and emails link with absolute ones built from `public_url`.

What a visitor's form may hold, and how it is read, is in feeds.web_forms; the rate limit and
the thread that mails notices are in feeds.web_limits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from flask import Flask, Response, render_template, request, send_from_directory
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, NotFound

from feeds.audience import Audience, Member
from feeds.catalog import ALL_SLUG, STARRED_SLUG, category_label
from feeds.config import Settings, is_loopback
from feeds.config_file import load_settings
from feeds.errors import ConfigError, StateError
from feeds.notices import Kind, compose_notice
from feeds.send import send_one
from feeds.state import utc_now
from feeds.subscribers import MAX_NAME, clean_name
from feeds.unsubscribe import make_token, verify_token
from feeds.web_forms import (
    MAX_CATEGORIES,
    MAX_REQUEST,
    MAX_TOKEN,
    Refusal,
    check_form_type,
    read_categories,
    read_email,
    read_form,
)
from feeds.web_limits import Postman, RateLimit, client_of

log = logging.getLogger("feeds.web")

CODE = re.compile(r"[A-Za-z][A-Za-z0-9.-]{0,31}\Z")
# The design's five categories: what the form offers before anything is built.
KNOWN_CATEGORIES = {"LG": "机器学习", "CV": "计算机视觉", "CL": "计算与语言", "AS": "音频与语音",
                    "RO": "机器人"}
CONFIG_ENV = "FEEDS_CONFIG"

_SENTENCES = {
    400: "The request could not be understood.",
    404: "There is no page at this address.",
    405: "This page cannot be used that way.",
    413: "The form sent was too large to accept.",
    429: "Too many forms were sent from your address; please try again in a minute.",
    503: "The list is busy right now; please try again in a minute.",
}
_TITLES = {404: "Page not found", 413: "Too large", 429: "Too many requests"}


class _PerThread(threading.local):
    audience: Audience | None = None


@dataclass
class Endpoint:
    """What the views share: the frozen settings and the process's own helpers."""

    settings: Settings
    clock: Callable[[], datetime]
    postman: Postman = field(default_factory=Postman)
    limit: RateLimit = field(init=False)
    _local: _PerThread = field(default_factory=_PerThread)
    _categories: tuple[int, dict[str, str]] = (-1, {})

    def __post_init__(self) -> None:
        self.limit = RateLimit(self.settings.web.requests_per_minute)

    @property
    def secret(self) -> str:
        return self.settings.unsubscribe_secret or ""

    def audience(self) -> Audience:
        """This thread's connection to the state file (waitress keeps its threads)."""
        if self._local.audience is None:
            self._local.audience = Audience.open(self.settings.paths.state, clock=self.clock)
        return self._local.audience

    def link(self, route: str) -> str:
        url = self.settings.web.url(route)
        assert url is not None
        return url

    def address_of(self, token: str) -> str:
        """The address an unsubscribe (HMAC) token names; a Refusal when it is not ours."""
        address = None
        if 0 < len(token) <= MAX_TOKEN:
            address = verify_token(
                token, list_id=self.settings.newsletter.list_id, secret=self.secret
            )
        if address is None:
            raise Refusal("This link is incomplete or was not made by us; "
                          "please open the link from your email again.")
        return address

    def personal_token(self, address: str) -> str:
        return make_token(address, list_id=self.settings.newsletter.list_id, secret=self.secret)

    def csrf(self, token: str) -> str:
        """Ties a preferences form to its page: an HMAC of the token under a key of its own."""
        key = hmac.new(self.secret.encode(), b"feeds.web csrf", hashlib.sha256).digest()
        return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()

    def categories(self) -> dict[str, str]:
        """Category code -> label, from the last build's category feeds; the design's five
        when nothing is built. Read again whenever the build replaces a feed."""
        folder = self.settings.paths.output / "feeds"
        try:
            stamp = folder.stat().st_mtime_ns
        except OSError:
            stamp = 0
        if stamp != self._categories[0]:
            found = published_categories(folder) if stamp else {}
            labels = {code: category_label(code, name) for code, name in found.items()}
            self._categories = (stamp, labels or {
                code: category_label(code, name) for code, name in KNOWN_CATEGORIES.items()
            })
        return self._categories[1]

    def notify(self, kind: Kind, address: str, link: str) -> None:
        """Mail a notice, within the daily limit per address (runs on the postman's thread)."""
        if not self.audience().may_notify(address, per_day=self.settings.web.notices_per_day):
            log.info("notice to %s not sent: the daily limit is reached", address)
            return
        data = compose_notice(self.settings, kind, address, link, now=self.clock())
        send_one(self.settings, address, data)


def published_categories(folder: Path) -> dict[str, str | None]:
    """Code -> name of each category feed in `folder` (output/feeds), from its JSON Feed."""
    found: dict[str, str | None] = {}
    for path in sorted(folder.glob("*.json")):
        if path.stem in (ALL_SLUG, STARRED_SLUG):
            continue
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        items = data.get("items") if isinstance(data, dict) else None
        extra = items[0].get("_digest_feeds") if isinstance(items, list) and items else None
        code = extra.get("category") if isinstance(extra, dict) else None
        if isinstance(code, str) and CODE.match(code):
            name = extra.get("category_name") if isinstance(extra, dict) else None
            found[code] = name if isinstance(name, str) else None
    return found


def create_app(
    settings: Settings, *, clock: Callable[[], datetime] = utc_now, site: Path | None = None
) -> Flask:
    """The endpoint as a WSGI application; with `site`, that folder is served at / too."""
    if not settings.web.public_url:
        raise ConfigError("[web] public_url is not set: emails would have nowhere to link",
                          path=str(settings.source) if settings.source else None,
                          hint='e.g. public_url = "https://digest.example.org/list"')
    if not settings.unsubscribe_secret:
        raise ConfigError("FEEDS_UNSUBSCRIBE_SECRET is not set: it signs every personal link",
                          hint="export FEEDS_UNSUBSCRIBE_SECRET to a long random string")
    folder = settings.paths.templates / "web"
    app = Flask("feeds.web", template_folder=str(folder),
                static_folder=str(folder / "static"), static_url_path="/_web")
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST, MAX_FORM_MEMORY_SIZE=MAX_REQUEST,
                      MAX_FORM_PARTS=MAX_CATEGORIES + 8, SESSION_COOKIE_NAME=None)
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    endpoint = Endpoint(settings, clock)
    app.extensions["feeds.web"] = endpoint
    if settings.web.behind_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    _routes(app, endpoint)
    if site is not None:
        _site(app, site)
    return app


def _routes(app: Flask, endpoint: Endpoint) -> None:
    @app.get("/subscribe")
    def subscribe_form() -> str:
        return render_template("subscribe.html", categories=endpoint.categories())

    @app.post("/subscribe")
    def subscribe() -> str:
        form = _form_from_a_person(endpoint)
        email = read_email(form)
        name = form.get("name", "")
        if len(name) > MAX_NAME:
            raise Refusal(f"Please keep your name under {MAX_NAME} characters.")
        chosen = read_categories(form, endpoint.categories())
        if not form.get("website"):
            endpoint.postman.post(lambda: _subscribe(endpoint, email, clean_name(name), chosen))
        return render_template("message.html", title="Check your inbox", sentence=(
            f"If {email} can join the list, a message with a link to confirm is on its way."))

    @app.route("/confirm", methods=["GET", "POST"])
    def confirm() -> str:
        if request.method == "POST":
            check_form_type()
        token = request.values.get("token", "")
        if not 0 < len(token) <= MAX_TOKEN:
            raise Refusal("This confirmation link is incomplete; please open the link from "
                          "your email again.")
        if request.method == "GET":
            return render_template("confirm.html", token=token)
        member = endpoint.audience().confirm(token)
        if member is None:
            raise Refusal("This confirmation link is unknown or has expired; please subscribe "
                          "again to get a new one.")
        if member.status != "confirmed":
            return render_template("message.html", title="Not subscribed", sentence=(
                f"{member.email} left the list since this link was sent; subscribe again to "
                "come back."), subscribe=True)
        return render_template("message.html", title="You are subscribed", sentence=(
            f"{member.email} will get the next newsletter."),
            preferences=endpoint.personal_token(member.email))

    @app.route("/unsubscribe", methods=["GET", "POST"])
    def unsubscribe() -> str:
        token = request.args.get("token", "")
        address = endpoint.address_of(token)
        if request.method == "GET":
            return render_template("unsubscribe.html", token=token, email=address)
        # RFC 8058: a POST alone is the request; no cookie, session or CSRF token is involved.
        check_form_type()
        endpoint.audience().unsubscribe(address, reason="one-click unsubscribe")
        return render_template("message.html", title="You are unsubscribed", sentence=(
            f"{address} gets no more newsletters from us."), subscribe=True)

    @app.route("/preferences", methods=["GET", "POST"])
    def preferences() -> str:
        token = request.args.get("token", "")
        address = endpoint.address_of(token)
        audience = endpoint.audience()
        member = audience.get(address)
        if member is None or member.status not in ("confirmed", "pending"):
            return render_template("message.html", title="Not subscribed", sentence=(
                f"{address} is not on the list."), subscribe=True)
        offered = {**{c: c for c in member.categories}, **endpoint.categories()}
        if request.method == "POST":
            form = read_form()
            # As bytes: compare_digest refuses a str with anything but ASCII in it.
            sent = form.get("csrf", "").encode("utf-8", "surrogatepass")
            if not hmac.compare_digest(sent, endpoint.csrf(token).encode("ascii")):
                raise Refusal("This form did not come from our page; please open the link from "
                              "your email again.")
            if form.get("action") == "leave":
                audience.unsubscribe(address, reason="left from the preferences page")
                return render_template("message.html", title="You are unsubscribed", sentence=(
                    f"{address} gets no more newsletters from us."), subscribe=True)
            member = audience.choose(address, read_categories(form, offered)) or member
        return render_template(
            "preferences.html", member=member, token=token, csrf=endpoint.csrf(token),
            categories=offered, saved=request.method == "POST",
        )

    @app.get("/manage")
    def manage_form() -> str:
        return render_template("manage.html")

    @app.post("/manage")
    def manage() -> str:
        form = _form_from_a_person(endpoint)
        email = read_email(form)
        if not form.get("website"):
            endpoint.postman.post(lambda: _manage(endpoint, email))
        return render_template("message.html", title="Check your inbox", sentence=(
            f"If {email} is subscribed, a message with a link to manage it is on its way."))

    @app.errorhandler(Refusal)
    def refused(exc: Refusal) -> tuple[str, int]:
        return _error_page(exc.status, exc.sentence)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        status = exc.code or 500
        return _error_page(status, _SENTENCES.get(status, _SENTENCES[400]))

    @app.errorhandler(Exception)
    def failed(exc: Exception) -> tuple[str, int]:
        if isinstance(exc, StateError | sqlite3.OperationalError):
            log.warning("state database busy: %s", exc)
            return _error_page(503, _SENTENCES[503])
        log.exception("request failed")
        return _error_page(500, "Something went wrong on our side; please try again later.")

    @app.after_request
    def headers(response: Response) -> Response:
        if request.endpoint != "site":
            response.headers.update({
                "Content-Security-Policy": "default-src 'none'; style-src 'self'; "
                "script-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
                # Personal links carry tokens: never in a Referer, never in a shared cache.
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            })
        return response


def _subscribe(endpoint: Endpoint, email: str, name: str, categories: frozenset[str]) -> None:
    member, token = endpoint.audience().request(email, name=name, categories=categories)
    if token is not None:
        endpoint.notify("confirm", email, endpoint.link(f"/confirm?token={token}"))
    elif member is not None and member.status == "confirmed":
        _notify_manage(endpoint, member)


def _manage(endpoint: Endpoint, email: str) -> None:
    member = endpoint.audience().get(email)
    if member is not None and member.status == "confirmed":
        _notify_manage(endpoint, member)


def _notify_manage(endpoint: Endpoint, member: Member) -> None:
    token = endpoint.personal_token(member.email)
    endpoint.notify("manage", member.email, endpoint.link(f"/preferences?token={token}"))


def _error_page(status: int, sentence: str) -> tuple[str, int]:
    title = _TITLES.get(status, "Something went wrong" if status >= 500 else "That did not work")
    return render_template("message.html", title=title, sentence=sentence, error=True), status


def _form_from_a_person(endpoint: Endpoint) -> MultiDict[str, str]:
    """A subscribe or manage form, within the client's rate limit."""
    if not endpoint.limit.allow(client_of(request.remote_addr)):
        raise Refusal(_SENTENCES[429], 429)
    return read_form()


def _site(app: Flask, output: Path) -> None:
    """The built site at /, for a local preview; the endpoint's routes come first."""
    root = output.resolve()

    @app.get("/", endpoint="site")
    @app.get("/<path:path>", endpoint="site")
    def site(path: str = "") -> Response:
        # os.path.isdir, not Path.is_dir: a name too long for the file system is no folder
        # (a 404), where Path.is_dir raised and gave a 500.
        if path == "" or path.endswith("/") or os.path.isdir(root / path):
            path = path.rstrip("/") + "/index.html" if path else "index.html"
        try:
            return send_from_directory(root, path)
        except NotFound as exc:
            raise Refusal(_SENTENCES[404], 404) from exc


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the endpoint and the built site through waitress until interrupted. Without
    `[web] public_url`, a loopback host previews with links to itself."""
    import waitress

    if not settings.web.public_url and is_loopback(host):
        settings = replace(settings, web=replace(settings.web, public_url=f"http://{host}:{port}"))
    app = create_app(settings, site=settings.paths.output)
    log.info("serving on http://%s:%d", host, port)
    try:
        waitress.serve(app, host=host, port=port, ident="digest-feeds")
    except ValueError as exc:  # waitress's word for a host it cannot resolve
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc}", hint="give --host an address of this machine"
        ) from None
    except OSError as exc:  # the port taken by another program, or one only root may use
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="give --port a free port",
        ) from None


def app_from_env() -> Flask:
    """For other WSGI servers: `gunicorn 'feeds.web:app_from_env()'`, reading the config file
    named by FEEDS_CONFIG (and the secrets from the environment, as the CLI does)."""
    path = os.environ.get(CONFIG_ENV)
    return create_app(load_settings(Path(path) if path else None))
