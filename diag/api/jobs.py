"""Check jobs started through the API: run a playbook on hosts in the background, stream progress, keep the result.

A job runs the use case :func:`diag.services.check.run` (as ``diag check`` does) on a worker thread, with
its own SSH pool. Every host that starts or finishes is an event (numbered, kept with the job), which
``GET /api/v1/checks/{id}/events`` streams as server-sent events and replays from ``Last-Event-ID``; the final
result is ``RunReport.to_dict()``, the ``diag check --json`` document. Jobs live in memory: the newest
``keep`` are kept, and the journal holds the lasting record of every run.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.journal import open_journal
from diag.services.check import CheckRequest, Observer

if TYPE_CHECKING:
    from diag.inventory import Host
    from diag.model import HostResult, RunReport
    from diag.remote.playbook import Playbook

log = logging.getLogger(__name__)

#: Called with each finished report, the actor and the variables (the incident engine, when there is one).
ReportSink = Callable[["RunReport", str, dict[str, Any]], None]


@dataclass(slots=True)
class Event:
    id: int
    name: str  # start | host | done
    data: dict[str, Any]

    def sse(self) -> bytes:
        return f"id: {self.id}\nevent: {self.name}\ndata: {json.dumps(self.data, default=str)}\n\n".encode()


@dataclass(slots=True)
class Job:
    id: str
    actor: str
    playbook: str
    targets: list[str]
    hosts: list[str]
    allow_changes: bool
    approval: str | None = None
    state: str = "queued"  # queued | running | done | failed
    created: float = field(default_factory=time.time)
    finished: float | None = None
    events: list[Event] = field(default_factory=list)
    report: dict[str, Any] | None = None
    error: str | None = None
    #: host -> when its run began (the console shows queued / running / done per target; not an API event, so
    #: the API's stream keeps its start, host, done events and their numbers)
    started: dict[str, float] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    on_change: Callable[[], None] | None = None

    def mark_started(self, host: str) -> None:
        with self.cond:
            self.started[host] = time.time()
            self.cond.notify_all()
        if self.on_change is not None:
            self.on_change()

    def emit(self, name: str, data: dict[str, Any], state: str | None = None) -> None:
        with self.cond:  # the state changes with the event, so a follower never sees "done" without its event
            self.events.append(Event(len(self.events) + 1, name, data))
            if state is not None:
                self.state = state
            self.cond.notify_all()
        if self.on_change is not None:
            self.on_change()

    def follow(
        self, after: int = 0, keepalive: float = 15.0, stop: threading.Event | None = None, running: bool = False
    ) -> Iterator[bytes]:
        """SSE bytes: events after ``after``, then new ones as they come, until the ``done`` event.

        With ``running``, also an unnumbered ``running`` event when a host's run begins (``{"host", "elapsed_s"}``):
        the console's per-target rows. Unnumbered, so ``Last-Event-ID`` counts the same events as the API's stream.
        """
        sent = after
        told: set[str] = set()
        while True:
            with self.cond:
                if len(self.events) <= sent and self.state in ("queued", "running") and (
                    not running or told >= self.started.keys()
                ):
                    self.cond.wait(keepalive)
                new = self.events[sent:]
                over = self.state in ("done", "failed")
                now = time.time()
                began = [(h, now - t) for h, t in self.started.items() if h not in told] if running else []
            for host, elapsed in began:
                told.add(host)
                yield f"event: running\ndata: {json.dumps({'host': host, 'elapsed_s': round(elapsed, 2)})}\n\n".encode()
            if new:
                for ev in new:
                    yield ev.sse()
                sent += len(new)
            elif not over:
                yield b": keepalive\n\n"  # also tells us early when the client is gone (the write fails)
            if over and sent >= len(self.events):
                return
            if stop is not None and stop.is_set():
                return

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "actor": self.actor,
            "playbook": self.playbook,
            "targets": self.targets,
            "hosts": self.hosts,
            "allow_changes": self.allow_changes,
            "approval": self.approval,
            "created": self.created,
            "finished": self.finished,
            "done_hosts": sum(1 for e in self.events if e.name == "host"),
            "error": self.error,
        }


class JobManager:
    """Starts jobs on a small thread pool; remembers the newest ``keep`` of them."""

    def __init__(
        self,
        data: Path,
        known_hosts: list[Path] | None,
        hosts: Mapping[str, Host],
        concurrency: int = 20,
        workers: int = 2,
        keep: int = 200,
        sink: ReportSink | None = None,
    ) -> None:
        self.data = data
        self.known_hosts = known_hosts
        self.hosts = hosts
        self.concurrency = concurrency
        self.keep = keep
        self.sink = sink
        self.on_change: Callable[[], None] | None = None  # the console's live view: a job moved
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diag-api-job")

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def recent(self) -> list[Job]:
        with self._lock:
            return list(reversed(self.jobs.values()))

    def start(
        self,
        actor: str,
        pb: Playbook,
        targets: list[str],
        hosts: list[Host],
        variables: Mapping[str, Any],
        allow_changes: bool = False,
        approval: str | None = None,
    ) -> Job:
        job = Job(secrets.token_hex(8), actor, pb.name, targets, [h.name for h in hosts], allow_changes, approval)
        job.on_change = self.on_change
        with self._lock:
            self.jobs[job.id] = job
            while len(self.jobs) > self.keep:
                old_id, old = next(iter(self.jobs.items()))
                if old.state in ("queued", "running"):
                    break
                del self.jobs[old_id]
        self._pool.submit(self._run, job, pb, hosts, dict(variables))
        return job

    def _run(self, job: Job, pb: Playbook, hosts: list[Host], variables: dict[str, Any]) -> None:
        from diag.services import check as svc
        from diag.services.backends import LocalBackend, ssh_pool

        job.emit("start", {"job": job.id, "playbook": job.playbook, "hosts": job.hosts}, "running")
        req = svc.CheckRequest(pb, hosts, variables, job.allow_changes, list(job.targets), job.actor, job.id)
        observers: list[svc.Observer] = [svc.JournalObserver(open_journal(self.data)), _JobEvents(job)]
        if self.sink is not None:
            observers.append(svc.FindingsObserver(self.sink))
        state = "failed"
        backend = LocalBackend.over(ssh_pool(self.data, self.hosts, self.known_hosts, self.concurrency), hosts)
        try:
            job.report = svc.run(req, backend, observers).to_dict()
            state = "done"
        except Exception as e:  # host failures are results; this is a bug or a broken pool (journaled by the observer)
            log.exception("job %s failed", job.id)
            job.error = f"{type(e).__name__}: {e}"
        finally:
            backend.close()
            job.finished = time.time()
            exit_status = (job.report or {}).get("exit_status")
            job.emit("done", {"job": job.id, "state": state, "exit_status": exit_status}, state)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _JobEvents(Observer):
    """Each finished host becomes a ``host`` event of the job (what the SSE stream and the console show)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def host_started(self, req: CheckRequest, host: str) -> None:
        self.job.mark_started(host)

    def host_done(self, req: CheckRequest, result: HostResult) -> None:
        self.job.emit("host", result.to_dict())
