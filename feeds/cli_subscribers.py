"""`feeds subscribers`: the operator's commands over the subscribers table."""

from __future__ import annotations

import json
from pathlib import Path

import click

from feeds.session import Failed, PathArg, Session, user_errors


@click.group()
def subscribers() -> None:
    """List and change the subscribers kept in the state database.

    Subscribers join and leave on the web (`feeds serve`); these commands are the operator's.
    A subscriber list file ([paths] subscribers, a CSV) is taken in by every run when it
    changed; `import` takes in any CSV once.

    \b
    Example:
        feeds subscribers add ada@example.org --categories "CV CL"
    """


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print every field as JSON.")
@click.option(
    "--status", type=click.Choice(["pending", "confirmed", "unsubscribed", "suppressed"]),
    default=None, help="Only subscribers in this state.",
)
@click.pass_obj
def subscribers_list(obj: Session, as_json: bool, status: str | None) -> None:
    """Print the subscribers: address, state, categories, and why they left.

    \b
    Example:
        feeds subscribers list --status suppressed
    """

    with obj.audience() as audience:
        members = audience.members(status)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps([m.as_dict() for m in members], ensure_ascii=False, indent=2))
        return
    for m in members:
        codes = " ".join(sorted(m.categories)) or "all"
        when = m.left_at or m.consented or m.created
        why = f"  {m.reason}" if m.reason and m.status != "confirmed" else ""
        click.echo(f"{m.email}  {m.status}  {codes}  {m.source}  {when:%Y-%m-%d}{why}")
    counts = {s: sum(m.status == s for m in members) for s in ("confirmed", "pending")}
    click.echo(f"{len(members)} subscribers, {counts['confirmed']} confirmed", err=True)


@subscribers.command("add")
@click.argument("address")
@click.option("--categories", default="", help='Category codes, e.g. "CV CL"; none: all.')
@click.option("--name", default="", help="The name to address them by.")
@click.pass_obj
def subscribers_add(obj: Session, address: str, categories: str, name: str) -> None:
    """Subscribe ADDRESS, confirmed (you vouch for it), even if it had left before.

    \b
    Example:
        feeds subscribers add ada@example.org --categories "CV CL" --name Ada
    """
    from feeds.subscribers import clean_name, normalize_email, parse_categories

    email = normalize_email(address.strip())
    if not isinstance(email, str):
        raise Failed(f"invalid address {address!r}: {email.reason}")
    codes = parse_categories(categories)
    if codes is None:
        raise Failed(f"invalid categories {categories!r}")
    with obj.audience() as audience:
        member = audience.add(email, name=clean_name(name), categories=codes)
    click.echo(f"{member.email} confirmed ({' '.join(sorted(member.categories)) or 'all'})")


@subscribers.command("remove")
@click.argument("address")
@click.pass_obj
def subscribers_remove(obj: Session, address: str) -> None:
    """Unsubscribe ADDRESS. It is kept on record as unsubscribed, so that no stale list row
    subscribes it again.

    \b
    Example:
        feeds subscribers remove ada@example.org
    """

    with obj.audience() as audience:
        if not audience.remove(address.strip()):
            raise Failed(f"{address.strip()} is not subscribed")
    click.echo(f"{address.strip()} unsubscribed")


@subscribers.command("unsuppress")
@click.argument("address")
@click.pass_obj
def subscribers_unsuppress(obj: Session, address: str) -> None:
    """Mail ADDRESS again after its server refused it (once the cause is fixed).

    \b
    Example:
        feeds subscribers unsuppress ada@example.org
    """

    with obj.audience() as audience:
        if not audience.unsuppress(address.strip()):
            raise Failed(f"{address.strip()} is not suppressed")
    click.echo(f"{address.strip()} confirmed again")


@subscribers.command("import")
@click.argument("file", type=PathArg(dir_okay=False, path_type=Path))
@click.pass_obj
def subscribers_import(obj: Session, file: Path) -> None:
    """Take in a CSV of subscribers (email,name,categories), each confirmed.

    Nobody who unsubscribed or was suppressed is subscribed again; a file with no valid row
    changes nobody. Rows that cannot be read are reported with their line.

    \b
    Example:
        feeds subscribers import readers.csv
    """
    from feeds.roster import import_list
    from feeds.subscribers import load_subscribers

    with obj.audience() as audience:
        report = import_list(audience, load_subscribers(file))
    for note in report.notes(file):
        click.echo(f"warning: {note}", err=True)
    kept = len(report.kept)
    click.echo(f"{report.added} added, {report.updated} updated, {kept} kept as they were")


@subscribers.command("export")
@click.argument(
    "file", type=PathArg(dir_okay=False, allow_dash=True, path_type=Path), required=False
)
@click.pass_obj
def subscribers_export(obj: Session, file: Path | None) -> None:
    """Write every subscriber as CSV (to FILE, or standard output without one or with -):
    email, name, categories, status. `import` takes the confirmed ones back.

    \b
    Example:
        feeds subscribers export backup.csv
    """
    import csv
    import io

    with obj.audience() as audience:
        members = audience.members()
    out = io.StringIO()
    # Every field quoted: an address may start with `#`, which unquoted reads as a comment.
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["email", "name", "categories", "status"])
    for m in members:
        writer.writerow([m.email, m.name, " ".join(sorted(m.categories)), m.status])
    if file is None or str(file) == "-":
        click.echo(out.getvalue(), nl=False)
        return
    from feeds.output import write_private

    with user_errors():
        write_private(file, out.getvalue().encode("utf-8"))
    click.echo(f"wrote {len(members)} subscribers to {file}", err=True)
