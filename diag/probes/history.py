"""A short in-memory history of a few key figures of the agent's own host, for the console's sparklines.

Fed by the probe runner's ``on_result`` hook: each run of the load, memory, CPU or filesystem probe adds one
point to its series (the last :data:`KEEP` points, about an hour at the default intervals). Nothing is written
to disk: Prometheus keeps the real history; this only lets the host page show a trend without one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diag.model import Result
    from diag.probes.runner import ProbeState

KEEP = 240


def _one(r: Result, name: str) -> float | None:
    for m in r.metrics:
        if m.name == name and m.samples:
            return m.samples[0][1]
    return None


def _memory_used(r: Result) -> float | None:
    total, avail = _one(r, "diag_memory_total_bytes"), _one(r, "diag_memory_available_bytes")
    return 100.0 * (1 - avail / total) if total and avail is not None else None


def _fullest_filesystem(r: Result) -> float | None:
    size = {lv: v for m in r.metrics if m.name == "diag_filesystem_size_bytes" for lv, v in m.samples}
    avail = {lv: v for m in r.metrics if m.name == "diag_filesystem_avail_bytes" for lv, v in m.samples}
    used = [100.0 * (1 - avail[lv] / s) for lv, s in size.items() if s > 0 and lv in avail]
    return max(used) if used else None


def _cpu_busy(r: Result) -> float | None:
    v = _one(r, "diag_cpu_busy_ratio")
    return 100.0 * v if v is not None else None


@dataclass(frozen=True, slots=True)
class Series:
    key: str
    title: str
    unit: str
    probe: str
    value: Callable[[Result], float | None]


SERIES = (
    Series("load1", "load (1 min)", "", "load", lambda r: _one(r, "diag_load1")),
    Series("cpu", "CPU busy", "%", "cpu", _cpu_busy),
    Series("memory", "memory used", "%", "memory", _memory_used),
    Series("filesystem", "fullest filesystem", "%", "filesystem", _fullest_filesystem),
)


class History:
    """``on_probe`` is the runner hook; ``points(key)`` gives ``[(time, value), ...]``, oldest first."""

    def __init__(self, keep: int = KEEP) -> None:
        self._points: dict[str, deque[tuple[float, float]]] = {s.key: deque(maxlen=keep) for s in SERIES}
        self._lock = threading.Lock()

    def on_probe(self, name: str, state: ProbeState) -> None:
        if not state.success:
            return
        for s in SERIES:
            if s.probe == name:
                v = s.value(state.result)
                if v is not None:
                    with self._lock:
                        self._points[s.key].append((state.last_run or time.time(), v))

    def points(self, key: str) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._points.get(key, ()))
