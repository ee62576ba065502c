"""Runs probes with a timeout each and keeps the latest outcome of every probe.

Every run is handed to a daemon worker thread, and the caller waits at most the probe's timeout for
it. A probe that hangs (a read from a dead NFS mount, a FIFO nobody writes) is reported as failed when
its timeout passes; its thread is left to finish on its own (Python cannot kill a thread), and the
probe is not started again until it has, so a stuck probe costs one thread, never a pile of them. The
threads are daemon threads so that a stuck one never keeps the agent from exiting. Helper programs run
by probes are killed at their timeout by :func:`diag.probes.base.run_command`.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from diag.errors import NoData
from diag.model import Finding, Result
from diag.probes import Paths, Probe, ProbeOptions, probes

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ProbeState:
    """The latest outcome of one probe, read by the exporter and the CLI."""

    name: str
    result: Result = field(default_factory=Result)
    success: bool = False
    no_data: bool = False
    error: str | None = None
    duration_s: float = 0.0
    last_run: float = 0.0
    runs: int = 0
    failures: int = 0
    generation: int = 0  # bumps on every recorded run; lets the exporter cache what it rendered
    interval_s: float = 0.0  # configured time between runs (0: run on demand); alerts compare last_run with it


class _Call:
    """One probe run in its own thread: the outcome, and an event set when it is known."""

    __slots__ = ("abandoned", "done", "error", "finished", "fn", "result")

    def __init__(self, fn: Callable[[], Result]) -> None:
        self.fn = fn
        self.done = threading.Event()  # set when the run ends, or when the runner shuts down
        self.finished = False
        self.abandoned = False
        self.result: Result | None = None
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # handed to the waiting caller, which records it
            self.error = e
        finally:
            self.finished = True
            self.done.set()

    def abandon(self) -> None:
        """Wake the waiting caller without an outcome (shutdown): it must not hold the exit up."""
        self.abandoned = True
        self.done.set()


class _Workers:
    """Daemon worker threads that are reused between runs.

    Starting a thread for every run cost ~0.37 ms of CPU here against ~0.13 ms for handing a run to a
    waiting worker: 6 ms per cycle of 17 probes. Workers are created when none is idle (so a stuck one
    never delays the others) and at most ``max_idle`` of them wait for work after a burst.
    """

    def __init__(self, max_idle: int) -> None:
        self._idle: list[queue.SimpleQueue[_Call]] = []
        self._lock = threading.Lock()
        self._max_idle = max(1, max_idle)
        self._started = 0

    def submit(self, call: _Call) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            if inbox is None:
                self._started += 1
                number = self._started
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(inbox,), name=f"probe-worker-{number}", daemon=True).start()
        inbox.put(call)

    def _work(self, inbox: queue.SimpleQueue[_Call]) -> None:
        while True:
            inbox.get()()  # _Call never raises: it keeps the outcome for the caller
            with self._lock:
                if len(self._idle) >= self._max_idle:
                    return  # enough idle workers already: this one ends
                self._idle.append(inbox)


class RunnerConfig(Protocol):
    """What the runner needs of the agent's configuration (:class:`diag.config.AgentConfig` has it)."""

    @property
    def hostname(self) -> str | None: ...

    @property
    def probes(self) -> Mapping[str, ProbeOptions]: ...

    @property
    def paths(self) -> Paths: ...

    @property
    def probe_workers(self) -> int: ...


class ProbeRunner:
    """Owns the enabled probe instances and their states."""

    def __init__(self, config: RunnerConfig, only: list[str] | None = None) -> None:
        self.config = config
        self.hostname = config.hostname or socket.gethostname()
        self.probes: dict[str, Probe] = {}
        for name, opts in config.probes.items():
            if (only is None and opts.enabled) or (only is not None and name in only):
                self.probes[name] = probes.get(name)(opts, config.paths)
        self.states: dict[str, ProbeState] = {
            n: ProbeState(n, interval_s=float(config.probes[n].interval)) for n in self.probes
        }
        self._inflight: dict[str, _Call] = {}
        self._workers = _Workers(config.probe_workers)
        self._closed = False
        self._lock = threading.Lock()
        self.on_result: list[Callable[[str, ProbeState], None]] = []  # notified after every run

    def run(self, name: str) -> ProbeState:
        """Run one probe now (from the scheduler or the CLI), wait at most its timeout, record the outcome."""
        probe = self.probes[name]
        state = self.states[name]
        timeout = probe.options.timeout
        with self._lock:
            if self._closed:
                return state
            busy = self._inflight.get(name)
            stuck = busy is not None and not busy.finished
            if not stuck:
                call = _Call(probe.collect)
                self._inflight[name] = call
                started = time.perf_counter()
                self._workers.submit(call)
        if stuck:
            # The run that timed out earlier is still blocked: starting another would pile up threads.
            self._record(state, None, f"previous run still going after {timeout:g} s", 0.0)
            return state
        finished = call.done.wait(timeout)
        elapsed = time.perf_counter() - started
        if call.abandoned and not call.finished:
            return state  # shutting down: neither an outcome nor a failure
        if not finished:
            log.warning("probe %s timed out after %g s", name, timeout)
            self._record(state, None, f"timed out after {timeout:g} s", elapsed)
        elif isinstance(call.error, NoData):
            self._record(state, Result(), None, elapsed, no_data_reason=str(call.error))
        elif call.error is not None:
            e = call.error
            # One failing probe never fails the scrape or the other probes; the traceback only in debug.
            log.warning("probe %s failed: %s", name, e, exc_info=e if log.isEnabledFor(logging.DEBUG) else None)
            self._record(state, None, f"{type(e).__name__}: {e}", elapsed)
        else:
            self._record(state, call.result, None, elapsed)
        return state

    def _record(
        self,
        state: ProbeState,
        result: Result | None,
        error: str | None,
        duration: float,
        no_data_reason: str = "",
    ) -> None:
        with self._lock:  # the exporter reads states from the HTTP threads
            state.runs += 1
            state.duration_s = duration
            state.last_run = time.time()
            state.no_data = bool(no_data_reason)
            state.error = error or (no_data_reason or None)
            state.success = error is None
            if error is not None:
                state.failures += 1
                state.result = Result()  # stale figures would lie; the failure itself is the signal
            elif result is not None:
                for f in result.findings:
                    f.host = f.host or self.hostname  # network collectors name the device themselves
                    f.labels.setdefault("probe", state.name)
                state.result = result
            state.generation += 1
        for cb in self.on_result:
            cb(state.name, state)

    def add_source(self, name: str) -> ProbeState:
        """A state for a collector that runs on its own (SNMP poller, trap receiver): exposed like a probe's."""
        if name in self.states:
            raise ValueError(f"{name!r} is already a probe or source")
        self.states[name] = ProbeState(name)
        return self.states[name]

    def record(self, name: str, result: Result | None, error: str | None = None, duration: float = 0.0) -> None:
        """Record an outcome of a source added with :meth:`add_source` (or of a probe run elsewhere)."""
        self._record(self.states[name], result, error, duration)

    def run_all(self) -> dict[str, ProbeState]:
        """Run every probe once, concurrently, and wait for all (``diag probe``)."""
        threads = [threading.Thread(target=self.run, args=(n,), name=f"run-{n}") for n in self.probes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.states

    def findings(self) -> list[Finding]:
        return [f for s in self.states.values() for f in s.result.findings]

    def busy(self) -> list[str]:
        """Probes whose last run has not returned yet (hung past its timeout, or running now)."""
        return sorted(n for n, c in self._inflight.items() if not c.finished)

    def shutdown(self) -> None:
        """Start no more runs and release every caller still waiting for one.

        Runs in progress are daemon threads and die with the process. Their callers (the scheduler's
        worker threads, which the interpreter joins at exit) return at once instead of at the timeout.
        """
        with self._lock:
            self._closed = True
            calls = [c for c in self._inflight.values() if not c.finished]
        for c in calls:
            c.abandon()
        stuck = self.busy()
        if stuck:
            log.info("leaving %d probe run(s) behind: %s", len(stuck), ", ".join(stuck))
