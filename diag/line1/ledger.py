"""What line-1 automation did, per ticket and per standard change: ``DATA/line1.db`` (SQLite).

``tickets`` remembers every person's ticket seen (so a restart never answers one twice) with its triage: the
KB entry, typical or not, the line, when diag first answered, whether line-1 automation resolved it and whether
the requester reopened it; ``diag report`` computes its figures from here. ``applications`` is the journal of
standard changes (who: the KB entry and the catalogue entry; the evidence before and after; the result), kept
here in full for the console and, as one record each, in the hash-chained event journal. ``paused`` holds a
lead's switch per catalogue entry.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

FILENAME = "line1.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    key TEXT PRIMARY KEY, desk TEXT NOT NULL, ticket_id TEXT NOT NULL, subject TEXT NOT NULL,
    requester TEXT NOT NULL, filed_at REAL NOT NULL, seen_at REAL NOT NULL, first_response_at REAL,
    state TEXT NOT NULL, kb_entry TEXT, classification TEXT, line TEXT, host TEXT, sla_due REAL,
    resolved_at REAL, resolved_by_line1 INTEGER NOT NULL DEFAULT 0, reopened INTEGER NOT NULL DEFAULT 0,
    reason TEXT, answered_ref TEXT
);
CREATE TABLE IF NOT EXISTS applications (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, ticket_key TEXT, kb_entry TEXT, change_id TEXT NOT NULL,
    host TEXT NOT NULL, params TEXT NOT NULL, result TEXT NOT NULL, reason TEXT NOT NULL,
    before TEXT NOT NULL, after TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_change ON applications (change_id, host, ts);
CREATE TABLE IF NOT EXISTS paused (change_id TEXT PRIMARY KEY, by TEXT NOT NULL, at REAL NOT NULL, reason TEXT);
"""

_COLUMNS = frozenset({"state", "kb_entry", "classification", "line", "host", "sla_due", "resolved_at",
                      "resolved_by_line1", "reopened", "reason", "answered_ref", "first_response_at"})

#: A ticket taken but not answered for this long was left by a watcher that died: another may take it (seconds;
#: longer than any diagnosis and standard change take).
STALE_AFTER = 600.0

#: Application results that count against a change's rate limit (it ran something on the host).
RAN = ("verified", "rolled_back", "verify_failed", "action_failed")


class Ledger:
    """The line-1 database of one data directory; safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILENAME
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    # ---- tickets
    def seen(self, key: str) -> bool:
        """Handled, or being handled now. A ticket taken by a watcher that died before answering it (kill -9, a
        power cut) is not: after :data:`STALE_AFTER` it is free again, so no person's ticket goes unanswered."""
        return bool(self._exec(
            "SELECT 1 FROM tickets WHERE key = ? AND NOT (state = 'new' AND first_response_at IS NULL AND seen_at < ?)",
            (key, time.time() - STALE_AFTER),
        ))

    def register(self, key: str, desk: str, ticket_id: str, subject: str, requester: str, filed_at: float) -> bool:
        """Take a ticket; False when another poller has it (or an earlier run handled it)."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO tickets (key, desk, ticket_id, subject, requester, filed_at, seen_at, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'new') ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at"
                " WHERE tickets.state = 'new' AND tickets.first_response_at IS NULL AND tickets.seen_at < ?",
                (key, desk, ticket_id, subject, requester, filed_at, now, now - STALE_AFTER),
            )
            return cur.rowcount == 1

    def forget(self, key: str) -> None:
        """Drop a ticket nobody was answered on yet, so that the next poll tries it again (the desk was down)."""
        self._exec("DELETE FROM tickets WHERE key = ? AND first_response_at IS NULL", (key,))

    def update(self, key: str, **values: Any) -> None:
        if not values:
            return
        bad = set(values) - _COLUMNS
        if bad:
            raise ValueError(f"no ticket column {sorted(bad)[0]!r}")
        cols = ", ".join(f"{k} = ?" for k in values)  # names checked against the schema just above
        self._exec(f"UPDATE tickets SET {cols} WHERE key = ?", (*values.values(), key))  # noqa: S608

    def responded(self, key: str) -> None:
        """The first answer went out now (time to first response); later answers do not move it."""
        self._exec("UPDATE tickets SET first_response_at = ? WHERE key = ? AND first_response_at IS NULL",
                   (time.time(), key))

    def ticket(self, key: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT * FROM tickets WHERE key = ?", (key,))
        return dict(rows[0]) if rows else None

    def tickets(self, since: float = 0.0, state: str | None = None, desk: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM tickets WHERE filed_at >= ?"
        args: tuple[Any, ...] = (since,)
        if state:
            sql, args = sql + " AND state = ?", (*args, state)
        if desk:
            sql, args = sql + " AND desk = ?", (*args, desk)
        return [dict(r) for r in self._exec(sql + " ORDER BY filed_at", args)]

    # ---- standard changes
    def applied(self, ticket_key: str | None, kb_entry: str | None, change_id: str, host: str, params: dict[str, Any],
                result: str, reason: str, before: Any, after: Any) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO applications (ts, ticket_key, kb_entry, change_id, host, params, result, reason, before,"
                " after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), ticket_key, kb_entry, change_id, host, json.dumps(params, ensure_ascii=False), result,
                 reason, json.dumps(before, ensure_ascii=False, default=str),
                 json.dumps(after, ensure_ascii=False, default=str)),
            )
            return int(cur.lastrowid or 0)

    def runs_since(self, change_id: str, host: str, since: float) -> int:
        rows = self._exec(
            "SELECT result FROM applications WHERE change_id = ? AND host = ? AND ts >= ?", (change_id, host, since)
        )
        return sum(1 for r in rows if r["result"] in RAN)

    def applications(self, change_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql = "SELECT * FROM applications"
        args: tuple[Any, ...] = ()
        if change_id:
            sql, args = sql + " WHERE change_id = ?", (change_id,)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [_decode(r) for r in rows]

    def application(self, app_id: int) -> dict[str, Any] | None:
        rows = self._exec("SELECT * FROM applications WHERE id = ?", (app_id,))
        return _decode(rows[0]) if rows else None

    # ---- a lead's pause switch
    def pause(self, change_id: str, by: str, reason: str = "") -> None:
        self._exec("INSERT OR REPLACE INTO paused VALUES (?, ?, ?, ?)", (change_id, by, time.time(), reason))

    def resume(self, change_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM paused WHERE change_id = ?", (change_id,)).rowcount == 1

    def paused(self) -> dict[str, dict[str, Any]]:
        return {r["change_id"]: dict(r) for r in self._exec("SELECT * FROM paused")}


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for k in ("params", "before", "after"):
        d[k] = json.loads(d[k])
    return d
