"""Approval requests: a check whose playbook changes hosts waits here until a lead approves or rejects it.

Stored in ``DATA/api.db`` next to the tokens, so a pending request survives a restart of the agent. A request
moves once: ``pending`` -> ``approved`` (and its job starts, with changes allowed), ``rejected``,
``cancelled`` (its requester's token was revoked or narrowed so that the request no longer fits) or
``expired`` (nobody decided before ``expires``); the transition is a conditional UPDATE, so two leads deciding
at once cannot both win. A request keeps what a lead must see: the hosts (with the groups they had), the
variables, and the rendered command of every changing step on every host.
"""

from __future__ import annotations

import builtins
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag import datafiles
from diag.api import policy
from diag.api.tokens import FILENAME, Principal, TokenStore

if TYPE_CHECKING:
    from diag.journal import Journal

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
#: Columns added by issue 15; an older api.db gets them on open.
_ADDED = (
    ("requester_token", "TEXT NOT NULL DEFAULT ''"),
    ("hosts", "TEXT NOT NULL DEFAULT '[]'"),
    ("commands", "TEXT NOT NULL DEFAULT '[]'"),
    ("expires", "REAL"),
)
_SELECT = (
    "SELECT id, requester, playbook, targets, vars, steps, reason, state, created, decided_by, decided_at, comment,"
    " job, requester_token, hosts, commands, expires FROM approvals"
)
_INSERT = (
    "INSERT INTO approvals (id, requester, playbook, targets, vars, steps, reason, state, created, requester_token,"
    " hosts, commands, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
STATES = ("pending", "approved", "rejected", "cancelled", "expired")


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
    requester_token: str = ""  # the public id of the requester's token, re-checked at decision time
    hosts: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "groups"}] when requested
    commands: list[dict[str, Any]] = field(default_factory=list)  # [{"host", "step", "command", "sudo", ...}]
    expires: float | None = None

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
            "hosts": self.hosts,
            "commands": self.commands,
            "expires": self.expires,
        }


class ApprovalStore:
    def __init__(self, data: Path) -> None:
        path = Path(data) / FILENAME
        self._lock = threading.Lock()
        self._db = datafiles.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._db.executescript(_SCHEMA)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(approvals)")}
            for name, decl in _ADDED:
                if name not in have:
                    self._db.execute(f"ALTER TABLE approvals ADD COLUMN {name} {decl}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(
        self,
        requester: str,
        playbook: str,
        targets: list[str],
        variables: dict[str, Any],
        steps: list[str],
        reason: str,
        requester_token: str = "",
        hosts: list[dict[str, Any]] | None = None,
        commands: list[dict[str, Any]] | None = None,
        ttl: float | None = None,
    ) -> Approval:
        a = Approval(secrets.token_hex(6), requester, playbook, targets, variables, steps, reason)
        a.requester_token, a.hosts, a.commands = requester_token, hosts or [], commands or []
        a.expires = a.created + ttl if ttl else None
        with self._lock:
            self._db.execute(
                _INSERT,
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
                    a.requester_token,
                    json.dumps(a.hosts),
                    json.dumps(a.commands),
                    a.expires,
                ),
            )
        return a

    def get(self, approval_id: str) -> Approval | None:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE id = ?", (approval_id,)).fetchone()
        return _approval(row) if row else None

    def list(self, state: str | None = None, limit: int = 200) -> builtins.list[Approval]:
        sql, args = _SELECT, list[Any]()
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

    def pending(self) -> builtins.list[Approval]:
        return self.list("pending", limit=100000)

    def close_pending(self, approval_id: str, state: str, by: str, reason: str) -> bool:
        """Cancel or expire a pending request (``state``); False when it was no longer pending."""
        return self.decide(approval_id, state, by, reason)

    def due(self, now: float | None = None) -> builtins.list[Approval]:
        """Pending requests whose time is up."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                _SELECT + " WHERE state = 'pending' AND expires IS NOT NULL AND expires < ?",
                (now,),
            ).fetchall()
        return [_approval(r) for r in rows]

    def set_job(self, approval_id: str, job: str) -> None:
        with self._lock:
            self._db.execute("UPDATE approvals SET job = ? WHERE id = ?", (job, approval_id))


def _approval(row: tuple[Any, ...]) -> Approval:
    a = Approval(
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
    a.requester_token, a.hosts, a.commands, a.expires = row[13], json.loads(row[14]), json.loads(row[15]), row[16]
    return a


def refusal(requester: Principal | None, a: Approval) -> str | None:
    """Why the requester may no longer ask for ``a`` (revoked, demoted, narrowed), or None.

    Judged on what the request recorded (its playbook, its hosts and their groups), so that ``diag api token``
    on the command line can judge it without the inventory; the agent checks the live inventory as well.
    """
    if requester is None:
        return f"the requester's token ({a.requester}) was revoked"
    if not requester.at_least("engineer"):
        return f"the requester's token ({a.requester}) is now a {requester.role}"
    if not policy.playbook_allowed(requester, a.playbook):
        return f"playbook {a.playbook} is no longer granted to {a.requester}"
    outside = [str(h.get("name")) for h in a.hosts if not policy.groups_allowed(requester, h.get("groups") or [])]
    if outside:
        return f"host(s) {', '.join(outside[:5])} are no longer in the groups granted to {a.requester}"
    return None


def requester_of(tokens: TokenStore, a: Approval) -> Principal | None:
    """The requester's token as it is now (None when revoked): by its id, or by name for older requests."""
    if a.requester_token:
        return tokens.by_id(a.requester_token)
    return tokens.by_name(a.requester.removeprefix("token:"))


def cancel(
    store: ApprovalStore, journal: Journal, a: Approval, actor: str, reason: str, state: str = "cancelled"
) -> bool:
    """Close a pending request without a decision and journal it (``approval.cancelled`` / ``approval.expired``)."""
    if not store.close_pending(a.id, state, actor, reason):
        return False
    journal.append(
        actor,
        f"approval.{state}",
        ",".join(str(h.get("name")) for h in a.hosts) or ",".join(a.targets),
        state,
        {"approval": a.id, "playbook": a.playbook, "requester": a.requester, "reason": reason},
    )
    return True


def cancel_unfit(
    store: ApprovalStore, tokens: TokenStore, journal: Journal, actor: str, token_id: str | None = None
) -> list[tuple[Approval, str]]:
    """Cancel every pending request (of ``token_id``, or all) whose requester no longer fits it; journaled."""
    out = []
    for a in store.pending():
        if token_id is not None and a.requester_token and a.requester_token != token_id:
            continue
        why = refusal(requester_of(tokens, a), a)
        if why is not None and cancel(store, journal, a, actor, why):
            out.append((a, why))
    return out
