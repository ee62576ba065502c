"""Live console pages: one server-sent event stream (``/ui/events``) that says what changed and the header counts.

A page keeps one ``EventSource`` open. When incidents, approvals or check jobs change, every stream gets a
``change`` event naming what changed (``incidents``, ``approvals``, ``jobs``) with the summary counts; the page
then fetches itself again and swaps its live regions (the same server-rendered, autoescaped HTML a reload
would give, so there is one renderer and no HTML built from data in the browser).

Why a shared watcher thread rather than one per stream: the state is read once per ``poll`` seconds (or at
once when the engine says it changed) however many screens are open, and each stream's thread only waits on a
condition. The watcher runs only while at least one stream is open. Out-of-process changes (a shared PostgreSQL
incident store written by another agent) are seen by the poll; in-process ones wake it at once.

Every ``hello`` and ``change`` carries an SSE ``id`` of ``EPOCH-SEQ``: the epoch is new at each agent start, so a
page that reconnects (the browser sends ``Last-Event-ID``) after a restart is told to ``resync`` (fetch all its
regions again) even if the new process counted to the same number; within one process it is sent what moved
since its id. A ``ping`` event every ``keepalive`` seconds lets the page see a stream that went silent (a
network that dropped without a reset) and open a new one.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
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
_EVENT_ID = re.compile(r"([0-9a-f]{8})-([0-9]{1,18})")


def parse_id(text: str | None) -> tuple[str, int] | None:
    """``EPOCH-SEQ`` (a ``Last-Event-ID`` or a poll's ``seen``) as a pair; None when absent or malformed."""
    m = _EVENT_ID.fullmatch((text or "").strip())
    return (m.group(1), int(m.group(2))) if m else None


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
        self.epoch = secrets.token_hex(4)  # this process's: ids of an earlier run mean "catch up with everything"
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
            if not self._markers:  # the first look sets the baseline; later, what moved while nobody watched
                self._markers = self._safe_markers() or {}  # is found by the new watcher's first look
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

    def current(self) -> str:
        """The id of the state as of now, for a page being rendered: its script asks what moved since this id, so
        a change between the page's rendering and its first poll or stream is not lost. Taken before the page
        reads its data (a change after that has a later id)."""
        return str(self.poll(None)["id"])

    def poll(self, seen: tuple[str, int] | None) -> dict[str, Any]:
        """For a page whose stream was refused (the cap on open streams): what moved since ``seen``, at once.

        The page asks every few seconds and holds no server worker in between. The state is read at most once
        per ``interval`` seconds however many pages ask; the first look only sets the baseline. ``resync``:
        ``seen`` is from another run of the agent (or unknown), and the page fetches all its regions again."""
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
            resync = seen is not None and (seen[0] != self.epoch or seen[1] > seq)
            what = [] if seen is None or resync or seen[1] == seq else self._since(seen[1])
        return {"seq": seq, "epoch": self.epoch, "id": f"{self.epoch}-{seq}", "what": what, "resync": resync}

    # ---- a stream
    def follow(
        self,
        counts: Callable[[], dict[str, int]],
        alive: Callable[[], str],
        keepalive: float = 15.0,
        after: tuple[str, int] | None = None,
    ) -> Iterator[bytes]:
        """SSE bytes for one page: ``hello`` with the counts, then ``change`` events, until ``alive()`` says why not.

        ``alive()`` returns "" while the page's session is valid (and renews it), else why it ended, sent to the
        page in a ``logout`` event. ``after``: the ``Last-Event-ID`` of a page that reconnects."""
        with self._cond:
            self._subscribers += 1
            self._ensure_watcher()
            resync = after is not None and (after[0] != self.epoch or after[1] > self._seq)
            seen = after[1] if after is not None and not resync else self._seq
        try:
            yield b"retry: 3000\n\n"
            hello = {"seq": seen, "epoch": self.epoch, "counts": counts(), "resync": resync, "keepalive": keepalive}
            yield _sse("hello", hello, f"{self.epoch}-{seen}")
            last_sent = time.monotonic()
            while not self._closed:
                with self._cond:
                    if self._seq == seen:
                        self._cond.wait(min(keepalive, 5.0))
                    seq = self._seq
                    what = self._since(seen)
                why = alive()
                if why:  # the session ended or its token was revoked: the page must log in again
                    yield _sse("logout", {"reason": why})
                    return
                if seq != seen:
                    seen = seq
                    yield _sse("change", {"seq": seq, "epoch": self.epoch, "what": what, "counts": counts()},
                               f"{self.epoch}-{seq}")  # fmt: skip
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent >= keepalive:
                    # an event, not a comment: the page sees it (a silent stream is a dead one) and a gone client
                    # is found (the write fails and the generator closes)
                    yield b"event: ping\ndata: {}\n\n"
                    last_sent = time.monotonic()
        finally:
            with self._cond:
                self._subscribers -= 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()
