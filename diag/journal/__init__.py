"""The event journal: an append-only, hash-chained record of who did what, to which target, when, with what result.

Every check run, command sent, finding, incident transition, ticket delivery, approval and login failure is
one record in ``DATA/journal.db`` (SQLite). Each record carries the SHA-256 of the record before it, and its
own hash covers its fields and that link, so editing, deleting or inserting a record anywhere but at the end
breaks the chain, which :meth:`Journal.verify` reports by sequence number. SQLite triggers refuse UPDATE and
DELETE as well (a guard against mistakes; someone who can write the file can drop them, and the chain is what
shows it). See docs/journal.md.

Keyed (``agent.journal.key``, a ``file:``/``env:`` reference to a secret kept outside the data directory): from
the ``journal.keyed`` record on, a record's hash is an HMAC-SHA256 under that key, so someone who can write the
file but not read the key cannot recompute the chain after an edit. The head (sequence number + hash) is also
written to an external anchor (:mod:`diag.journal.anchor`), so re-chaining and truncation of the tail show up
in ``diag journal verify --key ... --anchor ...``.

Use :func:`record` from any front door: it opens the journal of a data directory, appends, and closes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diag.errors import DiagError

FILENAME = "journal.db"
GENESIS = "0" * 64  # the "previous hash" of the first record

#: (actor, action, target, result, details): one record to append
Entry = tuple[str, str, str, str, "Mapping[str, Any] | None"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_ts ON journal (ts);
CREATE TABLE IF NOT EXISTS journal_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""


@dataclass(slots=True)
class Record:
    """One journal entry. ``details`` is free-form JSON (command text, severity, ids...), never a secret."""

    seq: int
    ts: float
    actor: str
    action: str
    target: str
    result: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def digest(self, key: bytes | None = None) -> str:
        """The hash this record must carry: SHA-256 of its canonical JSON (which includes ``prev_hash``), or
        HMAC-SHA256 under ``key`` in a keyed journal."""
        body = json.dumps(
            [self.seq, repr(self.ts), self.actor, self.action, self.target, self.result, self.details, self.prev_hash],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        if key is not None:
            return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(body.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ts)),
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "result": self.result,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(slots=True)
class Problem:
    """A break in the chain: the record's sequence number and what is wrong with it."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.reason}"


def key_id(key: bytes) -> str:
    """A public fingerprint of a journal key (stored in the journal to catch a wrong key, never the key)."""
    return hashlib.sha256(b"diag-journal-key-id\0" + key).hexdigest()[:16]


def load_key(ref: str) -> bytes:
    """The key behind a ``file:PATH`` / ``env:NAME`` reference (DiagError naming it when it cannot be read)."""
    from diag.errors import SecretError
    from diag.secrets import SecretRef

    try:
        value = SecretRef(ref).reveal()
    except SecretError as e:
        raise DiagError(f"journal key: {e}") from None
    if len(value) < 16:
        raise DiagError(f"journal key {ref}: at least 16 characters (`diag journal key new FILE` makes one)")
    return value.encode()


class Journal:
    """One journal file. Thread-safe: appends are serialised by a lock and an IMMEDIATE transaction.

    ``key`` (a secret reference) keys the journal: a journal without a key gets one (a ``journal.keyed``
    record), a keyed one must be opened with the same key. Opened without ``key``, a keyed journal reads its
    key through the reference it stored; a process that cannot read it cannot append (DiagError).
    """

    def __init__(self, path: Path, key: str | None = None, verify_only: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self.keyed_from: int | None = None  # the first keyed record
        self.key_ref: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the agent's HTTP threads share one connection, serialised by _lock.
            self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)  # who did what is not for every local user to read
            meta = self.meta()
        except (OSError, sqlite3.Error) as e:
            # an unjournaled action is not allowed to pass silently: one line, and the caller stops
            raise DiagError(f"{path}: cannot open the event journal: {e}") from None
        if "keyed_from" in meta:
            self.keyed_from, self.key_ref = int(meta["keyed_from"]), meta.get("key_ref")
        if key:
            self.use_key(key)
        elif self.keyed_from is not None:
            try:
                self._key = self._checked(load_key(self.key_ref or ""), self.key_ref or "", meta)
            except DiagError:
                if not verify_only:  # a process that cannot key its records must not append any
                    raise
                # reading, and verifying with a key the verifier gives, still work

    def _checked(self, key: bytes, ref: str, meta: dict[str, str]) -> bytes:
        if key_id(key) != meta.get("key_id"):
            raise DiagError(
                f"{self.path}: the journal is keyed with key {meta.get('key_id')} ({self.key_ref}), "
                f"not with {ref} ({key_id(key)})"
            )
        return key

    def use_key(self, ref: str) -> None:
        """Key the journal with ``ref`` (a ``journal.keyed`` record), or check that it is the key it has."""
        meta = self.meta()
        if "keyed_from" not in meta:
            self._key_it(ref, load_key(ref))
            return
        self._key = self._checked(load_key(ref), ref, meta)
        self.keyed_from, self.key_ref = int(meta["keyed_from"]), ref

    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM journal_meta").fetchall())

    def _key_it(self, ref: str, key: bytes) -> None:
        """Start keying: the ``journal.keyed`` record is the first with an HMAC (and chains to the plain ones)."""
        kid = key_id(key)
        rec = self._append([("diag", "journal.keyed", "journal", "ok", {"key_id": kid, "key": ref})], key)[0]
        self.keyed_from, self._key, self.key_ref = rec.seq, key, ref

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(
        self,
        actor: str,
        action: str,
        target: str = "",
        result: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> Record:
        """Add a record at the end of the chain and return it (with its seq and hash)."""
        return self.append_many([(actor, action, target, result, details)])[0]

    def append_many(self, entries: Sequence[Entry]) -> list[Record]:
        """Add several records in one transaction (one fsync): a host's commands, findings and outcome together."""
        if self.keyed_from is not None and self._key is None:
            raise DiagError(f"{self.path}: the journal is keyed and its key {self.key_ref} cannot be read here")
        return self._append(entries, self._key)

    def _append(self, entries: Sequence[Entry], key: bytes | None) -> list[Record]:
        if not entries:
            return []
        out: list[Record] = []
        with self._lock:
            # IMMEDIATE takes the write lock before reading the tail, so two processes (the agent and a
            # `diag check` on the CLI) never chain two records to the same predecessor.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if (
                    key is None and self._db.execute("SELECT 1 FROM journal_meta WHERE name = 'keyed_from'").fetchone()
                ):  # keyed by another process since this one opened it: no plain record after that
                    raise DiagError(f"{self.path}: the journal was keyed since it was opened here; open it again")
                row = self._db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
                for actor, action, target, result, details in entries:
                    rec = Record(seq, time.time(), actor, action, target, result, dict(details or {}), prev)
                    rec.details = json.loads(json.dumps(rec.details, default=str))  # what is stored is what is hashed
                    rec.hash = rec.digest(key)
                    self._db.execute(
                        "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            rec.seq,
                            rec.ts,
                            rec.actor,
                            rec.action,
                            rec.target,
                            rec.result,
                            json.dumps(rec.details, sort_keys=True, ensure_ascii=False),
                            rec.prev_hash,
                            rec.hash,
                        ),
                    )
                    if action == "journal.keyed" and key is not None:  # in the same transaction as its record
                        self._db.executemany(
                            "INSERT OR REPLACE INTO journal_meta VALUES (?, ?)",
                            [
                                ("keyed_from", str(rec.seq)),
                                ("key_id", key_id(key)),
                                ("key_ref", str(rec.details["key"])),
                            ],
                        )
                    out.append(rec)
                    seq, prev = seq + 1, rec.hash
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def query(
        self,
        since: float | None = None,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Record]:
        """Records matching every filter given (``action`` matches a prefix: ``check`` finds ``check.*``)."""
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if action:
            where.append("(action = ? OR action LIKE ? ESCAPE '\\')")
            args += [action, action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"]
        if actor:
            where.append("actor = ?")
            args.append(actor)
        if target:
            where.append("target = ?")
            args.append(target)
        sql = "SELECT * FROM journal"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq " + ("DESC" if newest_first else "ASC")
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_record(r) for r in rows]

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM journal ORDER BY seq ASC")
            rows = cur.fetchall()
        yield from rows

    def verify(self, key: bytes | None = None) -> tuple[int, list[Problem]]:
        """Walk the chain: (records checked, problems). A problem names the first record that does not fit.

        ``key`` is the verifier's own copy of the key: with it, a journal that no longer says it is keyed (its
        ``journal_meta`` was dropped to re-chain it with plain SHA-256) is a problem, and keyed records are
        checked with it rather than with the key the journal's reference points at.
        """
        problems: list[Problem] = []
        keyed_from = self.keyed_from
        if key is not None and keyed_from is None:
            problems.append(
                Problem(0, "a key was given but the journal does not say it is keyed (its key record was removed?)")
            )
        if key is None and keyed_from is not None and self._key is None:
            problems.append(
                Problem(
                    keyed_from,
                    f"records from here on are keyed and the key ({self.key_ref}) cannot be read: give --key",
                )
            )
        key = key if key is not None else self._key
        prev_hash, prev_seq, n = GENESIS, 0, 0
        for row in self._rows():
            n += 1
            try:
                rec = _record(row)
            except (ValueError, TypeError) as e:
                problems.append(Problem(int(row[0]), f"unreadable: {e}"))
                prev_hash, prev_seq = str(row[8]), int(row[0])
                continue
            if rec.seq != prev_seq + 1:
                problems.append(
                    Problem(rec.seq, f"follows record {prev_seq}: records {prev_seq + 1}..{rec.seq - 1} are missing")
                )
            if rec.prev_hash != prev_hash:
                problems.append(
                    Problem(
                        rec.seq,
                        "its link to the previous record does not match"
                        " (a record before it was changed, removed or inserted)",
                    )
                )
            use = key if keyed_from is not None and rec.seq >= keyed_from else None
            if keyed_from is not None and rec.seq >= keyed_from and key is None:
                prev_hash, prev_seq = rec.hash, rec.seq  # links are still checked; contents need the key
                continue
            if keyed_from is not None and rec.seq == keyed_from and rec.action != "journal.keyed":
                problems.append(Problem(rec.seq, "the journal says keying began here, but this is not its key record"))
            if rec.digest(use) != rec.hash:
                problems.append(Problem(rec.seq, "its content does not match its hash (the record was edited)"))
            prev_hash, prev_seq = rec.hash, rec.seq
        return n, problems

    def head(self) -> str:
        """The hash of the last record (GENESIS when empty): anchor it elsewhere to detect truncation too."""
        return self.head_record()[1]

    def head_record(self) -> tuple[int, str]:
        """(sequence number, hash) of the last record; (0, GENESIS) when empty."""
        with self._lock:
            row = self._db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def hash_of(self, seq: int) -> str | None:
        """The stored hash of record ``seq`` (None when there is no such record)."""
        with self._lock:
            row = self._db.execute("SELECT hash FROM journal WHERE seq = ?", (seq,)).fetchone()
        return str(row[0]) if row else None


def _record(row: tuple[Any, ...]) -> Record:
    seq, ts, actor, action, target, result, details, prev, h = row
    return Record(
        int(seq), float(ts), str(actor), str(action), str(target), str(result), json.loads(details), str(prev), str(h)
    )


_open: dict[Path, Journal] = {}
_open_lock = threading.Lock()


def open_journal(data: Path, key: str | None = None) -> Journal:
    """The journal of a data directory, opened once per process and shared (keyed with ``key`` if given)."""
    path = (Path(data) / FILENAME).resolve()
    with _open_lock:
        j = _open.get(path)
        if j is None:
            j = _open[path] = Journal(path, key)
        elif key is not None and (not j.keyed or j.key_ref != key):
            j.use_key(key)  # the same object: whoever holds it already appends keyed from now on
        return j


def record(
    data: Path,
    actor: str,
    action: str,
    target: str = "",
    result: str = "",
    details: Mapping[str, Any] | None = None,
) -> Record:
    """Append one record to the journal of ``data`` (the ``--data`` / ``agent.data`` directory)."""
    return open_journal(data).append(actor, action, target, result, details)


def local_actor() -> str:
    """Who runs a CLI command: ``cli:USER`` (the login name, or the uid when there is none)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"
