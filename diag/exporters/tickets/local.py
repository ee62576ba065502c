"""The embedded ticket store (``tickets: {backend: local}``): tickets, notes and attachments in SQLite.

The default backend, for sites without a ticket system: ``diag incidents list|show`` browse it. It lives in its
own file (``DATA/tickets.sqlite``; ``path:`` to move it), separate from the incident database, so that it
behaves like the external systems: diag's outbox delivers to it and can be interrupted half-way, exactly as
with Redmine. A UNIQUE index on the fingerprint guards against duplicates even if a caller skips ``find``
(``guard_duplicates: false`` drops it; the crash-safety test does that, so that only the outbox's own
search-before-create keeps tickets unique there). A locked or unwritable database is :class:`TicketUnavailable`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from diag import datafiles
from diag.errors import ConfigError
from diag.exporters.tickets.base import (
    BACKENDS,
    Attachment,
    TicketDraft,
    TicketRef,
    TicketRejected,
    TicketUnavailable,
)
from diag.exporters.tickets.options import parse

NAME = "local"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    subject TEXT NOT NULL,
    description TEXT NOT NULL,
    host TEXT NOT NULL,
    severity TEXT NOT NULL,
    priority TEXT NOT NULL,
    line TEXT NOT NULL,
    classification TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    fields TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS tickets_fp ON tickets(fingerprint);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    note_id INTEGER REFERENCES notes(id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content BLOB NOT NULL
);
"""


class LocalTickets:
    """Tickets in a SQLite file. Thread-safe; every operation is one transaction."""

    name = NAME

    def __init__(self, path: Path, guard_duplicates: bool = True, busy_timeout: float = 2.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self.db = datafiles.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA cache_size=-256")  # KiB: the agent's RSS budget is tight
            self.db.executescript(_SCHEMA)
            if guard_duplicates:
                self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS tickets_fp_unique ON tickets(fingerprint)")
        except sqlite3.Error as e:
            raise TicketUnavailable(f"local tickets {path}: {e}") from None

    def _ref(self, ticket_id: int) -> TicketRef:
        return TicketRef(NAME, str(ticket_id), None)

    def _run(self, what: str, fn: Any) -> Any:
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self.db)
                except BaseException:
                    self.db.rollback()
                    raise
                self.db.commit()
                return out
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as e:  # locked, read-only, disk full: the store may work again later
                raise TicketUnavailable(f"local tickets {self.path}: {what}: {e}") from None

    def find(self, fingerprint: str) -> TicketRef | None:
        with self._lock:
            try:
                row = self.db.execute(
                    "SELECT id FROM tickets WHERE fingerprint = ? ORDER BY id LIMIT 1", (fingerprint,)
                ).fetchone()
            except sqlite3.Error as e:
                raise TicketUnavailable(f"local tickets {self.path}: find: {e}") from None
        return self._ref(row[0]) if row else None

    def create(self, draft: TicketDraft) -> TicketRef:
        now = time.time()

        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO tickets (fingerprint, subject, description, host, severity, priority, line, "
                "classification, fields, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    draft.fingerprint,
                    draft.subject,
                    draft.description,
                    draft.host,
                    draft.severity,
                    draft.priority,
                    draft.line,
                    draft.classification,
                    json.dumps(draft.fields),
                    now,
                    now,
                ),
            )
            tid = int(cur.lastrowid or 0)
            self._attach(db, tid, None, draft.attachments)
            return tid

        try:
            return self._ref(self._run("create", insert))
        except sqlite3.IntegrityError:  # the unique guard: it exists already (a retry after a crash)
            ref = self.find(draft.fingerprint)
            if ref is None:
                raise TicketRejected(f"local tickets {self.path}: create {draft.fingerprint} refused") from None
            return ref

    @staticmethod
    def _attach(db: sqlite3.Connection, tid: int, note_id: int | None, attachments: Sequence[Attachment]) -> None:
        for a in attachments:
            db.execute(
                "INSERT INTO attachments (ticket_id, note_id, filename, content_type, content) VALUES (?, ?, ?, ?, ?)",
                (tid, note_id, a.filename, a.content_type, a.content),
            )

    def _note(
        self, ref: TicketRef, kind: str, text: str, attachments: Sequence[Attachment], status: str | None
    ) -> None:
        now = time.time()

        def write(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT id FROM tickets WHERE id = ?", (int(ref.id),)).fetchone()
            if row is None:
                raise LookupError(ref.id)
            cur = db.execute(
                "INSERT INTO notes (ticket_id, at, kind, text) VALUES (?, ?, ?, ?)", (int(ref.id), now, kind, text)
            )
            self._attach(db, int(ref.id), int(cur.lastrowid or 0), attachments)
            if status is None:
                db.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", (now, int(ref.id)))
            else:
                db.execute(
                    "UPDATE tickets SET status = ?, updated_at = ?, closed_at = ? WHERE id = ?",
                    (status, now, now if status == "closed" else None, int(ref.id)),
                )

        try:
            self._run(kind, write)
        except LookupError:
            raise TicketRejected(f"local tickets {self.path}: no ticket {ref.id}") from None

    def add_note(self, ref: TicketRef, text: str, attachments: Sequence[Attachment] = ()) -> None:
        self._note(ref, "note", text, attachments, None)

    def close(self, ref: TicketRef, note: str) -> None:
        self._note(ref, "close", note, (), "closed")

    def reopen(self, ref: TicketRef, note: str) -> None:
        self._note(ref, "reopen", note, (), "open")

    # ---- reading (diag incidents show, tests)
    def tickets(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.db.execute("SELECT * FROM tickets ORDER BY id")]

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
            if row is None:
                return None
            out = dict(row)
            out["fields"] = json.loads(out["fields"])
            out["notes"] = [
                dict(r) for r in self.db.execute("SELECT * FROM notes WHERE ticket_id = ? ORDER BY id", (ticket_id,))
            ]
            out["attachments"] = [
                {"id": r["id"], "note_id": r["note_id"], "filename": r["filename"], "bytes": r["n"]}
                for r in self.db.execute(
                    "SELECT id, note_id, filename, length(content) AS n FROM attachments "
                    "WHERE ticket_id = ? ORDER BY id",
                    (ticket_id,),
                )
            ]
            return out

    def attachment(self, attachment_id: int) -> bytes:
        with self._lock:
            row = self.db.execute("SELECT content FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        return bytes(row[0]) if row else b""

    def close_db(self) -> None:
        with self._lock:
            self.db.close()


class Options(msgspec.Struct, forbid_unknown_fields=True):
    """``tickets: {backend: local, path: FILE, guard_duplicates: true}``; ``path`` defaults to DATA/tickets.sqlite."""

    path: str | None = None
    guard_duplicates: bool = True


def factory(cfg: Mapping[str, Any]) -> LocalTickets:
    opts = parse(NAME, cfg, Options)
    if not opts.path:
        raise ConfigError("ticket backend local: no path (the incident service defaults it to DATA/tickets.sqlite)")
    return LocalTickets(Path(opts.path), opts.guard_duplicates)


BACKENDS.add(NAME, factory)
