"""The subscription endpoint: the logic through Flask's test client, the wire through a real
waitress server on 127.0.0.1, the emails through a real SMTP server, and the pages in a real
headless Chromium at phone width.

Each complaint people have about subscription endpoints has a test here: scanners that confirm
or unsubscribe by fetching links, a confirmation that needs two clicks, tokens used up by a
scanner, list bombing, a List-Unsubscribe link that points nowhere, and coming back after
leaving.
"""

from __future__ import annotations

import http.client
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import NOW, SAMPLE_DIGESTS, Clock
from flask import Flask
from flask.testing import FlaskClient
from smtp_fixtures import SECRET, Received, SmtpServer, delivery_settings, smtp_server
from waitress.server import create_server

from feeds.audience import Audience
from feeds.config import Settings
from feeds.errors import ConfigError
from feeds.unsubscribe import make_token
from feeds.web import create_app, published_categories
from feeds.web_forms import MAX_REQUEST

__all__ = ["smtp_server"]
PUBLIC = "https://digest.example.org/list"
ADA = "ada@example.org"



def web_settings(root: Path, server: SmtpServer, public_url: str = PUBLIC, **web: Any) -> Settings:
    base = delivery_settings(root, server, unsubscribe_url=None, max_attempts=1)
    return replace(base, web=replace(base.web, public_url=public_url, **web))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path, smtp_server: SmtpServer) -> Settings:
    return web_settings(tmp_path, smtp_server)


@pytest.fixture
def app(settings: Settings, clock: Clock) -> Flask:
    return create_app(settings, clock=clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def settle(app: Flask) -> None:
    """Wait until the endpoint's background mail work is done."""
    assert app.extensions["feeds.web"].postman.wait(timeout=30)


def status(settings: Settings, email: str) -> str | None:
    with Audience.open(settings.paths.state) as audience:
        member = audience.get(email)
    return member.status if member else None


def text_of(message: Received) -> str:
    body = message.parsed().get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(message: Received, route: str) -> str:
    (link,) = re.findall(r"https?://\S+/" + route + r"\?token=\S+", text_of(message))
    return str(link)


def local(url: str) -> str:
    """The application's path for a public URL: what a proxy at PUBLIC passes on."""
    assert url.startswith(PUBLIC + "/")
    return url[len(PUBLIC):]


def subscribe(
    client: FlaskClient, email: str = ADA, *, client_address: str = "127.0.0.1",
    headers: dict[str, str] | None = None, **form: Any,
) -> Any:
    return client.post("/subscribe", data={"email": email, **form}, headers=headers or {},
                       environ_base={"REMOTE_ADDR": client_address})


def sentence(html: str) -> str:
    (found,) = re.findall(r'<p role="alert" class="error">(.*?)</p>', html, re.S)
    return str(found)


# -- a real server on the wire ----------------------------------------------------------------


@contextmanager
def live(make_app: Callable[[str], Flask]) -> Iterator[tuple[str, Flask]]:
    """waitress on 127.0.0.1, port 0, in a thread; the app is made once the port is known (its
    public URL is the server's own)."""
    holder: dict[str, Flask] = {}

    def wsgi(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    server = create_server(wsgi, host="127.0.0.1", port=0, threads=4)
    base = f"http://127.0.0.1:{server.effective_port}"
    holder["app"] = make_app(base)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield base, holder["app"]
    finally:
        # Closed from the server's own loop: a socket closed under its select() from this
        # thread would fail the loop. With every socket gone, the loop ends.
        def close_all() -> None:
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        server.trigger.pull_trigger(close_all)
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()
        assert not thread.is_alive()


def fetch(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, str]:
    """One request on a fresh connection, no cookies: (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read().decode("utf-8")
    finally:
        conn.close()


def form_post(url: str, body: str) -> tuple[int, http.client.HTTPMessage, str]:
    return fetch("POST", url, body.encode(),
                {"Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture
def server(
    tmp_path: Path, smtp_server: SmtpServer, clock: Clock
) -> Iterator[tuple[str, Flask, Settings]]:
    made: list[Settings] = []

    def make(base: str) -> Flask:
        made.append(web_settings(tmp_path, smtp_server, public_url=base))
        return create_app(made[0], clock=clock)

    with live(make) as (base, app):
        yield base, app, made[0]


# -- subscribing and confirming -----------------------------------------------------------------


@pytest.mark.smtp
def test_subscribing_mails_a_confirmation_whose_link_confirms_over_the_wire(
    server: tuple[str, Flask, Settings], smtp_server: SmtpServer
) -> None:
    base, app, settings = server

    code, _, page = form_post(base + "/subscribe", "email=ada%40example.org&categories=CV")
    settle(app)

    assert code == 200 and "Check your inbox" in page
    (message,) = smtp_server.handler.received
    assert message.recipients == (ADA,)
    assert "Confirm your subscription" in str(message.parsed()["Subject"])
    link = link_in(message, "confirm")
    assert link.startswith(base + "/confirm?token=")
    assert fetch("GET", link)[0] == 200
    assert status(settings, ADA) == "pending"
    token = urlsplit(link).query.removeprefix("token=")
    code, _, page = form_post(base + "/confirm", f"token={token}")
    assert code == 200 and "You are subscribed" in page
    assert status(settings, ADA) == "confirmed"


@pytest.mark.smtp
def test_a_subscription_that_finds_the_state_file_busy_is_tried_again_not_lost(
    settings: Settings, clock: Clock, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import sqlite3

    from feeds import state, web_limits

    status(settings, "nobody@example.org")  # the state file exists, its schema made
    monkeypatch.setattr(state, "BUSY_TIMEOUT", 0.2)
    monkeypatch.setattr(web_limits, "RETRY_DELAY", 0.5)
    app = create_app(settings, clock=clock)
    holder = sqlite3.connect(settings.paths.state, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        answer = subscribe(app.test_client())
        time.sleep(1.0)  # the first try meets the lock (0.2 s), the retry waits 0.5 s
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.status_code == 200
    settle(app)  # the retry too
    assert "the state file is busy; a notice is tried again" in caplog.text
    assert status(settings, ADA) == "pending"
    assert [m.recipients for m in smtp_server.handler.received] == [(ADA,)]


@pytest.mark.smtp
def test_a_relay_that_says_busy_is_not_taken_for_a_busy_state_file(
    settings: Settings, clock: Clock, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from feeds import web_limits

    monkeypatch.setattr(web_limits, "RETRY_DELAY", 0.1)
    smtp_server.handler.rcpt_temporary[ADA] = 10  # "451 4.2.0 Mailbox busy" each time
    app = create_app(settings, clock=clock)
    subscribe(app.test_client())
    settle(app)
    # Sent once, refused once: a retry would mail again and spend the address's daily notices.
    assert "busy" in caplog.text and "tried again" not in caplog.text
    assert smtp_server.handler.rcpt_temporary[ADA] == 10 - 1


@pytest.mark.smtp
def test_the_answer_is_the_same_for_new_pending_and_confirmed_addresses(
    client: FlaskClient, app: Flask, smtp_server: SmtpServer
) -> None:
    first = subscribe(client)
    settle(app)
    again = subscribe(client)
    settle(app)
    # The link's POST confirms (the token may come in the query string or the form).
    client.post(local(link_in(smtp_server.handler.received[0], "confirm")))
    confirmed = subscribe(client)
    settle(app)

    assert first.status_code == again.status_code == confirmed.status_code == 200
    assert first.data == again.data == confirmed.data
    kinds = [str(m.parsed()["Subject"]) for m in smtp_server.handler.received]
    assert kinds[:2] == [kinds[0]] * 2 and kinds[0].startswith("Confirm")
    # A confirmed address is not asked again: it is sent the link to manage its subscription.
    assert kinds[2].startswith("Your subscription")
    link = link_in(smtp_server.handler.received[2], "preferences")
    assert client.get(local(link)).status_code == 200


@pytest.mark.smtp
def test_no_text_a_visitor_typed_goes_into_the_email_but_the_address(
    client: FlaskClient, app: Flask, smtp_server: SmtpServer
) -> None:
    subscribe(client, name="Buy cheap pills at spam.example")
    settle(app)

    (message,) = smtp_server.handler.received
    assert b"spam.example" not in message.data and b"pills" not in message.data
    assert "pills" not in text_of(message)


def test_a_get_of_the_confirm_link_confirms_nobody(
    client: FlaskClient, settings: Settings
) -> None:
    with Audience.open(settings.paths.state) as audience:
        _, token = audience.request(ADA)

    page = client.get(f"/confirm?token={token}")

    assert page.status_code == 200
    assert status(settings, ADA) == "pending"


def test_the_confirm_page_is_one_button_that_a_script_presses(client: FlaskClient) -> None:
    html = client.get("/confirm?token=abc").text

    assert html.count("<form") == 1 and html.count("<button") == 1
    assert 'method="post"' in html and 'name="token" value="abc"' in html
    assert '<script src="_web/confirm.js" defer></script>' in html
    script = client.get("/_web/confirm.js").text
    assert 'getElementById("confirm")' in script and ".submit()" in script


def test_a_confirmation_token_still_works_after_a_get_and_after_a_second_post(
    client: FlaskClient, settings: Settings
) -> None:
    with Audience.open(settings.paths.state) as audience:
        _, token = audience.request(ADA)

    scanned = client.get(f"/confirm?token={token}")
    first = client.post("/confirm", data={"token": token})
    second = client.post("/confirm", data={"token": token})

    assert scanned.status_code == first.status_code == second.status_code == 200
    assert "You are subscribed" in first.text and "You are subscribed" in second.text
    assert status(settings, ADA) == "confirmed"


def test_an_expired_or_unknown_confirmation_link_is_refused_with_a_sentence(
    client: FlaskClient, settings: Settings, clock: Clock
) -> None:
    with Audience.open(settings.paths.state, clock=clock) as audience:
        _, token = audience.request(ADA)
    clock.now += timedelta(hours=73)

    expired = client.post("/confirm", data={"token": token})
    forged = client.post("/confirm", data={"token": "x" * 32})

    assert expired.status_code == forged.status_code == 400
    assert "expired" in sentence(expired.text)
    assert status(settings, ADA) == "pending"


# -- list bombing -------------------------------------------------------------------------------


@pytest.mark.smtp
def test_a_fourth_notice_to_one_address_in_a_day_is_not_sent(
    client: FlaskClient, app: Flask, smtp_server: SmtpServer, clock: Clock
) -> None:
    pages = []
    for _ in range(4):
        pages.append(subscribe(client))
        settle(app)

    assert {p.status_code for p in pages} == {200} and len({p.data for p in pages}) == 1
    assert smtp_server.handler.copies() == {ADA: 3}
    clock.now += timedelta(days=1, seconds=1)
    subscribe(client)
    settle(app)
    assert smtp_server.handler.copies() == {ADA: 4}


@pytest.mark.smtp
def test_the_notices_per_address_are_a_setting(
    tmp_path: Path, smtp_server: SmtpServer, clock: Clock
) -> None:
    app = create_app(web_settings(tmp_path, smtp_server, notices_per_day=1), clock=clock)
    client = app.test_client()
    for _ in range(2):
        subscribe(client)
        settle(app)
    assert smtp_server.handler.copies() == {ADA: 1}


@pytest.mark.smtp
def test_the_honeypot_gets_the_same_page_and_sends_nothing(
    client: FlaskClient, app: Flask, settings: Settings, smtp_server: SmtpServer
) -> None:
    real = subscribe(client, "bob@example.org")
    bot = subscribe(client, website="http://spam.example")
    settle(app)

    assert bot.status_code == 200
    assert bot.text == real.text.replace("bob@example.org", ADA)
    assert smtp_server.handler.copies() == {"bob@example.org": 1}
    assert status(settings, ADA) is None


def test_forms_past_the_rate_limit_get_a_429_page(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    app = create_app(web_settings(tmp_path, smtp_server, requests_per_minute=2))
    client = app.test_client()
    other = app.test_client()

    pages = [subscribe(client, website="x", client_address="192.0.2.1") for _ in range(3)]
    elsewhere = subscribe(other, website="x", client_address="192.0.2.2")

    assert [p.status_code for p in pages] == [200, 200, 429]
    assert "try again in a minute" in sentence(pages[2].text)
    assert elsewhere.status_code == 200


def test_behind_a_proxy_the_limit_counts_the_forwarded_client(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    app = create_app(web_settings(tmp_path, smtp_server, requests_per_minute=1,
                                  behind_proxy=True))
    client = app.test_client()

    def post(client_address: str) -> int:
        return int(subscribe(client, website="x",
                             headers={"X-Forwarded-For": client_address}).status_code)

    assert [post("198.51.100.1"), post("198.51.100.2"), post("198.51.100.1")] == [200, 200, 429]


def test_an_ipv6_client_is_limited_by_its_64_network(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    app = create_app(web_settings(tmp_path, smtp_server, requests_per_minute=2))
    client = app.test_client()
    # A subscriber line has a /64 to itself: an address per request is no way round the limit.
    codes = [
        subscribe(client, website="x", client_address=f"2001:db8:1:2::{n:x}").status_code
        for n in range(1, 4)
    ]
    elsewhere = subscribe(client, website="x", client_address="2001:db8:1:3::1")
    assert codes == [200, 200, 429]
    assert elsewhere.status_code == 200


@pytest.mark.smtp
def test_a_later_form_for_a_pending_address_never_changes_what_an_earlier_link_confirms(
    client: FlaskClient, app: Flask, settings: Settings, smtp_server: SmtpServer
) -> None:
    subscribe(client, name="Ada", categories="CV")
    settle(app)
    (mine,) = smtp_server.handler.received
    # Before Ada clicks, someone else types her address with other choices.
    subscribe(client, client_address="198.51.100.7", name="Call 555 now", categories="RO")
    settle(app)
    assert client.post(local(link_in(mine, "confirm"))).status_code == 200
    with Audience.open(settings.paths.state) as audience:
        member = audience.get(ADA)
    assert member is not None and member.status == "confirmed"
    assert (member.name, member.categories) == ("Ada", frozenset({"CV"}))


def test_a_path_too_long_for_the_file_system_is_a_404_page(
    tmp_path: Path, settings: Settings, clock: Clock
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!DOCTYPE html><title>Home</title>", encoding="utf-8")
    client = create_app(settings, clock=clock, site=site).test_client()
    page = client.get("/" + "a" * 300)
    assert page.status_code == 404 and "Traceback" not in page.text


# -- unsubscribing --------------------------------------------------------------------------------


def confirmed(settings: Settings, email: str = ADA) -> str:
    """Add a confirmed subscriber; their personal (HMAC) token."""
    with Audience.open(settings.paths.state) as audience:
        audience.add(email)
    return make_token(email, list_id=settings.newsletter.list_id, secret=SECRET)


def test_a_get_of_the_unsubscribe_link_unsubscribes_nobody(
    client: FlaskClient, settings: Settings
) -> None:
    token = confirmed(settings)

    page = client.get(f"/unsubscribe?token={token}")

    assert page.status_code == 200 and ADA in page.text
    assert f'action="unsubscribe?token={token}"' in page.text
    assert status(settings, ADA) == "confirmed"


def test_one_click_as_gmail_sends_it_unsubscribes_at_once_and_again_harmlessly(
    server: tuple[str, Flask, Settings]
) -> None:
    base, _, settings = server
    token = confirmed(settings)
    url = f"{base}/unsubscribe?token={token}"

    code, headers, page = form_post(url, "List-Unsubscribe=One-Click")

    assert code == 200 and "You are unsubscribed" in page
    assert headers.get("Set-Cookie") is None
    assert status(settings, ADA) == "unsubscribed"
    assert form_post(url, "List-Unsubscribe=One-Click")[0] == 200
    assert status(settings, ADA) == "unsubscribed"


def test_one_click_accepts_multipart_form_data(
    client: FlaskClient, settings: Settings
) -> None:
    token = confirmed(settings)

    page = client.post(
        f"/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )

    assert page.status_code == 200
    assert status(settings, ADA) == "unsubscribed"


@pytest.mark.smtp
def test_the_list_unsubscribe_link_of_a_sent_newsletter_reaches_a_working_endpoint(
    server: tuple[str, Flask, Settings], smtp_server: SmtpServer, tmp_path: Path
) -> None:
    from feeds.build import build
    from feeds.send import send_due

    base, _, _ = server
    # The newsletter as a subscriber gets it, built and sent by feeds over the live server's
    # state file, with the public URL that a proxy at PUBLIC forwards to the live server.
    settings = web_settings(tmp_path, smtp_server)
    settings.paths.input.mkdir(parents=True)
    shutil.copy(SAMPLE_DIGESTS / "2022-08-13.txt", settings.paths.input)
    assert not build(settings, now=NOW, log=lambda _: None).failed
    confirmed(settings)
    assert send_due(settings, now=NOW).sent == 1

    (message,) = smtp_server.handler.received
    parsed = message.parsed()
    targets = re.findall(r"<([^>]+)>", str(parsed["List-Unsubscribe"]))
    (https,) = [t for t in targets if t.startswith("https://")]
    assert https.startswith(PUBLIC + "/unsubscribe?token=")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    code, _, page = form_post(base + local(https), "List-Unsubscribe=One-Click")
    assert code == 200 and "You are unsubscribed" in page
    assert status(settings, ADA) == "unsubscribed"


@pytest.mark.smtp
def test_subscribing_again_after_unsubscribing_sends_a_new_confirmation_that_works(
    client: FlaskClient, app: Flask, settings: Settings, smtp_server: SmtpServer
) -> None:
    token = confirmed(settings)
    client.post(f"/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"})

    subscribe(client)
    settle(app)

    (message,) = smtp_server.handler.received
    assert str(message.parsed()["Subject"]).startswith("Confirm")
    assert status(settings, ADA) == "pending"
    assert client.post(local(link_in(message, "confirm"))).status_code == 200
    assert status(settings, ADA) == "confirmed"


# -- preferences and manage -----------------------------------------------------------------------


def test_preferences_change_categories_only_with_the_pages_own_form_token(
    client: FlaskClient, settings: Settings
) -> None:
    token = confirmed(settings)
    page = client.get(f"/preferences?token={token}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and csrf is not None

    missing = client.post(f"/preferences?token={token}", data={"categories": "CV"})
    forged = client.post(f"/preferences?token={token}",
                         data={"categories": "CV", "csrf": "0" * 64})
    saved = client.post(f"/preferences?token={token}",
                        data={"categories": ["cv", "LG"], "csrf": csrf.group(1),
                              "action": "save"})

    assert missing.status_code == forged.status_code == 400
    assert saved.status_code == 200 and "Saved." in saved.text
    with Audience.open(settings.paths.state) as audience:
        member = audience.get(ADA)
    assert member is not None and member.categories == frozenset({"CV", "LG"})


def test_leaving_from_the_preferences_page_unsubscribes(
    client: FlaskClient, settings: Settings
) -> None:
    token = confirmed(settings)
    csrf = re.search(r'name="csrf" value="([^"]+)"',
                     client.get(f"/preferences?token={token}").text)
    assert csrf is not None

    page = client.post(f"/preferences?token={token}",
                       data={"csrf": csrf.group(1), "action": "leave"})

    assert page.status_code == 200 and "You are unsubscribed" in page.text
    assert status(settings, ADA) == "unsubscribed"
    again = client.get(f"/preferences?token={token}")
    assert again.status_code == 200 and "is not on the list" in again.text


@pytest.mark.smtp
def test_manage_mails_the_preferences_link_to_subscribers_only(
    client: FlaskClient, app: Flask, settings: Settings, smtp_server: SmtpServer
) -> None:
    confirmed(settings)

    known = client.post("/manage", data={"email": ADA})
    unknown = client.post("/manage", data={"email": "nobody@example.org"})
    settle(app)

    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text.replace("nobody@example.org", ADA)
    (message,) = smtp_server.handler.received
    assert message.recipients == (ADA,)
    link = link_in(message, "preferences")
    assert client.get(local(link)).status_code == 200


@pytest.mark.smtp
def test_a_mail_server_that_is_down_is_logged_and_the_visitor_sees_the_same_page(
    tmp_path: Path, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = web_settings(tmp_path, smtp_server)
    settings = replace(settings, smtp=replace(settings.smtp, port=1))
    app = create_app(settings)

    page = subscribe(app.test_client())
    settle(app)

    assert page.status_code == 200 and "Check your inbox" in page.text
    assert "a notice could not be sent" in caplog.text


# -- bad input ------------------------------------------------------------------------------------

BAD_FORMS = {
    "an address with CR/LF": {"email": "ada@example.org\r\nBcc: victim@example.com"},
    "no address": {"email": ""},
    "not an address": {"email": "ada at example"},
    "a 10 KB address": {"email": "a" * 10_000 + "@example.org"},
    "a 10 KB name": {"email": ADA, "name": "n" * 10_000},
    "an unknown category": {"email": ADA, "categories": "XX"},
    "a category with a newline": {"email": ADA, "categories": "CV\r\nX-Evil: 1"},
}


@pytest.mark.parametrize("form", BAD_FORMS.values(), ids=BAD_FORMS.keys())
def test_bad_subscribe_forms_get_a_400_page_with_one_sentence(
    client: FlaskClient, settings: Settings, form: dict[str, str]
) -> None:
    page = client.post("/subscribe", data=form)

    assert page.status_code == 400
    assert sentence(page.text).endswith(".")
    assert "X-Evil" not in page.headers and "Bcc" not in page.headers
    assert status(settings, ADA) is None


BAD_REQUESTS = {
    "JSON to subscribe": ("POST", "/subscribe", b'{"email": "a@b.org"}', "application/json"),
    "text to one-click": ("POST", "/unsubscribe?token={token}", b"List-Unsubscribe=One-Click",
                          "text/plain"),
    "a forged token": ("POST", "/unsubscribe?token={forged}", b"", None),
    "a truncated token": ("POST", "/unsubscribe?token={truncated}", b"", None),
    "no token": ("GET", "/unsubscribe", b"", None),
    "a token with CR/LF": ("GET", "/preferences?token=a%0D%0ASet-Cookie:x", b"", None),
    "a 10 KB token": ("GET", "/unsubscribe?token=" + "A" * 10_000, b"", None),
    "an empty confirmation": ("POST", "/confirm", b"token=", "application/x-www-form-urlencoded"),
    "a form token that is not ASCII": ("POST", "/preferences?token={token}",
                                       "csrf=ä&action=leave".encode(),
                                       "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("request_", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_get_a_400_page_and_change_nothing(
    client: FlaskClient, settings: Settings, request_: tuple[str, str, bytes, str | None]
) -> None:
    method, path, body, kind = request_
    token = confirmed(settings)
    forged = make_token(ADA, list_id=settings.newsletter.list_id, secret="not ours")
    path = path.format(token=token, forged=forged, truncated=token[:-3])

    page = client.open(path, method=method, data=body, content_type=kind)

    assert page.status_code == 400
    assert sentence(page.text).endswith(".")
    assert "Set-Cookie" not in page.headers
    assert status(settings, ADA) == "confirmed"


def test_a_request_larger_than_the_limit_is_refused_as_a_page(client: FlaskClient) -> None:
    page = client.post("/subscribe", data={"email": ADA, "name": "n" * MAX_REQUEST})

    assert page.status_code == 413
    assert "too large" in sentence(page.text)


def test_unknown_pages_and_methods_are_pages_too(client: FlaskClient) -> None:
    assert client.get("/nowhere").status_code == 404
    assert "no page" in sentence(client.get("/nowhere").text)
    assert client.delete("/subscribe").status_code == 405


def test_pages_carry_no_cookie_and_keep_tokens_out_of_referers(client: FlaskClient) -> None:
    page = client.get("/subscribe")

    assert "Set-Cookie" not in page.headers
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_the_endpoint_needs_a_public_url_and_the_signing_secret(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="public_url"):
        create_app(replace(settings, web=replace(settings.web, public_url=None)))
    with pytest.raises(ConfigError, match="FEEDS_UNSUBSCRIBE_SECRET"):
        create_app(replace(settings, unsubscribe_secret=None))


# -- categories and the site -------------------------------------------------------------------


def test_categories_offered_are_the_built_ones_or_the_five_before_any_build(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    from feeds.build import build

    settings = web_settings(tmp_path, smtp_server)
    before = create_app(settings).test_client().get("/subscribe").text
    settings.paths.input.mkdir()
    shutil.copy(SAMPLE_DIGESTS / "2021-06-17.txt", settings.paths.input)
    assert not build(settings, now=NOW, log=lambda _: None).failed

    found = published_categories(settings.paths.output / "feeds")
    after = create_app(settings).test_client().get("/subscribe").text

    assert re.findall(r'name="categories" value="([^"]+)"', before) == [
        "LG", "CV", "CL", "AS", "RO"
    ]
    assert found and all(code in after for code in found)
    assert re.findall(r'name="categories" value="([^"]+)"', after) == list(found)


def test_the_preview_serves_the_built_site_behind_the_routes(
    tmp_path: Path, settings: Settings
) -> None:
    output = tmp_path / "output"
    (output / "feeds").mkdir(parents=True)
    (output / "index.html").write_text("<h1>Digest</h1>", encoding="utf-8")
    (output / "feeds" / "all.rss").write_text("<rss/>", encoding="utf-8")
    client = create_app(settings, site=output).test_client()

    assert client.get("/").text == "<h1>Digest</h1>"
    assert client.get("/feeds/all.rss").text == "<rss/>"
    assert "Subscribe to the newsletter" in client.get("/subscribe").text
    assert client.get("/../state/feeds.sqlite3").status_code == 404
    assert client.get("/feeds/missing.json").status_code == 404


# -- a person with a phone ----------------------------------------------------------------------

NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"


@pytest.mark.browser
@pytest.mark.smtp
def test_a_phone_walks_subscribe_confirm_preferences_unsubscribe(
    chromium: Any, server: tuple[str, Flask, Settings], smtp_server: SmtpServer,
    artifacts_dir: Path,
) -> None:
    base, app, settings = server
    page = chromium.new_page()
    page.set_viewport_size({"width": 375, "height": 740})
    try:
        page.goto(base + "/subscribe")
        page.get_by_label("Email address").fill(ADA)
        page.get_by_label("计算机视觉 (CV)").check()
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        page.screenshot(path=str(artifacts_dir / "subscribe.png"), full_page=True)
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        settle(app)

        (message,) = smtp_server.handler.received
        # The script presses the one button: opening the link is all a person does.
        page.goto(link_in(message, "confirm"))
        page.get_by_role("heading", name="You are subscribed").wait_for()
        assert status(settings, ADA) == "confirmed"
        page.screenshot(path=str(artifacts_dir / "confirmed.png"), full_page=True)

        page.get_by_role("link", name="Choose your categories or leave").click()
        page.get_by_label("机器学习 (LG)").check()
        page.get_by_role("button", name="Save my categories").click()
        page.get_by_text("Saved.").wait_for()
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        page.screenshot(path=str(artifacts_dir / "preferences.png"), full_page=True)
        with Audience.open(settings.paths.state) as audience:
            member = audience.get(ADA)
        assert member is not None and member.categories == frozenset({"CV", "LG"})

        (leave,) = re.findall(r"Unsubscribe at once: (\S+)", text_of(message))
        page.goto(leave)
        assert status(settings, ADA) == "confirmed"
        page.get_by_role("button", name="Unsubscribe").click()
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        page.screenshot(path=str(artifacts_dir / "unsubscribed.png"), full_page=True)
        assert status(settings, ADA) == "unsubscribed"
    finally:
        page.close()
