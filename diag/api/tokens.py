"""API tokens: issued once, stored only as salted hashes, with a role and a scope of host groups and playbooks.

A token is ``diag_<id>_<secret>``: ``id`` (8 hex digits) finds the row, ``secret`` (32 random bytes, base64url)
is the credential. The store keeps ``sha256(salt || secret)`` with a per-token 16-byte salt, never the secret.
A fast hash is enough here because the secret has 256 bits of entropy: there is no dictionary to try, and a
slow KDF would only make every API request slow (scrypt at its usual n=2**14, r=8 needs 16 MiB per check, more
than a third of the agent's memory budget). Hashes are compared with :func:`hmac.compare_digest`, and an
unknown id is compared against a dummy hash so the answer takes the same time. See docs/api.md.

The store is ``DATA/api.db`` (SQLite); the agent reads it on every request, so ``diag api token revoke``
takes effect at once without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from diag.errors import ConfigError

FILENAME = "api.db"
Role = Literal["viewer", "engineer", "lead", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "engineer", "lead", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
_TOKEN = re.compile(r"^diag_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_DUMMY_SALT = b"\0" * 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    groups TEXT NOT NULL,
    playbooks TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
"""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: the token's name, role and scope (``*`` means every group / playbook)."""

    name: str
    role: Role
    groups: tuple[str, ...] = ("*",)
    playbooks: tuple[str, ...] = ("*",)
    token_id: str = ""

    @property
    def actor(self) -> str:
        """How the journal names this principal."""
        return f"token:{self.name}"

    def at_least(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


@dataclass(slots=True)
class TokenInfo:
    id: str
    name: str
    role: Role
    groups: list[str] = field(default_factory=list)
    playbooks: list[str] = field(default_factory=list)
    created: float = 0.0
    revoked: float | None = None


def _hash(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


class TokenStore:
    """The tokens of one data directory."""

    def __init__(self, data: Path) -> None:
        self.path = Path(data) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._db.executescript(_SCHEMA)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, name: str, role: str, groups: Sequence[str] = ("*",), playbooks: Sequence[str] = ("*",)) -> str:
        """Create a token and return it in clear: the only time it is ever shown."""
        if not _NAME.match(name):
            raise ConfigError(f"token name {name!r}: use letters, digits and _.@- (up to 64)")
        if role not in ROLES:
            raise ConfigError(f"role {role!r}: one of {', '.join(ROLES)}")
        groups, playbooks = list(groups) or ["*"], list(playbooks) or ["*"]
        tid, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(32), secrets.token_bytes(16)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        tid,
                        name,
                        role,
                        json.dumps(groups),
                        json.dumps(playbooks),
                        salt,
                        _hash(salt, secret),
                        time.time(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(f"a token named {name!r} exists; revoke it first or pick another name") from None
        return f"diag_{tid}_{secret}"

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, role, groups, playbooks, created, revoked FROM tokens ORDER BY created"
            ).fetchall()
        return [TokenInfo(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), r[5], r[6]) for r in rows]

    def revoke(self, name_or_id: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE tokens SET revoked = ? WHERE (name = ? OR id = ?) AND revoked IS NULL",
                (time.time(), name_or_id, name_or_id),
            )
        return cur.rowcount > 0

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None otherwise (in constant time for a given length)."""
        m = _TOKEN.match(token.strip())
        tid, secret = (m.group(1), m.group(2)) if m else ("", token)
        row = None
        if m:
            with self._lock:
                row = self._db.execute(
                    "SELECT name, role, groups, playbooks, salt, hash, revoked FROM tokens WHERE id = ?", (tid,)
                ).fetchone()
        salt, want = (bytes(row[4]), bytes(row[5])) if row else (_DUMMY_SALT, b"\0" * 32)
        ok = hmac.compare_digest(_hash(salt, secret), want)  # computed even for unknown ids: same timing
        if not ok or row is None or row[6] is not None:
            return None
        return Principal(row[0], row[1], tuple(json.loads(row[2])), tuple(json.loads(row[3])), tid)

    def by_name(self, name: str) -> Principal | None:
        """The principal of an unrevoked token by its name."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, groups, playbooks, id FROM tokens WHERE name = ? AND revoked IS NULL", (name,)
            ).fetchone()
        return Principal(row[0], row[1], tuple(json.loads(row[2])), tuple(json.loads(row[3])), row[4]) if row else None

    def change(
        self,
        name: str,
        role: str | None = None,
        groups: Sequence[str] | None = None,
        playbooks: Sequence[str] | None = None,
    ) -> Principal:
        """Change an active token's role or scope (the agent sees it on the next request); ConfigError if none."""
        p = self.by_name(name)
        if p is None:
            raise ConfigError(f"no active token named {name!r}")
        if role is not None and role not in ROLES:
            raise ConfigError(f"role {role!r}: one of {', '.join(ROLES)}")
        new = Principal(
            p.name,
            role or p.role,
            tuple(groups) if groups is not None else p.groups,
            tuple(playbooks) if playbooks is not None else p.playbooks,
            p.token_id,
        )
        with self._lock:
            self._db.execute(
                "UPDATE tokens SET role = ?, groups = ?, playbooks = ? WHERE id = ? AND revoked IS NULL",
                (new.role, json.dumps(list(new.groups)), json.dumps(list(new.playbooks)), p.token_id),
            )
        return new

    def by_id(self, token_id: str) -> Principal | None:
        """The principal of an unrevoked token by its public id (a console session re-checks it every request)."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, groups, playbooks FROM tokens WHERE id = ? AND revoked IS NULL", (token_id,)
            ).fetchone()
        return (
            Principal(row[0], row[1], tuple(json.loads(row[2])), tuple(json.loads(row[3])), token_id) if row else None
        )


def token_prefix(token: str) -> str:
    """What may be logged about a presented token: its public id, never the secret."""
    m = _TOKEN.match(token.strip())
    return f"diag_{m.group(1)}_..." if m else "(malformed)"
