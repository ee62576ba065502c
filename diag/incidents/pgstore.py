"""The incident store on PostgreSQL, for scale-out: several agents and workers share one store.

The SQLite :class:`~diag.incidents.store.Store` is the embedded default and the reference: this subclass keeps
its SQL and its guarantees and changes only what PostgreSQL does differently:
- **One writer at a time, across processes.** SQLite's ``BEGIN IMMEDIATE`` takes the database's write lock; here
  every write transaction takes ``pg_advisory_xact_lock``. The engine reads an incident, decides, then writes:
  in one process its thread lock makes that atomic; here :meth:`engine_lock` is a session-level advisory lock on
  the same key, so "one live incident per fingerprint" and "every occurrence counted" hold across machines too.
  It is held while the engine works (including a verifying re-check), not as an open transaction.
- **One deliverer at a time.** The outbox of a shared store must be drained by one process only, or two could
  send the same note. :meth:`may_deliver` holds a session-level advisory lock on a dedicated connection; when the
  delivering process dies, its session ends, the lock is freed and another process takes over the outbox. Its
  search-before-create makes that take-over safe even in the middle of a delivery.
- SQL dialect: ``?`` placeholders become ``%s``, ``REAL`` columns become ``DOUBLE PRECISION`` (PostgreSQL's
  ``REAL`` is 4 bytes and would round timestamps to minutes), ``INTEGER PRIMARY KEY`` becomes ``BIGSERIAL``, and
  an ``INSERT`` into a table with an ``id`` returns it (``lastrowid``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from diag.errors import StoreUnavailable
from diag.incidents.store import SCHEMA, Store

log = logging.getLogger(__name__)

#: Advisory lock keys (any 64-bit numbers that nothing else on the database uses).
WRITE_LOCK = 0x64696167_0001  # "diag" + 1
DELIVERY_LOCK = 0x64696167_0002
_ID_TABLES = ("incidents", "events", "outbox", "silences")


class Row(dict[str, Any]):
    """A row readable by column name (``r["id"]``) and by position (``r[0]``), like :class:`sqlite3.Row`."""

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


def _row_factory(cursor: Any) -> Any:
    names = [c.name for c in cursor.description or ()]
    return lambda values: Row(zip(names, values, strict=True))


def translate(sql: str) -> str:
    """SQLite's ``?`` placeholders to psycopg's ``%s`` (no SQL here has a literal ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def pg_schema(schema: str = SCHEMA) -> list[str]:
    """The SQLite schema in PostgreSQL's dialect, one statement per item."""
    s = schema.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    s = re.sub(r"\bINTEGER\b", "BIGINT", s)
    s = re.sub(r"--[^\n]*", "", s)
    return [stmt.strip() for stmt in s.split(";") if stmt.strip()]


class _Cursor:
    """What the engine and the outbox use of a sqlite3 cursor: ``execute`` and ``lastrowid``."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur
        self.lastrowid: int | None = None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> _Cursor:
        text = translate(sql)
        head = sql.lstrip().upper()
        returning = head.startswith("INSERT INTO") and "RETURNING" not in head
        if returning and head.split()[2].split("(")[0].lower() in _ID_TABLES:
            self._cur.execute(text + " RETURNING id", tuple(args))
            row = self._cur.fetchone()
            self.lastrowid = int(row[0]) if row else None
        else:
            self._cur.execute(text, tuple(args))
        return self

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur.fetchall())


def _unavailable(url: str, e: psycopg.OperationalError) -> StoreUnavailable:
    """One line naming the server (never the password) and psycopg's first line of the reason."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return StoreUnavailable(f"incident store on PostgreSQL {where} unavailable: {reason}")


class _SessionLock:
    """Re-entrant: this thread's lock on the store, plus PostgreSQL's session advisory lock on the writer key."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.depth = 0

    def __enter__(self) -> _SessionLock:
        self.store._lock.acquire()
        if self.depth == 0:
            try:
                self.store._live_conn().execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
            except psycopg.OperationalError as e:
                self.store._lock.release()
                raise _unavailable(self.store.url, e) from None
            except BaseException:
                self.store._lock.release()
                raise
        self.depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        try:
            if self.depth == 0 and not self.store.conn.closed and not self.store.conn.broken:
                self.store.conn.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
        except psycopg.OperationalError as e:
            # The server went away: the session, and the lock with it, is gone. Not an error of the work done under
            # the lock (already committed): raising would make a caller do it again.
            log.info("%s; the engine lock ended with the session", _unavailable(self.store.url, e))
        finally:
            self.store._lock.release()


class PgStore(Store):
    """The incidents database on PostgreSQL (``database_url: postgresql://...``)."""

    def __init__(self, url: str) -> None:  # not super().__init__(): that one opens SQLite
        self.url = url
        self._lock = threading.RLock()
        self._depth = 0
        self.conn = self._connect()
        self._delivery: psycopg.Connection[Any] | None = None
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # two agents starting together
            for stmt in pg_schema():
                self.conn.execute(stmt)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise _unavailable(self.url, e) from None

    def _live_conn(self) -> psycopg.Connection[Any]:
        if self.conn.closed or self.conn.broken:  # the server restarted: a new session, then go on
            self.conn = self._connect()
        return self.conn

    def close(self) -> None:
        with self._lock:
            self.conn.close()
            if self._delivery is not None:
                self._delivery.close()

    @contextmanager
    def tx(self) -> Iterator[Any]:
        """One write transaction, serialised with every other writer of this database (in any process)."""
        with self._lock:
            if self._depth:  # nested: part of the caller's transaction
                yield _Cursor(self.conn.cursor())
                return
            conn = self._live_conn()
            self._depth += 1
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    yield _Cursor(cur)
            except psycopg.OperationalError as e:  # lost during the transaction: nothing of it was committed
                raise _unavailable(self.url, e) from None
            finally:
                self._depth -= 1

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            conn = self._live_conn()
            try:
                return conn.execute(translate(sql), tuple(args)).fetchall()  # in our transaction when inside tx()
            except psycopg.OperationalError as e:
                raise _unavailable(self.url, e) from None

    def engine_lock(self) -> _SessionLock:
        return _SessionLock(self)

    def may_deliver(self) -> bool:
        """True while this process holds the store's delivery lock (taking it when it is free)."""
        with self._lock:
            try:
                if self._delivery is None or self._delivery.closed or self._delivery.broken:
                    self._delivery = self._connect()
                    row = self._delivery.execute("SELECT pg_try_advisory_lock(%s)", (DELIVERY_LOCK,)).fetchone()
                    if not (row and row[0]):
                        self._delivery.close()
                        self._delivery = None
                        return False
                self._delivery.execute("SELECT 1")  # still our session, so still our lock
                return True
            except (psycopg.OperationalError, StoreUnavailable):  # the server is away: no one delivers now
                self._delivery = None
                return False
