"""Reading what a report needs from the incident store: incidents opened or seen before the period's end, and
the journal events that matter for quality figures (acknowledgements, SLA breaches, escalations, reopens).

Works on any store with ``read(sql, args)`` (SQLite ``Store`` or ``PgStore``); only SELECTs are issued.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Journal kinds a report reads; the rest (occurrence notes, tickets) do not change the figures.
EVENT_KINDS = ("acknowledged", "sla_breach", "escalated", "reopened", "resolved", "opened")


class Readable(Protocol):
    def read(self, sql: str, args: Any = ()) -> list[Any]: ...


@dataclass(slots=True)
class Event:
    at: float
    actor: str
    kind: str
    data: dict[str, Any]


@dataclass(slots=True)
class Row:
    """One incident as a report sees it."""

    id: int
    host: str
    check: str
    subject: str
    cause: str  # the finding's cause id, else the check: what "the same cause" means in recurrence
    state: str
    severity: str
    classification: str
    line: str
    priority: str
    first_seen: float
    opened_at: float | None
    acked_at: float | None
    resolved_at: float | None
    kb_id: str | None
    reopened: int
    events: list[Event] = field(default_factory=list)
    ticket_backend: str | None = None
    ticket_id: str | None = None


def load(store: Readable, until: float) -> list[Row]:
    """Every incident first seen before ``until``, with its report-relevant events (in time order)."""
    rows = store.read(
        "SELECT id, host, check_id, subject, state, severity, classification, line, priority, first_seen, "
        "opened_at, acked_at, resolved_at, doc, ticket_backend, ticket_id "
        "FROM incidents WHERE first_seen < ? ORDER BY id",
        (until,),
    )
    out: dict[int, Row] = {}
    for r in rows:
        doc = json.loads(r[13]) if isinstance(r[13], str) else dict(r[13] or {})
        kb = doc.get("kb") or {}
        out[int(r[0])] = Row(
            id=int(r[0]),
            host=r[1],
            check=r[2],
            subject=r[3],
            cause=str(doc.get("cause") or r[2]),
            state=r[4],
            severity=r[5],
            classification=r[6],
            line=r[7],
            priority=r[8],
            first_seen=float(r[9]),
            opened_at=r[10],
            acked_at=r[11],
            resolved_at=r[12],
            kb_id=kb.get("id") if isinstance(kb, dict) else None,
            reopened=int(doc.get("reopened", 0)),
            ticket_backend=r[14],
            ticket_id=r[15],
        )
    marks = ",".join("?" * len(EVENT_KINDS))  # placeholders only: the values are bound
    for e in store.read(
        f"SELECT incident_id, at, actor, kind, data FROM events WHERE kind IN ({marks}) AND at < ? ORDER BY at, id",  # noqa: S608
        (*EVENT_KINDS, until),
    ):
        row = out.get(int(e[0]))
        if row is not None:
            data = json.loads(e[4]) if isinstance(e[4], str) else dict(e[4] or {})
            row.events.append(Event(float(e[1]), e[2], e[3], data))
    return list(out.values())
