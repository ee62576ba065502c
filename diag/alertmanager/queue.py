"""The receiver's queue on disk: alerts accepted (202) but not yet worked on survive a restart or a crash.

Alertmanager counts a 2xx as delivered and will not send that notification again (a resolved one never), so an
alert the agent has acknowledged must not live only in memory. :meth:`JobStore.add` commits the alerts to SQLite
before the HTTP answer goes out; a job is deleted when it has been handed to the incident engine; at start the
receiver replays what is left, in arrival order. WAL with ``synchronous=NORMAL``: a commit survives the process
dying (SIGKILL), and costs well under a millisecond on this machine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from diag import datafiles
from diag.alertmanager.payload import Alert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_key TEXT NOT NULL,
    alert BLOB NOT NULL,
    external_url TEXT NOT NULL,
    received_at REAL NOT NULL
)
"""
log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Alert)


class JobStore:
    """Alerts waiting for the receiver's workers, in SQLite (``DATA/alertmanager.sqlite``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = datafiles.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def add(self, alerts: Sequence[Alert], external_url: str, now: float | None = None) -> list[int]:
        """Store the alerts (received at ``now``) in one transaction; their ids, in order."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                for a in alerts:
                    cur.execute(
                        "INSERT INTO alert_jobs (alert_key, alert, external_url, received_at) VALUES (?, ?, ?, ?)",
                        (a.key, _encoder.encode(a), external_url, now),
                    )
                    ids.append(int(cur.lastrowid or 0))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return ids

    def done(self, job_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM alert_jobs WHERE id = ?", (job_id,))

    def pending(self) -> list[tuple[int, Alert, str, float]]:
        """Every stored job with its receipt time, oldest first (a row that no longer decodes is dropped)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, alert, external_url, received_at FROM alert_jobs ORDER BY id"
            ).fetchall()
        out = []
        for job_id, blob, url, received_at in rows:
            try:
                out.append((int(job_id), _decoder.decode(blob), str(url), float(received_at)))
            except msgspec.ValidationError as e:  # written by another version of diag: say so, then drop it
                log.warning("alertmanager queue %s: dropping job %s that no longer decodes: %s", self.path, job_id, e)
                self.done(int(job_id))
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
