"""The audience in the state database: consent, leaving, the operator's list, and what a send
takes from it."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import NOW, SAMPLE_DIGESTS, Clock
from smtp_fixtures import SECRET, SmtpServer, smtp_server

from feeds.audience import Audience
from feeds.cli import cli
from feeds.errors import ConfigError
from feeds.ledger import Ledger
from feeds.roster import import_list, sync_list
from feeds.send import Issues
from feeds.site import render_site
from feeds.subscribers import parse_subscribers

__all__ = ["smtp_server"]
ENV = {"FEEDS_UNSUBSCRIBE_SECRET": SECRET, "FEEDS_SMTP_PASSWORD": ""}



@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audience(tmp_path: Path, clock: Clock) -> Audience:
    found = Audience.open(tmp_path / "state" / "feeds.sqlite3", clock=clock)
    return found


def test_a_web_subscriber_is_pending_until_the_token_confirms_them(audience: Audience) -> None:
    member, token = audience.request("Ada@Example.org", name="Ada", categories=frozenset({"CV"}))

    assert member is not None and member.status == "pending" and token
    assert audience.recipients().subscribers == ()
    confirmed = audience.confirm(token)
    assert confirmed is not None and confirmed.status == "confirmed"
    assert confirmed.consented == NOW
    (person,) = audience.recipients().subscribers
    assert (person.email, person.categories) == ("Ada@Example.org", frozenset({"CV"}))


def test_a_token_is_stored_hashed_works_twice_and_expires_after_72_hours(
    audience: Audience, clock: Clock, tmp_path: Path
) -> None:
    _, token = audience.request("ada@example.org")
    assert token is not None
    raw = (tmp_path / "state" / "feeds.sqlite3").read_bytes()
    assert token.encode() not in raw
    assert audience.confirm(token) is not None
    assert audience.confirm(token) is not None  # a scanner used it first: still harmless
    _, later = audience.request("bob@example.org")
    assert later is not None
    clock.now = NOW + timedelta(hours=73)
    assert audience.confirm(later) is None
    assert audience.confirm("forged") is None
    assert audience.get("bob@example.org").status == "pending"  # type: ignore[union-attr]


def test_a_confirmation_link_does_not_bring_back_someone_who_left(audience: Audience) -> None:
    _, token = audience.request("ada@example.org")
    assert token is not None
    audience.confirm(token)
    assert audience.unsubscribe("ada@example.org", reason="one-click")
    assert audience.unsubscribe("ada@example.org")  # idempotent
    assert audience.confirm(token) is not None
    assert audience.get("ada@example.org").status == "unsubscribed"  # type: ignore[union-attr]


def test_someone_who_left_can_subscribe_again_themselves(audience: Audience) -> None:
    audience.add("ada@example.org")
    audience.unsubscribe("ada@example.org")
    member, token = audience.request("ada@example.org", categories=frozenset({"CL"}))
    assert member is not None and member.status == "pending" and token
    assert audience.confirm(token).status == "confirmed"  # type: ignore[union-attr]


def test_a_confirmed_or_suppressed_address_gets_no_new_token(audience: Audience) -> None:
    audience.add("ada@example.org", categories=frozenset({"CV"}))
    member, token = audience.request("ada@example.org", categories=frozenset({"LG"}))
    assert token is None and member is not None and member.categories == {"CV"}
    audience.add("bob@example.org")
    assert audience.suppress("bob@example.org", "550 5.1.1 no such user")
    member, token = audience.request("bob@example.org")
    assert token is None and member is not None and member.status == "suppressed"


def test_no_more_than_three_notices_a_day_reach_one_address(
    audience: Audience, clock: Clock
) -> None:
    assert [audience.may_notify("ada@example.org") for _ in range(4)] == [True] * 3 + [False]
    assert audience.may_notify("ADA@example.org") is False
    assert audience.may_notify("bob@example.org") is True
    clock.now = NOW + timedelta(hours=25)
    assert audience.may_notify("ada@example.org") is True


def test_addresses_never_confirmed_are_forgotten_after_a_week(
    audience: Audience, clock: Clock
) -> None:
    audience.request("ada@example.org")
    audience.add("bob@example.org")
    clock.now = NOW + timedelta(days=6)
    assert audience.forget_unconfirmed() == 0
    clock.now = NOW + timedelta(days=8)
    assert audience.forget_unconfirmed() == 1
    assert [m.email for m in audience.members()] == ["bob@example.org"]


# -- the operator's list ------------------------------------------------------------------


def rows(*lines: str) -> str:
    return "email,name,categories\n" + "".join(f"{line}\n" for line in lines)


def test_a_list_subscribes_confirmed_and_updates_its_own_rows(audience: Audience) -> None:
    report = import_list(
        audience, parse_subscribers(rows("ada@example.org,Ada,CV", "b@example.org,,"))
    )
    assert (report.added, report.updated) == (2, 0)
    report = import_list(audience, parse_subscribers(rows("ada@example.org,Ada L,CV CL")))
    assert (report.added, report.updated) == (0, 1)
    ada = audience.get("ada@example.org")
    assert ada is not None and (ada.name, ada.categories, ada.source) == (
        "Ada L", frozenset({"CV", "CL"}), "csv"
    )


def test_a_stale_list_row_never_resubscribes_someone_who_left_on_the_web(
    audience: Audience,
) -> None:
    import_list(audience, parse_subscribers(rows("ada@example.org,Ada,")))
    audience.unsubscribe("ada@example.org", reason="one-click")
    report = import_list(audience, parse_subscribers(rows("ada@example.org,Ada,")), prune=True)
    assert report.kept == ["2: ada@example.org is unsubscribed"]
    assert audience.get("ada@example.org").status == "unsubscribed"  # type: ignore[union-attr]


def test_a_web_subscriber_keeps_their_own_choices_against_the_list(audience: Audience) -> None:
    _, token = audience.request("ada@example.org", categories=frozenset({"RO"}))
    audience.confirm(token or "")
    import_list(audience, parse_subscribers(rows("ada@example.org,Ada,CV")), prune=True)
    ada = audience.get("ada@example.org")
    assert ada is not None and ada.categories == {"RO"} and ada.source == "web"


@pytest.mark.parametrize("text", ["", "email,name,categories\n", "not-an-address,,\nx@,,\n"])
def test_an_empty_or_all_invalid_list_changes_nobody(audience: Audience, text: str) -> None:
    import_list(audience, parse_subscribers(rows("ada@example.org,,", "b@example.org,,")))
    with pytest.raises(ConfigError, match="no valid subscriber; nobody was changed"):
        import_list(audience, parse_subscribers(text), prune=True)
    assert len(audience.recipients().subscribers) == 2


def test_a_list_with_no_valid_row_says_why_at_the_first_bad_row(audience: Audience) -> None:
    text = "email;name;categories\nada@example.org;Ada;CV\nbob@example.org;Bob;CV\n"
    with pytest.raises(ConfigError) as caught:
        import_list(audience, parse_subscribers(text, source="list.csv"), prune=True)
    assert str(caught.value).startswith(
        "list.csv:1: invalid email address 'email;name;categories': "
    )
    assert "no valid subscriber; nobody was changed (2 more row(s) like it;" in str(caught.value)


def test_rows_gone_from_the_list_leave_but_a_typo_unsubscribes_nobody(audience: Audience) -> None:
    import_list(audience, parse_subscribers(rows("ada@example.org,,", "b@example.org,,")))
    typo = import_list(
        audience, parse_subscribers(rows("ada@example.org,,", "b@example,,")), prune=True
    )
    assert typo.removed == 0 and len(audience.recipients().subscribers) == 2
    gone = import_list(audience, parse_subscribers(rows("ada@example.org,,")), prune=True)
    assert gone.removed == 1
    b = audience.get("b@example.org")
    assert b is not None and (b.status, b.reason) == (
        "unsubscribed", "removed from subscribers.csv"
    )


def test_a_pending_web_address_the_list_confirms_leaves_with_its_row(audience: Audience) -> None:
    audience.request("ada@example.org")  # typed into the form, never confirmed
    import_list(audience, parse_subscribers(rows("ada@example.org,Ada,", "b@example.org,,")))
    assert audience.get("ada@example.org").status == "confirmed"  # type: ignore[union-attr]
    # The row was their only consent: taking it away takes them off.
    gone = import_list(audience, parse_subscribers(rows("b@example.org,,")), prune=True)
    assert gone.removed == 1
    assert audience.get("ada@example.org").status == "unsubscribed"  # type: ignore[union-attr]


def test_an_unsubscribe_after_the_list_removed_someone_keeps_them_out_when_the_row_returns(
    audience: Audience,
) -> None:
    both = parse_subscribers(rows("ada@example.org,,", "bob@example.org,,"))
    import_list(audience, both)
    import_list(audience, parse_subscribers(rows("bob@example.org,,")), prune=True)
    # Their one-click link from an earlier newsletter: their own choice, recorded as such.
    assert audience.unsubscribe("ada@example.org", reason="one-click")
    report = import_list(audience, both, prune=True)
    assert report.kept == ["2: ada@example.org is unsubscribed"]
    ada = audience.get("ada@example.org")
    assert ada is not None and (ada.status, ada.reason) == ("unsubscribed", "one-click")


# -- the command line and a run -------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, smtp_server: SmtpServer) -> Path:
    (tmp_path / "digests").mkdir()
    for name in ("2021-06-17.txt", "2022-08-13.txt"):
        shutil.copy(SAMPLE_DIGESTS / name, tmp_path / "digests" / name)
    (tmp_path / "feeds.toml").write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
        "max_attempts = 1\n"
        '[newsletter]\nunsubscribe_url = "https://digest.example.org/u?token={token}"\n',
        encoding="utf-8",
    )
    return tmp_path


def feeds(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(project / "feeds.toml"), *args], env=ENV)


def test_the_operator_adds_lists_exports_and_removes_subscribers(project: Path) -> None:
    added = feeds(project, "subscribers", "add", "Ada@example.org", "--categories", "CV CL")
    assert added.exit_code == 0
    assert feeds(project, "subscribers", "add", "bad address").exit_code == 1
    listed = feeds(project, "subscribers", "list", "--json")
    (ada,) = json.loads(listed.stdout)
    assert (ada["email"], ada["status"], ada["categories"], ada["source"]) == (
        "Ada@example.org", "confirmed", ["CL", "CV"], "cli"
    )
    out = project / "backup.csv"
    assert feeds(project, "subscribers", "export", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8") == (
        '"email","name","categories","status"\n"Ada@example.org","","CL CV","confirmed"\n'
    )
    assert out.stat().st_mode & 0o777 == 0o600
    # `-` is standard output, as without a file (it wrote a file named `-`).
    dashed = feeds(project, "subscribers", "export", "-")
    assert (dashed.exit_code, dashed.stdout) == (0, out.read_text(encoding="utf-8"))
    assert not (project / "-").exists() and not Path("-").exists()
    # An address may start with `#` (a comment in a list file): it survives the round trip.
    assert feeds(project, "subscribers", "add", "#news@example.org").exit_code == 0
    assert feeds(project, "subscribers", "export", str(out)).exit_code == 0
    back = parse_subscribers(out.read_text(encoding="utf-8"))
    assert [s.email for s in back.subscribers] == ["#news@example.org", "Ada@example.org"]
    assert back.problems == ()
    # Written by hand, unquoted, the same line is a comment.
    assert parse_subscribers("#news@example.org,,\nada@example.org,,\n").subscribers[0].line == 2
    assert feeds(project, "subscribers", "remove", "ada@example.org").exit_code == 0
    assert "unsubscribed" in feeds(project, "subscribers", "list").stdout
    assert feeds(project, "subscribers", "remove", "nobody@example.org").exit_code == 1


def test_an_unsubscribe_stops_the_next_send_to_that_person(
    project: Path, smtp_server: SmtpServer
) -> None:
    for who in ("ada@example.org", "bob@example.org"):
        assert feeds(project, "subscribers", "add", who).exit_code == 0
    assert feeds(project, "run").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}
    with Audience.open(project / "state" / "feeds.sqlite3") as audience:
        audience.unsubscribe("bob@example.org", reason="one-click")
    shutil.copy(SAMPLE_DIGESTS / "2021-03-30.txt", project / "digests" / "2024-01-01.txt")
    (project / "digests" / "2024-01-01.txt").write_text(
        "date: 2024-01-01\n" + (SAMPLE_DIGESTS / "2021-03-30.txt").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    assert feeds(project, "run").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 2, "bob@example.org": 1}


def test_an_emptied_list_file_loses_nobody_their_issue(
    project: Path, smtp_server: SmtpServer
) -> None:
    """Hardening 1: a list rewritten as empty at the start of a run used to cancel the newest
    issue for everyone, for good."""
    csv = project / "subscribers.csv"
    csv.write_text(rows("ada@example.org,,", "bob@example.org,,"), encoding="utf-8")
    assert feeds(project, "build").exit_code == 0
    state = project / "state" / "feeds.sqlite3"
    with Audience.open(state) as audience:
        sync_list(audience, csv)
    # The newest issue is queued for both, as a run stopped before sending leaves it.
    ledger = Ledger.open(state)
    try:
        ledger.queue(Issues.published(state).refs, ["ada@example.org", "bob@example.org"])
        assert ledger.counts()["pending"] == 2
    finally:
        ledger.close()
    csv.write_text("", encoding="utf-8")

    failed = feeds(project, "run")
    assert failed.exit_code == 1
    (line,) = [line for line in failed.output.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {csv}: the subscriber list has no valid subscriber")
    # The list changed nobody, and nobody waits for it to be fixed: the issue went out.
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}
    ledger = Ledger.open(state)
    try:
        assert ledger.counts()["sent"] == 2 and ledger.counts()["cancelled"] == 0
    finally:
        ledger.close()
    # Every run says so until the list is fixed, and sends nothing twice.
    assert feeds(project, "run").exit_code == 1
    csv.write_text(rows("ada@example.org,,", "bob@example.org,,"), encoding="utf-8")
    assert feeds(project, "run").exit_code == 0
    assert smtp_server.handler.copies() == {"ada@example.org": 1, "bob@example.org": 1}


def test_the_site_offers_the_newsletter_form_only_with_an_endpoint(tmp_path: Path) -> None:
    from dataclasses import replace

    from lxml import html

    from feeds.assemble import assemble
    from feeds.config import Settings, WebSettings
    from feeds.parse import parse_file

    base = Settings()
    digest = parse_file(SAMPLE_DIGESTS / "2021-03-30.txt", tz=base.site.tz)
    ctx, _ = assemble([digest], {}, {})
    plain = render_site(ctx, base)["index.html"]
    assert b"<form" not in plain
    web = replace(base, web=WebSettings(public_url="https://digest.example.org/list"))
    page = html.fromstring(render_site(ctx, web)["index.html"])
    (form,) = page.xpath("//form")
    assert (form.get("method"), form.get("action")) == (
        "post", "https://digest.example.org/list/subscribe"
    )
    names = {field.get("name") for field in form.xpath(".//input")}
    assert names == {"email", "name", "categories", "website"}
    codes = {box.get("value") for box in form.xpath(".//input[@name='categories']")}
    assert codes == {i.category for i in digest.items if i.category}
    # Every field has its label; the honeypot is hidden from people and from screen readers.
    for field in form.xpath(".//input[@id]"):
        assert page.xpath(f"//label[@for='{field.get('id')}']")
    assert form.xpath(".//p[@class='website']/@aria-hidden") == ["true"]


def test_every_newsletter_carries_the_endpoints_links_in_both_parts() -> None:
    from dataclasses import replace
    from email import message_from_bytes, policy

    from feeds.config import Settings, WebSettings
    from feeds.parse import parse_file
    from feeds.personalize import Job, Messages
    from feeds.subscribers import Subscriber
    from feeds.unsubscribe import make_token

    base = Settings()
    settings = replace(
        base, web=WebSettings(public_url="https://digest.example.org/list"),
        unsubscribe_secret=SECRET,
    )
    digest = parse_file(SAMPLE_DIGESTS / "2022-08-13.txt", tz=base.site.tz)
    ada = Subscriber("ada@example.org", "Ada", frozenset(), 1)
    data = Messages(settings, {digest.id: digest}, now=NOW).build(
        Job(digest.id, ada, "<x@example.org>")
    )
    assert data is not None
    msg = message_from_bytes(data, policy=policy.default)
    token = make_token("ada@example.org", list_id=settings.newsletter.list_id, secret=SECRET)
    leave = f"https://digest.example.org/list/unsubscribe?token={token}"
    choose = f"https://digest.example.org/list/preferences?token={token}"
    assert f"<{leave}>" in str(msg["List-Unsubscribe"])
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for kind in ("plain", "html"):
        body = msg.get_body((kind,))
        assert body is not None
        text = body.get_content()
        assert leave in text and choose in text, kind


def test_an_exported_list_taken_back_subscribes_only_the_confirmed(
    project: Path, tmp_path: Path
) -> None:
    for who in ("ada@example.org", "bob@example.org"):
        assert feeds(project, "subscribers", "add", who).exit_code == 0
    assert feeds(project, "subscribers", "remove", "bob@example.org").exit_code == 0
    backup = tmp_path / "backup.csv"
    assert feeds(project, "subscribers", "export", str(backup)).exit_code == 0

    fresh = Audience.open(tmp_path / "fresh" / "feeds.sqlite3")
    try:
        from feeds.subscribers import load_subscribers

        report = import_list(fresh, load_subscribers(backup))
        assert report.added == 1
        assert [m.email for m in fresh.members("confirmed")] == ["ada@example.org"]
        assert fresh.get("bob@example.org") is None
        assert report.problems == ["3: unsubscribed: not subscribed again"]
    finally:
        fresh.close()


def test_a_stranger_typing_a_leavers_address_gets_them_no_mail_from_the_list(
    audience: Audience,
) -> None:
    import_list(audience, parse_subscribers(rows("ada@example.org,Ada,")))
    audience.unsubscribe("ada@example.org", reason="one-click")
    audience.request("ada@example.org")  # someone else, on the web form
    report = import_list(audience, parse_subscribers(rows("ada@example.org,Ada,CV")), prune=True)
    assert report.kept == ["2: ada@example.org is pending"]
    assert audience.recipients().subscribers == ()


def test_a_row_the_list_removed_comes_back_with_the_list(audience: Audience) -> None:
    both = parse_subscribers(rows("ada@example.org,,", "bob@example.org,,"))
    import_list(audience, both)
    import_list(audience, parse_subscribers(rows("ada@example.org,,")), prune=True)
    assert audience.get("bob@example.org").status == "unsubscribed"  # type: ignore[union-attr]
    import_list(audience, both, prune=True)
    assert len(audience.recipients().subscribers) == 2


def test_a_list_file_still_being_written_removes_nobody_until_it_settles(
    audience: Audience, tmp_path: Path
) -> None:
    import os
    import time

    csv = tmp_path / "subscribers.csv"
    csv.write_text(rows("ada@example.org,,", "bob@example.org,,"), encoding="utf-8")
    sync_list(audience, csv)
    csv.write_text(rows("ada@example.org,,"), encoding="utf-8")  # half written, just now
    report = sync_list(audience, csv)
    assert report is not None and report.removed == 0
    assert len(audience.recipients().subscribers) == 2
    settled = time.time() - 60
    os.utime(csv, (settled, settled))
    report = sync_list(audience, csv)
    assert report is not None and report.removed == 1
    assert sync_list(audience, csv) is None
