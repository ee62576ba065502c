"""The distributed scheduler: checks on intervals, fired by the leader only, each interval slot at most once.

Time is cut into slots per job (``every`` seconds, shifted by a per-job offset so 10,000 jobs do not all fire
on the same second). The leader keeps a heap of next-fire times, so a tick costs O(due jobs x log n), not
O(all jobs). Before it fires a slot it claims ``diag:fired:<job>:<slot>`` with SET NX: a leader that stalled
past its lock and a new leader that took over can never both fire the same slot, and a new leader fires the
slot that was due during the hand-over exactly once.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from diag import yamlsrc
from diag.distributed import keys
from diag.distributed.leader import Leadership
from diag.errors import ConfigError

if TYPE_CHECKING:
    from diag.inventory import Inventory

log = logging.getLogger(__name__)

FIRINGS_KEY = keys.FIRINGS
FIRINGS_KEPT = 100_000


class ScheduledCheck(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One entry of a schedule file: every ``every`` seconds, run ``playbook`` on ``targets`` (kind ``check``)
    or poll the SNMP devices among ``targets`` with their inventory profiles (kind ``snmp``)."""

    name: str
    targets: list[str]
    every: float
    playbook: str = ""
    kind: Literal["check", "snmp"] = "check"
    vars: dict[str, Any] = {}


class _ScheduleFile(msgspec.Struct, forbid_unknown_fields=True):
    schedule: list[Any]  # each job checked on its own: one bad job does not hide the others' problems


def load_schedule(
    path: str | Path, inventory: Inventory | None = None, playbook_exists: Callable[[str], bool] | None = None
) -> list[ScheduledCheck]:
    """Read a schedule file; every problem is reported as ``FILE:LINE: message`` in one ConfigError.

    With ``inventory`` every job's targets must name its hosts or groups, and with ``playbook_exists`` every check's
    playbook must exist: a typo is a FILE:LINE problem at start (all of them at once), not a failure at 3 a.m.
    """
    doc = yamlsrc.load_file(path)
    parsed = doc.check_type((), doc.data, _ScheduleFile)
    jobs: list[ScheduledCheck] = []
    if parsed is not None:
        seen: set[str] = set()
        for i, raw in enumerate(parsed.schedule):
            job = doc.check_type(("schedule", i), raw, ScheduledCheck, partial=True)  # then its names too
            if job is None:
                continue
            jobs.append(job)
            if job.name in seen:
                doc.problem(("schedule", i, "name"), f"duplicate job name {job.name!r}")
            seen.add(job.name)
            if not job.every > 0:
                doc.problem(("schedule", i, "every"), "every: must be a positive number of seconds")
            if job.kind == "check" and not job.playbook:
                doc.problem(("schedule", i), "playbook: a check needs a playbook (or set kind: snmp)")
            if not job.targets:
                doc.problem(("schedule", i, "targets"), "targets: name at least one host or group")
            if inventory is not None:
                for k, target in enumerate(job.targets):
                    if target != "all" and target not in inventory.hosts and target not in inventory.groups:
                        doc.problem(("schedule", i, "targets", k), f"targets: no host or group named {target!r}")
            known = playbook_exists is None or job.kind != "check" or not job.playbook or playbook_exists(job.playbook)
            if not known:
                doc.problem(("schedule", i, "playbook"), f"playbook: no playbook {job.playbook!r} (diag playbook list)")
    if doc.problems:
        raise ConfigError("\n".join(yamlsrc.by_line(doc.problems, doc.file)))
    return jobs


def _offset(job: ScheduledCheck) -> float:
    """A stable per-job shift inside its interval (spreads firings; the same on every scheduler)."""
    h = int.from_bytes(hashlib.sha256(job.name.encode()).digest()[:8], "big")
    return (h % 1_000_000) / 1_000_000 * job.every


def slot_of(job: ScheduledCheck, now: float) -> int:
    return int((now - _offset(job)) // job.every)


def slot_start(job: ScheduledCheck, slot: int) -> float:
    return slot * job.every + _offset(job)


Fire = Callable[[ScheduledCheck, int], None]


class DistributedScheduler:
    """Fires due jobs while this process leads; followers only campaign."""

    def __init__(
        self,
        redis_client: Any,
        leadership: Leadership,
        jobs: list[ScheduledCheck],
        fire: Fire,
        clock: Callable[[], float] = time.time,
        namespace: str = "",
    ) -> None:
        self.redis = redis_client
        self.namespace = namespace
        self.leadership = leadership
        self.jobs = jobs
        self.fire = fire
        self.clock = clock
        self._heap: list[tuple[float, int]] = []
        self.fired = 0

    def _rebuild(self, now: float) -> None:
        # A new leader starts each job at its current slot: if the old leader fired it, the fence says so.
        self._heap = [(slot_start(j, slot_of(j, now)), i) for i, j in enumerate(self.jobs)]
        heapq.heapify(self._heap)

    def run_once(self) -> int:
        """One tick: keep/seek leadership, then fire what is due. Returns how many jobs this tick fired."""
        was = self.leadership.leading
        if not self.leadership.tick():
            return 0
        now = self.clock()
        if not was or not self._heap:
            self._rebuild(now)
        due: list[tuple[ScheduledCheck, int]] = []
        while self._heap and self._heap[0][0] <= now:
            _, i = heapq.heappop(self._heap)
            job = self.jobs[i]
            slot = slot_of(job, now)
            due.append((job, slot))
            heapq.heappush(self._heap, (slot_start(job, slot + 1), i))
        if not due:
            return 0
        pipe = self.redis.pipeline()
        for job, slot in due:
            fence = keys.fired(job.name, slot, self.namespace)
            pipe.set(fence, self.leadership.identity, nx=True, ex=int(job.every * 3) + 60)
        claimed = pipe.execute()
        audit = []
        n = 0
        for (job, slot), ok in zip(due, claimed, strict=True):
            if not ok:
                continue  # fenced: this slot was fired already (by us or by the leader before us)
            try:
                self.fire(job, slot)
            except Exception:  # one job's dispatch failing must not stop the others
                log.exception("scheduled check %s (slot %d) could not be dispatched", job.name, slot)
                continue
            n += 1
            audit.append(json.dumps({"job": job.name, "slot": slot, "by": self.leadership.identity, "at": now}))
        if audit:
            pipe = self.redis.pipeline()
            firings = keys.key(self.namespace, FIRINGS_KEY)
            pipe.rpush(firings, *audit)
            pipe.ltrim(firings, -FIRINGS_KEPT, -1)
            pipe.execute()
        self.fired += n
        return n

    def run(self, stop: threading.Event, tick_s: float = 1.0) -> None:
        """Tick until ``stop`` is set; resign the lock on the way out so a follower takes over at once."""
        try:
            while not stop.is_set():
                try:
                    self.run_once()
                except Exception:
                    log.exception("scheduler tick failed")
                stop.wait(tick_s)
        finally:
            self.leadership.resign()
