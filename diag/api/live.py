"""Live console pages: one server-sent event stream (``/ui/events``) that says what changed and the header counts.

A page keeps one ``EventSource`` open. When incidents, approvals or check jobs change, every stream gets a
``change`` event naming what changed (``incidents``, ``approvals``, ``jobs``) with the summary counts; the page
then fetches itself again and swaps its live regions (the same server-rendered, autoescaped HTML a reload
would give, so there is one renderer and no HTML built from data in the browser).

Why a shared watcher thread rather than one per stream: the state is read once per ``poll`` seconds (or at
once when the engine says it changed) however many screens are open, and each stream's thread only waits on a
condition. The watcher runs only while at least one stream is open. Out-of-process changes (a shared PostgreSQL
incident store written by another agent) are seen by the poll; in-process ones wake it at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diag.api.service import Service

log = logging.getLogger(__name__)

#: Kinds of change a page can listen for.
KINDS = ("incidents", "approvals", "jobs")


def summary(incidents: list[dict[str, Any]], pending_approvals: int) -> dict[str, int]:
    """The header counts: open incidents by severity, unacknowledged, breaching (or breached), approvals waiting."""
    return {
        "critical": sum(1 for i in incidents if i["severity"] == "critical"),
        "warning": sum(1 for i in incidents if i["severity"] == "warning"),
        "unacked": sum(1 for i in incidents if not i.get("acked_at")),
        "breaching": sum(1 for i in incidents if i.get("sla_level") in ("soon", "breached")),
        "approvals": pending_approvals,
    }


class LiveFeed:
    """Watches the Service's state; streams a ``change`` event to every open page when a part of it moves."""

    def __init__(self, svc: Service, poll: float = 1.0) -> None:
        self.svc = svc
        self.interval = poll
        self._cond = threading.Condition()
        self._seq = 0
        self._history: deque[tuple[int, tuple[str, ...]]] = deque(maxlen=64)  # (seq, what changed)
        self._markers: dict[str, Any] = {}
        self._subscribers = 0
        self._thread: threading.Thread | None = None
        self._woken = False
        self._closed = False
        self._looked = 0.0  # monotonic time of the last look at the state

    # ---- what the watcher compares
    def markers(self) -> dict[str, Any]:
        inc = self.svc.incidents
        return {
            "incidents": inc.marker() if inc is not None else None,
            "approvals": tuple((a.id, a.state, a.job) for a in self.svc.approvals.list(limit=100)),
            "jobs": tuple((j.id, j.state, len(j.events), len(j.started)) for j in self.svc.jobs.recent()[:50]),
        }

    def poke(self) -> None:
        """Something changed in this process (the engine's on_change, a decision): look now, not at the next poll."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    # ---- the watcher
    def _ensure_watcher(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._markers = self._safe_markers() or {}
            self._thread = threading.Thread(target=self._watch, name="diag-console-live", daemon=True)
            self._thread.start()

    def _safe_markers(self) -> dict[str, Any] | None:
        try:
            return self.markers()
        except Exception:  # a store that cannot be read now (locked, restarting) is read again at the next poll
            log.warning("console live view: cannot read the state", exc_info=True)
            return None

    def _watch(self) -> None:
        while True:
            with self._cond:
                if not self._woken:
                    self._cond.wait(self.interval)
                self._woken = False
                if self._subscribers == 0 or self._closed:
                    self._thread = None
                    return
            self._look()

    def _look(self) -> None:
        """Compare the state with the last look; a difference is a new sequence number naming what moved."""
        now = self._safe_markers()
        if now is None:
            return
        with self._cond:
            self._looked = time.monotonic()
            what = tuple(k for k in KINDS if now.get(k) != self._markers.get(k))
            if what:
                self._markers = now
                self._seq += 1
                self._history.append((self._seq, what))
                self._cond.notify_all()

    def _since(self, seen: int) -> list[str]:
        lost = not self._history or self._history[0][0] > seen + 1  # more changes than kept
        return list(KINDS) if lost else sorted({k for n, ks in self._history if n > seen for k in ks})

    def poll(self, seen: int | None) -> dict[str, Any]:
        """For a page whose stream was refused (the cap on open streams): what moved since ``seen``, at once.

        The page asks every few seconds and holds no server worker in between. The state is read at most once
        per ``interval`` seconds however many pages ask; the first look only sets the baseline."""
        with self._cond:
            first = not self._markers and self._seq == 0 and self._looked == 0.0
            stale = time.monotonic() - self._looked >= self.interval
        if first:
            self._markers = self._safe_markers() or {}
            self._looked = time.monotonic()
        elif stale and (self._thread is None or not self._thread.is_alive()):
            self._look()
        with self._cond:
            seq = self._seq
            what = [] if seen is None or seen == seq else self._since(seen)
        return {"seq": seq, "what": what}

    # ---- a stream
    def follow(
        self, counts: Callable[[], dict[str, int]], alive: Callable[[], bool], keepalive: float = 15.0
    ) -> Iterator[bytes]:
        """SSE bytes for one page: ``hello`` with the counts, then ``change`` events, until ``alive()`` is false."""
        with self._cond:
            self._subscribers += 1
            self._ensure_watcher()
            seen = self._seq
        try:
            yield b"retry: 3000\n\n"
            yield _sse("hello", {"seq": seen, "counts": counts()})
            last_sent = time.monotonic()
            while not self._closed:
                with self._cond:
                    if self._seq == seen:
                        self._cond.wait(min(keepalive, 5.0))
                    seq = self._seq
                    what = self._since(seen)
                if not alive():  # the session ended or its token was revoked: the page must log in again
                    yield _sse("logout", {})
                    return
                if seq != seen:
                    seen = seq
                    yield _sse("change", {"seq": seq, "what": what, "counts": counts()})
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent >= keepalive:
                    yield b": keepalive\n\n"  # also finds a gone client: the write fails and the generator closes
                    last_sent = time.monotonic()
        finally:
            with self._cond:
                self._subscribers -= 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
