"""Approval requests: a check whose playbook changes hosts waits here until a lead approves or rejects it.

Stored in ``DATA/api.db`` next to the tokens, so a pending request survives a restart of the agent. A request
moves once: ``pending`` -> ``approved`` (and its job starts, with changes allowed) or ``rejected``; the
transition is a conditional UPDATE, so two leads deciding at once cannot both win.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diag.api.tokens import FILENAME

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    playbook TEXT NOT NULL,
    targets TEXT NOT NULL,
    vars TEXT NOT NULL,
    steps TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    decided_by TEXT,
    decided_at REAL,
    comment TEXT,
    job TEXT
);
"""


@dataclass(slots=True)
class Approval:
    id: str
    requester: str
    playbook: str
    targets: list[str]
    vars: dict[str, Any]
    steps: list[str]  # the ids of the steps that change the host
    reason: str
    state: str = "pending"
    created: float = field(default_factory=time.time)
    decided_by: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    job: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "requester": self.requester,
            "playbook": self.playbook,
            "targets": self.targets,
            "vars": self.vars,
            "changing_steps": self.steps,
            "reason": self.reason,
            "state": self.state,
            "created": self.created,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "comment": self.comment,
            "job": self.job,
        }


class ApprovalStore:
    def __init__(self, data: Path) -> None:
        path = Path(data) / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._db.executescript(_SCHEMA)

    def create(
        self,
        requester: str,
        playbook: str,
        targets: list[str],
        variables: dict[str, Any],
        steps: list[str],
        reason: str,
    ) -> Approval:
        a = Approval(secrets.token_hex(6), requester, playbook, targets, variables, steps, reason)
        with self._lock:
            self._db.execute(
                "INSERT INTO approvals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)",
                (
                    a.id,
                    a.requester,
                    a.playbook,
                    json.dumps(a.targets),
                    json.dumps(a.vars),
                    json.dumps(a.steps),
                    a.reason,
                    a.state,
                    a.created,
                ),
            )
        return a

    def get(self, approval_id: str) -> Approval | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        return _approval(row) if row else None

    def list(self, state: str | None = None, limit: int = 200) -> list[Approval]:
        sql, args = "SELECT * FROM approvals", list[Any]()
        if state:
            sql += " WHERE state = ?"
            args.append(state)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_approval(r) for r in rows]

    def decide(self, approval_id: str, state: str, by: str, comment: str) -> bool:
        """Move a pending request to ``state``; False when it was not pending (someone decided first)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, comment = ?"
                " WHERE id = ? AND state = 'pending'",
                (state, by, time.time(), comment, approval_id),
            )
        return cur.rowcount == 1

    def set_job(self, approval_id: str, job: str) -> None:
        with self._lock:
            self._db.execute("UPDATE approvals SET job = ? WHERE id = ?", (job, approval_id))


def _approval(row: tuple[Any, ...]) -> Approval:
    return Approval(
        row[0],
        row[1],
        row[2],
        json.loads(row[3]),
        json.loads(row[4]),
        json.loads(row[5]),
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
    )
