"""SQLite (WAL) storage for incidents, their event journal, the delivery outbox, silences and counters.

One connection, guarded by a lock, used by the engine and the delivery worker of one process. Every change
the engine makes (the incident row, the events that journal it, the outbox intents that deliver it) is one
transaction (:meth:`Store.tx`), so a crash leaves either all of it or none of it. ``synchronous=FULL``: a
committed incident survives a power cut, not only a killed process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from diag import datafiles
from diag.errors import StoreUnavailable
from diag.model import IncidentEvent, IncidentRow

#: pending: seen, damped (not opened yet); open; clearing: gone, waiting for hysteresis and the re-check;
#: resolved; suppressed: a silence or maintenance window held it back; impact: a host behind a failed upstream
#: device (its incident is the parent's); discarded: cleared before it was ever opened.
ACTIVE_STATES = ("pending", "open", "clearing", "suppressed", "impact")
OPEN_STATES = ("open", "clearing")

#: Event kinds that quality reports read (occurrence notes and ticket deliveries do not change the figures).
REPORT_EVENT_KINDS = ("acknowledged", "sla_breach", "escalated", "reopened", "resolved", "opened")

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    ticket_key TEXT NOT NULL,
    host TEXT NOT NULL,
    check_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    source TEXT NOT NULL,
    scope TEXT,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    classification TEXT NOT NULL DEFAULT 'atypical',
    line TEXT NOT NULL DEFAULT 'L2',
    priority TEXT NOT NULL DEFAULT 'normal',
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    opened_at REAL,
    acked_at REAL,
    resolved_at REAL,
    occurrences INTEGER NOT NULL DEFAULT 1,
    parent_id INTEGER REFERENCES incidents(id),
    respond_due REAL,
    resolve_due REAL,
    ticket_backend TEXT,
    ticket_id TEXT,
    ticket_url TEXT,
    doc TEXT NOT NULL DEFAULT '{}'
);
-- At most one live incident per fingerprint; resolved ones stay as history.
CREATE UNIQUE INDEX IF NOT EXISTS incidents_live ON incidents(fingerprint)
    WHERE state IN ('pending', 'open', 'clearing', 'suppressed', 'impact');
CREATE INDEX IF NOT EXISTS incidents_fp ON incidents(fingerprint, id);
CREATE INDEX IF NOT EXISTS incidents_scope ON incidents(scope) WHERE scope IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_parent ON incidents(parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_incident ON events(incident_id, id);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    ticket_key TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, incident_id, id);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    starts REAL NOT NULL,
    ends REAL NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    hosts TEXT NOT NULL DEFAULT '[]',
    checks TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    value REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (name, label)
);
"""

_COLUMNS = (
    "id",
    "fingerprint",
    "ticket_key",
    "host",
    "check_id",
    "subject",
    "source",
    "scope",
    "state",
    "severity",
    "classification",
    "line",
    "priority",
    "first_seen",
    "last_seen",
    "opened_at",
    "acked_at",
    "resolved_at",
    "occurrences",
    "parent_id",
    "respond_due",
    "resolve_due",
    "ticket_backend",
    "ticket_id",
    "ticket_url",
)


@dataclass(slots=True)
class Incident:
    """One incident as stored. Columns are queryable; ``doc`` holds the rest (texts, evidence, hypotheses)."""

    id: int
    fingerprint: str
    ticket_key: str
    host: str
    check_id: str
    subject: str
    source: str
    scope: str | None
    state: str
    severity: str
    classification: str
    line: str
    priority: str
    first_seen: float
    last_seen: float
    opened_at: float | None = None
    acked_at: float | None = None
    resolved_at: float | None = None
    occurrences: int = 1
    parent_id: int | None = None
    respond_due: float | None = None
    resolve_due: float | None = None
    ticket_backend: str | None = None
    ticket_id: str | None = None
    ticket_url: str | None = None
    #: summary, cause, category, labels, evidence (list of Evidence dicts), kb (id, title, instructions, ...),
    #: hypotheses, impact (hosts behind it that are unreachable), suppressed_by, breaches, clear_since.
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return str(self.doc.get("summary", ""))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "doc"}
        out["check"] = out.pop("check_id")
        out.update(self.doc)
        return out


@dataclass(slots=True)
class Event:
    id: int
    incident_id: int
    at: float
    actor: str
    kind: str
    text: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "actor": self.actor, "kind": self.kind, "text": self.text, **self.data}


@dataclass(slots=True)
class Intent:
    """One delivery the outbox owes a ticket system: open, note, close or reopen."""

    id: int
    incident_id: int
    ticket_key: str
    action: str
    payload: dict[str, Any]
    state: str
    attempts: int
    last_error: str | None
    created_at: float
    done_at: float | None


def _marks(n: int) -> str:
    """``?, ?, ?``: only placeholders and the constant column names above are ever put into SQL text."""
    return ", ".join("?" * n)


_LIVE = _marks(len(ACTIVE_STATES))


def _row_incident(row: sqlite3.Row) -> Incident:
    kw = {c: row[c] for c in _COLUMNS}
    return Incident(**kw, doc=json.loads(row["doc"]))


#: SQLite's primary result codes that mean "not now" rather than a wrong statement: busy, locked, read-only,
#: I/O error, disk full, cannot open. A syntax error or a missing table stays a plain sqlite3 error (a bug).
_PASSING = {5, 6, 8, 10, 13, 14}


@contextmanager
def passing_as_unavailable(path: Path) -> Iterator[None]:
    """``StoreUnavailable`` for an outage of the database file (see :data:`_PASSING`); other errors as they are."""
    try:
        yield
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(e, sqlite3.OperationalError) and code is not None and code & 0xFF in _PASSING:
            raise StoreUnavailable(f"incident store {path} unavailable: {e}") from e
        raise


class Store:
    """The incidents database. ``tx()`` gives a cursor inside one IMMEDIATE transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.db = datafiles.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA cache_size=-256")  # KiB: the default 2 MiB page cache is the agent's RSS budget
        with self._lock:
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction; rolled back on any exception. Re-entrant within a thread."""
        with self._lock:
            if self.db.in_transaction:  # nested: part of the caller's transaction
                yield self.db.cursor()
                return
            c = self.db.cursor()
            with passing_as_unavailable(self.path):
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                except BaseException:
                    self.db.rollback()
                    raise
                else:
                    self.db.commit()

    def engine_lock(self) -> Any:
        """The lock the engine holds around each read-decide-write (a thread lock: one process owns SQLite)."""
        return threading.RLock()

    def may_deliver(self) -> bool:
        """Whether this process may drain the outbox now (always, for the embedded single-process store)."""
        return True

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, passing_as_unavailable(self.path):
            return list(self.db.execute(sql, args))

    # ---- read models for the journal feed, the API and reports (the only SQL on these tables outside the engine)
    def report_rows(self, until: float, kinds: Sequence[str] = REPORT_EVENT_KINDS) -> list[IncidentRow]:
        """Every incident first seen before ``until``, with its events of ``kinds`` (in time order)."""
        rows = self.read(
            "SELECT id, host, check_id, subject, state, severity, classification, line, priority, first_seen, "
            "opened_at, acked_at, resolved_at, doc, ticket_backend, ticket_id "
            "FROM incidents WHERE first_seen < ? ORDER BY id",
            (until,),
        )
        out: dict[int, IncidentRow] = {}
        for r in rows:
            doc = json.loads(r[13]) if isinstance(r[13], str) else dict(r[13] or {})
            kb = doc.get("kb") or {}
            out[int(r[0])] = IncidentRow(
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
        marks = ",".join("?" * len(kinds))  # placeholders only: the values are bound
        for e in self.read(
            f"SELECT incident_id, at, actor, kind, data FROM events WHERE kind IN ({marks}) AND at < ? ORDER BY at, id",  # noqa: S608
            (*kinds, until),
        ):
            row = out.get(int(e[0]))
            if row is not None:
                data = json.loads(e[4]) if isinstance(e[4], str) else dict(e[4] or {})
                row.events.append(IncidentEvent(float(e[1]), e[2], e[3], data))
        return list(out.values())

    def events_after(self, after_id: int, limit: int = 1000) -> list[tuple[Any, ...]]:
        """Events newer than ``after_id`` with their incident's host, check and state (for the journal feed):
        ``(event id, incident id, at, actor, kind, text, host, check, state)`` in event order."""
        return [
            tuple(r)
            for r in self.read(
                "SELECT e.id, e.incident_id, e.at, e.actor, e.kind, e.text, i.host, i.check_id, i.state "
                "FROM events e JOIN incidents i ON i.id = e.incident_id WHERE e.id > ? ORDER BY e.id LIMIT ?",
                (after_id, limit),
            )
        ]

    def assignee(self, incident_id: int) -> str | None:
        """Who the incident was last assigned to, if anyone."""
        rows = self.read(
            "SELECT text FROM events WHERE incident_id = ? AND kind = 'assigned' ORDER BY id DESC LIMIT 1",
            (incident_id,),
        )
        return str(rows[0][0]).removeprefix("assigned to ") if rows else None

    def assignees(self, incident_ids: Sequence[int]) -> dict[int, str]:
        """:meth:`assignee` of many incidents in one query (a list page must not ask once per row)."""
        if not incident_ids:
            return {}
        ids = _marks(len(incident_ids))
        latest = f"SELECT MAX(id) FROM events WHERE kind = 'assigned' AND incident_id IN ({ids}) GROUP BY incident_id"  # noqa: S608
        rows = self.read(f"SELECT incident_id, text FROM events WHERE id IN ({latest})", tuple(incident_ids))  # noqa: S608
        return {int(r[0]): str(r[1]).removeprefix("assigned to ") for r in rows}

    # ---- incidents
    def live(self, fingerprint: str) -> Incident | None:
        rows = self.read(
            f"SELECT * FROM incidents WHERE fingerprint = ? AND state IN ({_LIVE})",  # noqa: S608
            (fingerprint, *ACTIVE_STATES),
        )
        return _row_incident(rows[0]) if rows else None

    def latest(self, fingerprint: str) -> Incident | None:
        rows = self.read("SELECT * FROM incidents WHERE fingerprint = ? ORDER BY id DESC LIMIT 1", (fingerprint,))
        return _row_incident(rows[0]) if rows else None

    def get(self, incident_id: int) -> Incident | None:
        rows = self.read("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return _row_incident(rows[0]) if rows else None

    def change_marker(self) -> tuple[int, int, int]:
        """(newest incident id, newest event id, sum of occurrences): moves with every change a reader can see."""
        a = self.read("SELECT COALESCE(MAX(id), 0), COALESCE(SUM(occurrences), 0) FROM incidents")[0]
        b = self.read("SELECT COALESCE(MAX(id), 0) FROM events")[0]
        return int(a[0]), int(b[0]), int(a[1])

    def count(self, fingerprint: str) -> int:
        return int(self.read("SELECT COUNT(*) FROM incidents WHERE fingerprint = ?", (fingerprint,))[0][0])

    def in_scope(self, scope: str) -> list[Incident]:
        rows = self.read(
            f"SELECT * FROM incidents WHERE scope = ? AND state IN ({_LIVE}) ORDER BY id",  # noqa: S608
            (scope, *ACTIVE_STATES),
        )
        return [_row_incident(r) for r in rows]

    def children(self, parent_id: int) -> list[Incident]:
        rows = self.read("SELECT * FROM incidents WHERE parent_id = ? AND state = 'impact' ORDER BY id", (parent_id,))
        return [_row_incident(r) for r in rows]

    def query(self, states: Sequence[str] | None = None, limit: int = 1000) -> list[Incident]:
        if states:
            rows = self.read(
                f"SELECT * FROM incidents WHERE state IN ({_marks(len(states))}) ORDER BY id DESC LIMIT ?",  # noqa: S608
                (*states, limit),
            )
        else:
            rows = self.read("SELECT * FROM incidents ORDER BY id DESC LIMIT ?", (limit,))
        return [_row_incident(r) for r in rows]

    def insert(self, c: sqlite3.Cursor, inc: Incident) -> int:
        cols = [x for x in _COLUMNS if x != "id"]
        c.execute(
            f"INSERT INTO incidents ({','.join(cols)}, doc) VALUES ({_marks(len(cols) + 1)})",  # noqa: S608
            (*(getattr(inc, x) for x in cols), json.dumps(inc.doc)),
        )
        inc.id = int(c.lastrowid or 0)
        return inc.id

    def update(self, c: sqlite3.Cursor, inc: Incident) -> None:
        cols = [x for x in _COLUMNS if x != "id"]
        c.execute(
            f"UPDATE incidents SET {','.join(x + ' = ?' for x in cols)}, doc = ? WHERE id = ?",  # noqa: S608
            (*(getattr(inc, x) for x in cols), json.dumps(inc.doc), inc.id),
        )

    # ---- events
    def event(
        self,
        c: sqlite3.Cursor,
        incident_id: int,
        actor: str,
        kind: str,
        text: str,
        at: float | None = None,
        **data: Any,
    ) -> None:
        c.execute(
            "INSERT INTO events (incident_id, at, actor, kind, text, data) VALUES (?, ?, ?, ?, ?, ?)",
            (incident_id, at if at is not None else time.time(), actor, kind, text, json.dumps(data)),
        )

    def events(self, incident_id: int) -> list[Event]:
        rows = self.read("SELECT * FROM events WHERE incident_id = ? ORDER BY id", (incident_id,))
        return [
            Event(r["id"], r["incident_id"], r["at"], r["actor"], r["kind"], r["text"], json.loads(r["data"]))
            for r in rows
        ]

    # ---- outbox
    def enqueue(
        self, c: sqlite3.Cursor, inc: Incident, action: str, payload: dict[str, Any], at: float | None = None
    ) -> None:
        c.execute(
            "INSERT INTO outbox (incident_id, ticket_key, action, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            (inc.id, inc.ticket_key, action, json.dumps(payload), at if at is not None else time.time()),
        )

    def due_intents(self, limit: int = 100) -> list[Intent]:
        """The first undelivered intent of each incident (later ones wait for it), oldest first."""
        rows = self.read(
            "SELECT * FROM outbox o WHERE state = 'pending' AND id = "
            "(SELECT MIN(id) FROM outbox p WHERE p.incident_id = o.incident_id AND p.state != 'done') "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
        return [_row_intent(r) for r in rows]

    def intents(self, incident_id: int | None = None) -> list[Intent]:
        if incident_id is None:
            rows = self.read("SELECT * FROM outbox ORDER BY id")
        else:
            rows = self.read("SELECT * FROM outbox WHERE incident_id = ? ORDER BY id", (incident_id,))
        return [_row_intent(r) for r in rows]

    def outbox_depth(self) -> dict[str, int]:
        rows = self.read("SELECT state, COUNT(*) FROM outbox WHERE state != 'done' GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}

    # ---- counters (survive restarts, so *_total metrics never go backwards across one)
    def bump(self, c: sqlite3.Cursor, name: str, label: str = "", by: float = 1.0) -> None:
        c.execute(
            "INSERT INTO counters (name, label, value) VALUES (?, ?, ?) "
            "ON CONFLICT(name, label) DO UPDATE SET value = counters.value + excluded.value",
            (name, label, by),
        )

    def counters(self) -> dict[tuple[str, str], float]:
        return {(r[0], r[1]): float(r[2]) for r in self.read("SELECT name, label, value FROM counters")}

    # ---- silences
    def add_silence(
        self, starts: float, ends: float, reason: str, created_by: str, hosts: Sequence[str], checks: Sequence[str]
    ) -> int:
        with self.tx() as c:
            c.execute(
                "INSERT INTO silences (starts, ends, reason, created_by, hosts, checks) VALUES (?, ?, ?, ?, ?, ?)",
                (starts, ends, reason, created_by, json.dumps(list(hosts)), json.dumps(list(checks))),
            )
            return int(c.lastrowid or 0)

    def silences(self, at: float) -> list[dict[str, Any]]:
        rows = self.read("SELECT * FROM silences WHERE starts <= ? AND ends > ? ORDER BY id", (at, at))
        return [
            {
                "id": r["id"],
                "starts": r["starts"],
                "ends": r["ends"],
                "reason": r["reason"],
                "created_by": r["created_by"],
                "hosts": json.loads(r["hosts"]),
                "checks": json.loads(r["checks"]),
            }
            for r in rows
        ]


def _row_intent(r: sqlite3.Row) -> Intent:
    return Intent(
        r["id"],
        r["incident_id"],
        r["ticket_key"],
        r["action"],
        json.loads(r["payload"]),
        r["state"],
        r["attempts"],
        r["last_error"],
        r["created_at"],
        r["done_at"],
    )
