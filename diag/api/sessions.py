"""Console sessions: an idle timeout that use renews, an absolute cap that nothing renews, kept across restarts.

A session ends when it was not used for ``idle`` seconds, or ``cap`` seconds after its login, whichever is first.
Any request of the session renews it, and so does its page's live event stream while it is open (the stream re-
checks the session every few seconds): a console or wallboard that is on screen stays signed in, one that was
closed ends after ``idle``. The cap is per role (``agent.api.session_ttl``, and the longer ``viewer_session_ttl``
for read-only viewers: a wallboard on a NOC screen), read from the token's *current* role, so a token demoted or
promoted falls under its new cap at once.

Why in SQLite (``DATA/sessions.db``) and not in memory: an agent restart (an upgrade, a crash) must not sign out
every NOC screen. Only ``sha256(session id)`` is stored, so a copy of the file gives no cookie. Renewals are
written at most every ``min(30, idle / 4)`` seconds (the copy in memory is exact), so a restart may see a session
up to that much older than it was. A file of its own, in WAL mode without a sync per write: renewals are frequent
and worth little (a lost one after a power cut costs at most a login), and in ``api.db`` their write locks made the
live view's reads of approvals wait (seen with twelve streams renewing every 1.5 s). An ended session is kept (with
why it ended) for a day, so a page that asks after the fact is told "expired" or "revoked" rather than only
"unknown".
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from diag import datafiles

FILENAME = "sessions.db"
KEEP_ENDED_S = 24 * 3600
#: why a session is not valid (sent to the page, which words it): ended by time, by its token, or by a logout
EXPIRED, IDLE, REVOKED, SIGNED_OUT = "expired", "idle", "revoked", "signed-out"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    seen REAL NOT NULL,
    ended REAL,
    reason TEXT
);
"""


class _HasRole(Protocol):
    @property
    def role(self) -> str: ...


P = TypeVar("P", bound=_HasRole)


@dataclass(slots=True)
class Session:
    token_id: str
    csrf: str
    created: float
    seen: float
    ended: float | None = None
    reason: str = ""
    written: float = 0.0  # the ``seen`` last written to the store


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore:
    """The console sessions of one data directory."""

    def __init__(
        self,
        data: Path,
        idle: float,
        cap: Callable[[str], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.idle = idle
        self.cap = cap  # role -> absolute lifetime (s)
        self.clock = clock
        self.path = Path(data) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = datafiles.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._cache: dict[str, Session] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def new(self, token_id: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        s = Session(token_id, secrets.token_urlsafe(32), now, now, written=now)
        with self._lock:
            self._db.execute(
                "DELETE FROM sessions WHERE (ended IS NOT NULL AND ended < ?) OR seen < ?",
                (now - KEEP_ENDED_S, now - KEEP_ENDED_S - self.idle),
            )
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, NULL, NULL)", (_key(sid), token_id, s.csrf, now, now)
            )
            self._cache[_key(sid)] = s
            for k in [k for k, v in self._cache.items() if v.ended is not None or v.seen < now - self.idle]:
                del self._cache[k]  # the store keeps them (and why they ended); memory does not
        return sid, s

    def _load(self, key: str) -> Session | None:
        s = self._cache.get(key)
        if s is None:
            row = self._db.execute(
                "SELECT token_id, csrf, created, seen, ended, reason FROM sessions WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            s = Session(row[0], row[1], row[2], row[3], row[4], row[5] or "", written=row[3])
            self._cache[key] = s
        return s

    def check(
        self, sid: str, principal_of: Callable[[str], P | None], renew: bool = True
    ) -> tuple[Session | None, P | None, str]:
        """The live session of ``sid`` (renewed), its token's principal and ``""``; or why not (:data:`EXPIRED`...).

        ``principal_of`` reads the session's token as it is now (its role picks the cap); None when the token is
        revoked or gone, and then the session ends at once (:data:`REVOKED`)."""
        if not sid:
            return None, None, SIGNED_OUT
        key, now = _key(sid), self.clock()
        with self._lock:
            s = self._load(key)
            if s is None:
                return None, None, SIGNED_OUT
            if s.ended is not None:
                return None, None, s.reason or SIGNED_OUT
            p = principal_of(s.token_id)
            why = ""
            if p is None:
                why = REVOKED
            elif now >= s.created + self.cap(p.role):
                why = EXPIRED
            elif now >= s.seen + self.idle:
                why = IDLE
            if why:
                self._end(key, s, why, now)
                return None, None, why
            if renew:
                s.seen = now
                if now - s.written >= min(30.0, self.idle / 4):
                    self._db.execute("UPDATE sessions SET seen = ? WHERE key = ?", (now, key))
                    s.written = now
            return s, p, ""

    def expires(self, s: Session, role: str) -> float:
        """When ``s`` ends if it is not used again (its idle deadline, or its cap if that comes first)."""
        return min(s.seen + self.idle, s.created + self.cap(role))

    def _end(self, key: str, s: Session, reason: str, now: float) -> None:
        s.ended, s.reason = now, reason
        self._db.execute("UPDATE sessions SET ended = ?, reason = ? WHERE key = ?", (now, reason, key))

    def drop(self, sid: str, reason: str = SIGNED_OUT) -> None:
        """End a session (a logout)."""
        if not sid:
            return
        key = _key(sid)
        with self._lock:
            s = self._load(key)
            if s is not None and s.ended is None:
                self._end(key, s, reason, self.clock())
