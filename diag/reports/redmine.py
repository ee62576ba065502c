"""Who handled each ticket, read back from Redmine, for the report's per-engineer figures.

The incident store knows what diag did; the ticket system knows what people did with the ticket: who took it
(``assigned_to``) and who answered first (the first journal entry written by someone other than diag's own API
user). For every incident whose ticket lives in Redmine, :func:`enrich` adds an ``acknowledged`` event by that
person at that time (unless diag's own journal already has a human acknowledgement), so the lead's per-engineer
section counts work done in Redmine too. Read-only: only GETs, with the backend's own key and client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from diag.exporters.tickets.base import TicketError
from diag.model import IncidentEvent as Event
from diag.model import IncidentRow as Row

log = logging.getLogger(__name__)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def handlers(backend: Any, issue_id: str, diag_user: int) -> list[Event]:
    """People's journal entries and the assignee of one issue, as report events (oldest first)."""
    issue = backend._get(f"/issues/{int(issue_id)}.json", f"read issue {issue_id}", include="journals")["issue"]
    out = []
    for j in issue.get("journals") or ():
        user = j.get("user") or {}
        if int(user.get("id", 0)) == diag_user:
            continue  # diag's own notes (occurrences, SLA, closing) are not somebody handling the ticket
        out.append(Event(_ts(j["created_on"]), str(user.get("name", "?")), "acknowledged", {"source": "redmine"}))
    if not out and issue.get("assigned_to"):
        # Assigned but nobody wrote yet: the assignee owns it from the ticket's last update.
        who = str(issue["assigned_to"].get("name", "?"))
        out.append(Event(_ts(issue["updated_on"]), who, "acknowledged", {"source": "redmine", "assigned": True}))
    return out


def enrich(rows: Sequence[Row], backend: Any) -> int:
    """Add Redmine's handling to ``rows`` (those with a Redmine ticket). Returns how many tickets were read.

    A ticket that cannot be read is skipped with a warning; the report still has diag's own figures.
    """
    try:
        me = int(backend._get("/users/current.json", "who is diag's API user")["user"]["id"])
    except TicketError as e:
        log.warning("report: Redmine not read: %s", e)
        return 0
    n = 0
    for r in rows:
        if r.ticket_backend != "redmine" or not r.ticket_id:
            continue
        try:
            events = handlers(backend, r.ticket_id, me)
        except TicketError as e:
            log.warning("report: ticket %s of incident %s not read: %s", r.ticket_id, r.id, e)
            continue
        n += 1
        if events and not any(e.kind == "acknowledged" and e.data.get("source") != "redmine" for e in r.events):
            first = events[0]
            if r.opened_at is not None and first.at < r.opened_at:
                # Redmine keeps whole seconds: a note written in the second the incident opened reads as before it
                first.at = r.opened_at
            r.events.append(first)
            r.events.sort(key=lambda e: e.at)
    return n
