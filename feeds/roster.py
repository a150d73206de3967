"""The subscriber list file (CSV) taken into the subscribers table.

For operators who keep their list in a file: its rows are confirmed subscribers (the operator
vouches for them), taken in when the file changed. Nobody who left (unsubscribed on the web,
suppressed by a bounce) is subscribed again by a stale row, and a list that is empty,
unreadable or has no valid row changes nobody: a damaged file must never cost anyone an issue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from feeds import state
from feeds.audience import Audience, Member, codes, iso
from feeds.errors import ConfigError, display_path
from feeds.subscribers import SubscriberList, load_subscribers

# A subscriber list file changed this recently may still be being written: it waits a run.
SETTLE_SECONDS = 2.0


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    # "line: why the row changed nobody": rows for people who left, for instance.
    kept: list[str] = field(default_factory=list)
    # "line: message" for each row that could not be read.
    problems: list[str] = field(default_factory=list)

    def notes(self, source: Path) -> list[str]:
        """What is worth a line in cron's mail."""
        where = display_path(source)
        return [f"{where}:{problem}" for problem in self.problems] + [
            f"{where}:{kept} (left before: the row changes nobody)" for kept in self.kept
        ]


def import_list(
    audience: Audience, people: SubscriberList, *, prune: bool = False
) -> ImportReport:
    """Take a subscriber list (CSV) into the table, in one transaction.

    New addresses are confirmed (the operator vouches for them); rows of list subscribers
    update their name and categories; someone who unsubscribed or was suppressed stays so,
    and someone who subscribed on the web keeps their own choices. With `prune`, list
    subscribers whose row is gone are unsubscribed, but only from a list whose every row
    is valid: a row with a typo must not unsubscribe anybody. A list with no valid row at
    all changes nobody and raises ConfigError.
    """
    if not people.subscribers:
        # Why, at the first row that says so: a spreadsheet's `;` or tab separators, or a
        # one-row list with a typo, would otherwise leave the operator guessing.
        first = people.errors[0] if people.errors else None
        more = len(people.errors) - 1
        raise ConfigError(
            (f"{first.message}; " if first else "")
            + "the subscriber list has no valid subscriber; nobody was changed",
            path=people.source,
            line=first.line if first else None,
            hint=(f"{more} more row(s) like it; `feeds check` lists every one; " if more > 0
                  else "") + "fix the list, or delete it if you manage subscribers with "
            "`feeds subscribers`",
        )
    report = ImportReport(problems=[
        f"{p.line}: {p.message}" + (" (row skipped)" if p.severity == "error" else "")
        for p in people.problems
    ])
    now = iso(audience.now())
    listed = {p.key for p in people.subscribers}
    with audience.writing() as conn:
        for person in people.subscribers:
            found = audience.get(person.key)
            if found is None:
                conn.execute(
                    "INSERT INTO subscribers (address, email, name, categories, status,"
                    " source, created, consented, updated)"
                    " VALUES (?, ?, ?, ?, 'confirmed', 'csv', ?, ?, ?)",
                    (person.key, person.email, person.name, codes(person.categories),
                     now, now, now),
                )
                report.added += 1
            elif _list_removed(found, people.source):
                # The list took them off itself: the list may put them back.
                conn.execute(
                    "UPDATE subscribers SET name = ?, categories = ?, status = 'confirmed',"
                    " left_at = NULL, reason = NULL, updated = ? WHERE address = ?",
                    (person.name, codes(person.categories), now, person.key),
                )
                report.updated += 1
            elif found.status in ("unsubscribed", "suppressed") or found.left_at:
                # Someone who left, even if a stranger has since typed the address into the
                # web form (pending again), is subscribed only by their own confirmation.
                report.kept.append(f"{person.line}: {person.email} is {found.status}")
            elif found.source == "csv" or found.status == "pending":
                changed = (
                    found.status != "confirmed" or found.name != person.name
                    or found.categories != person.categories
                )
                if changed:
                    # A pending web form confirmed by the list is the list's from now on: its
                    # only consent is the row, and taking the row away must take them off.
                    conn.execute(
                        "UPDATE subscribers SET name = ?, categories = ?, status = 'confirmed',"
                        " source = 'csv', consented = COALESCE(consented, ?), updated = ?"
                        " WHERE address = ?",
                        (person.name, codes(person.categories), now, now, person.key),
                    )
                    report.updated += 1
        if prune and not people.errors:
            gone = [
                address for (address,) in conn.execute(
                    "SELECT address FROM subscribers WHERE source = 'csv'"
                    " AND status IN ('confirmed', 'pending')"
                )
                if address not in listed
            ]
            conn.executemany(
                "UPDATE subscribers SET status = 'unsubscribed', left_at = ?, reason = ?,"
                " updated = ? WHERE address = ?",
                [(now, f"removed from {Path(people.source).name}", now, a) for a in gone],
            )
            report.removed = len(gone)
    return report

def sync_list(audience: Audience, path: Path) -> ImportReport | None:
    """Take in the subscriber list file (CSV) when it changed since it was last taken in;
    None when it is absent or unchanged. Rows gone from the file unsubscribe their list
    subscribers (see `import_list`). Raises ConfigError for an unreadable file or one with
    no valid row, changing nobody."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    mark = f"{path.resolve()} {info.st_size} {info.st_mtime_ns} {info.st_ino}"
    if state.get_meta(audience.conn, "subscriber_list") == mark:
        return None
    people = load_subscribers(path)
    # A list changed a moment ago may still be being written, and a half-written one would
    # unsubscribe the rows it does not show yet: it adds and updates now, and removes
    # nobody until a later run finds it settled.
    after = path.stat()
    same = (after.st_size, after.st_mtime_ns, after.st_ino) == (
        info.st_size, info.st_mtime_ns, info.st_ino
    )
    settled = same and time.time() - info.st_mtime >= SETTLE_SECONDS
    report = import_list(audience, people, prune=settled)
    if settled:
        state.set_meta(audience.conn, "subscriber_list", mark)
    return report


def _list_removed(member: Member, source: str) -> bool:
    return member.status == "unsubscribed" and member.reason == f"removed from {Path(source).name}"
