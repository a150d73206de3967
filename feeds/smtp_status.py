"""What a refusal says about the address it refuses: the one rule the sender's replies
(`feeds.transport`) and the bounce notifications (`feeds.bounces`) both follow.

Only a refusal about the recipient's mailbox suppresses an address or counts a soft bounce.
The relay's policy (`5.7.1 Relay access denied`, `4.7.1` rate limits, a DMARC `5.7.26`), the
system, the network and the message (`5.3.4` too big, a content filter's `5.7.1`) say nothing
about it: said to every recipient alike, they would take the whole list off in one run.
"""

from __future__ import annotations

import re

# An enhanced status code (RFC 3463): class, subject, detail; not part of a longer dotted
# number (a server's IP address, `10.2.0.5`, names no status).
ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")


def about_the_mailbox(status: str, *, remote: bool = False) -> bool:
    """Whether an enhanced status code (`5.1.1`) is about the recipient's mailbox: subject 2
    (mailbox status: full, disabled), subject 1 (addressing: no such user) but for the sender's
    own address (x.1.7, x.1.8), and subject 0, where the code says nothing more precise. With
    `remote` (a notification about the delivery beyond the relay), subject 4 too: a domain
    that cannot be routed to or reached is the address's; from the relay itself, it is the
    relay's network."""
    _, subject, detail = status.split(".")
    if subject == "1":
        return detail not in ("7", "8")
    return subject in ("0", "2") or (remote and subject == "4")


def reply_about_the_mailbox(stage: str, code: int, text: str) -> bool:
    """Whether a server's refusal of RCPT or of the message is about the mailbox: by its
    enhanced code, else by the reply codes RFC 5321 gives a mailbox at RCPT."""
    found = ENHANCED.search(text)
    if found is not None:
        return about_the_mailbox(".".join(found.groups()))
    return stage == "RCPT" and code in (450, 550, 551, 552, 553)
