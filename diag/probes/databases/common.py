"""Helpers shared by the PostgreSQL and MySQL collectors: metric families keyed by name, session evidence,
restart memory across agent restarts, and the merge of per-instance results into one probe result."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diag.model import Evidence, Metric, MetricKind, Result, Severity
from diag.secrets import mask

log = logging.getLogger(__name__)


class Families:
    """Metric families of one probe run, created on first use so every instance adds to the same family."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self._by_name: dict[str, Metric] = {}

    def add(
        self, name: str, help: str, value: float | None, labels: dict[str, str], kind: MetricKind = "gauge"
    ) -> None:
        """Add one sample; ``None`` (the server did not say) adds nothing, so no false zero is exported."""
        m = self._by_name.get(name)
        if m is None:
            m = self.result.metric(name, help, kind, tuple(labels))
            self._by_name[name] = m
        if value is not None:
            m.add(float(value), *labels.values())


@dataclass(slots=True)
class Session:
    """A client session as both engines describe it, for evidence."""

    pid: int
    user: str
    database: str
    state: str
    seconds: float  # in this state / running this query
    xact_seconds: float | None
    query: str  # already masked
    blocked_by: str = ""

    def line(self) -> str:
        xact = f", transaction {self.xact_seconds:.0f} s" if self.xact_seconds is not None else ""
        blocked = f", waits for {self.blocked_by}" if self.blocked_by else ""
        return (
            f"pid {self.pid} user {self.user or '-'} db {self.database or '-'} {self.state} for {self.seconds:.0f} s"
            f"{xact}{blocked}: {self.query or '(no query text)'}"
        )


def sessions_evidence(title: str, sessions: list[Session], limit: int) -> Evidence:
    shown = sorted(sessions, key=lambda s: -s.seconds)[:limit]
    text = "\n".join(s.line() for s in shown)
    more = f"\n... and {len(sessions) - len(shown)} more" if len(sessions) > len(shown) else ""
    data = {"sessions": len(sessions), "longest_s": round(shown[0].seconds, 1) if shown else 0.0}
    return Evidence("text", title, mask(text + more), data)


class StartTimes:
    """Each server's last seen start time, kept in ``<state>/<probe>.json`` so a restart is noticed across
    agent restarts too (the agent may have been down while the database restarted)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = raw if isinstance(raw, dict) else {}
            except FileNotFoundError:
                self._data = {}
            except (OSError, ValueError) as e:
                log.warning("%s: unreadable, starting afresh: %s", self.path, e)
                self._data = {}
        return self._data

    def seen(self, server: str, start: float, tolerance: float = 0.001) -> float | None:
        """Record ``start`` for ``server``; return the start time it replaced when it changed (a restart).

        ``tolerance``: how far two readings of the same start may differ (PostgreSQL's is exact; MySQL's is
        computed from whole seconds of uptime, so it wobbles by one).
        """
        with self._lock:
            data = self._load()
            entry = data.get(server) or {}
            before = entry.get("start")
            restarted_from = entry.get("restarted_from")
            if before is not None and abs(float(before) - start) > tolerance:
                restarted_from = float(before)
            new = {"start": start, "restarted_from": restarted_from}
            if new != entry:
                data[server] = new
                self._save(data)
            return float(restarted_from) if restarted_from is not None else None

    def _save(self, data: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as e:
            log.warning("%s: cannot save: %s", self.path, e.strerror)


def secret_missing(engine: str, name: str, error: Exception, r: Result) -> None:
    """The instance's password reference cannot be read: a configuration problem on this host, not a server down."""
    r.find(
        f"{engine}_credentials_missing",
        "warning",
        f"{engine} {name} is not checked: {error}",
        subject=name,
        cause="config_error",
        evidence=[Evidence("text", "password reference", str(error))],
    )


def percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def level(value: float, warning: float, critical: float) -> Severity | None:
    """The severity ``value`` reaches on a warning/critical ladder (None below warning)."""
    if value >= critical:
        return "critical"
    return "warning" if value >= warning else None


def busiest(sessions: Iterable[Session], n: int = 5) -> str:
    """``user@database: count`` of the ``n`` busiest pairs: who holds the connections, for the evidence."""
    counts = Counter(f"{s.user}@{s.database or '-'}" for s in sessions)
    return ", ".join(f"{k}: {v}" for k, v in counts.most_common(n))


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns
