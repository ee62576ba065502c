"""Runs probes with a timeout each and keeps the latest outcome of every probe.

A probe that hangs is reported as failed when its timeout passes; its thread is left to finish on
its own (Python cannot kill a thread), and the probe is not started again until it has, so a stuck
probe costs one thread, never a pile of them. Helper programs run by probes are killed at their
timeout by :func:`diag.probes.base.run_command`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from diag.config import AgentConfig
from diag.errors import NoData
from diag.model import Finding, Result
from diag.probes import Probe, probes

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
    generation: int = 0  # bumps on every completed run; lets the exporter cache converted families


class ProbeRunner:
    """Owns the enabled probe instances and their states."""

    def __init__(self, config: AgentConfig, only: list[str] | None = None) -> None:
        self.config = config
        self.hostname = config.hostname or socket.gethostname()
        self.probes: dict[str, Probe] = {}
        for name, opts in config.probes.items():
            if (only is None and opts.enabled) or (only is not None and name in only):
                self.probes[name] = probes.get(name)(opts, config.paths)
        self.states: dict[str, ProbeState] = {n: ProbeState(n) for n in self.probes}
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.probe_workers), thread_name_prefix="probe")
        self._inflight: dict[str, Future[Result]] = {}
        self._lock = threading.Lock()
        self.on_result: list[Callable[[str, ProbeState], None]] = []  # notified after every run

    def run(self, name: str) -> ProbeState:
        """Run one probe now (from the scheduler or the CLI) and record its outcome."""
        probe = self.probes[name]
        state = self.states[name]
        with self._lock:
            busy = self._inflight.get(name)
            if busy is not None and not busy.done():
                self._record(state, None, f"previous run still going after {probe.options.timeout:g} s", 0.0)
                return state
            fut = self._pool.submit(probe.collect)
            self._inflight[name] = fut
        started = time.perf_counter()
        try:
            result = fut.result(timeout=probe.options.timeout)
        except FutureTimeout:
            self._record(state, None, f"timed out after {probe.options.timeout:g} s", time.perf_counter() - started)
        except NoData as e:
            state.no_data = True
            self._record(state, Result(), None, time.perf_counter() - started, no_data_reason=str(e))
        except Exception as e:  # one failing probe never fails the scrape or the other probes
            log.warning("probe %s failed: %s", name, e, exc_info=log.isEnabledFor(logging.DEBUG))
            self._record(state, None, f"{type(e).__name__}: {e}", time.perf_counter() - started)
        else:
            state.no_data = False
            self._record(state, result, None, time.perf_counter() - started)
        return state

    def _record(
        self,
        state: ProbeState,
        result: Result | None,
        error: str | None,
        duration: float,
        no_data_reason: str = "",
    ) -> None:
        state.runs += 1
        state.duration_s = duration
        state.last_run = time.time()
        state.error = error or (no_data_reason or None)
        state.success = error is None
        if error is not None:
            state.failures += 1
            state.result = Result()  # stale figures would lie; the failure itself is the signal
        elif result is not None:
            for f in result.findings:
                f.host = self.hostname
                f.labels.setdefault("probe", state.name)
            state.result = result
        state.generation += 1
        for cb in self.on_result:
            cb(state.name, state)

    def run_all(self) -> dict[str, ProbeState]:
        """Run every probe once, concurrently, and wait for all (``diag probe``)."""
        threads = [threading.Thread(target=self.run, args=(n,)) for n in self.probes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.states

    def findings(self) -> list[Finding]:
        return [f for s in self.states.values() for f in s.result.findings]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
