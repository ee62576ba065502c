"""CPU time per core and mode, context switches, interrupts and forks, from /proc/stat."""

from __future__ import annotations

import os

from diag.errors import NoData
from diag.model import Evidence, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class CpuOptions(ProbeOptions, kw_only=True):
    busy_warning_percent: float = 95.0  # all cores busy for a whole interval
    iowait_warning_percent: float = 30.0  # cores stalled on disk


@register
class CpuProbe(Probe):
    name = "cpu"
    help = "CPU seconds per core and mode; busy and iowait share between runs."
    Options = CpuOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        self._last: tuple[float, float, float] | None = None  # total, idle, iowait jiffies

    def collect(self) -> Result:
        assert isinstance(self.options, CpuOptions)
        text = read_text(self.paths.proc("stat"))
        hz = float(os.sysconf("SC_CLK_TCK"))
        r = Result()
        secs = r.metric("diag_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "counter", ("cpu", "mode"))
        counters = {
            "ctxt": r.metric("diag_context_switches_total", "Context switches since boot.", "counter"),
            "intr": r.metric("diag_interrupts_total", "Interrupts serviced since boot.", "counter"),
            "processes": r.metric("diag_forks_total", "Processes and threads created since boot.", "counter"),
        }
        total = idle = iowait = 0.0
        ncpu = 0
        for line in text.splitlines():
            parts = line.split()
            if not parts:
                continue
            key = parts[0]
            if key.startswith("cpu") and key != "cpu":
                ncpu += 1
                values = [float(v) for v in parts[1 : 1 + len(MODES)]]
                for mode, v in zip(MODES, values, strict=False):
                    secs.add(v / hz, key[3:], mode)
            elif key == "cpu":
                values = [float(v) for v in parts[1 : 1 + len(MODES)]]
                total = sum(values)
                idle, iowait = values[3], values[4] if len(values) > 4 else 0.0
            elif key in counters:
                counters[key].add(float(parts[1]))
        if ncpu == 0:
            raise NoData("no per-CPU lines in /proc/stat")
        r.metric("diag_cpus_online", "Number of CPUs the kernel reports online.").add(ncpu)

        # Declared on every run, samples from the second on (as diskio's busy ratio): a scrape then sees the same
        # families from the first run, and a rule or panel on them is not "unknown" until the probe ran twice.
        busy_m = r.metric("diag_cpu_busy_ratio", "Share of CPU time not idle since the previous run.")
        wait_m = r.metric("diag_cpu_iowait_ratio", "Share of CPU time waiting on I/O since the previous run.")
        if self._last is not None and total > self._last[0]:
            span = total - self._last[0]
            busy = 100.0 * (1 - (idle - self._last[1] + iowait - self._last[2]) / span)
            wait = 100.0 * (iowait - self._last[2]) / span
            busy_m.add(busy / 100)
            wait_m.add(wait / 100)
            ev = [Evidence("metric", "CPU share since previous run", f"busy {busy:.1f} %, iowait {wait:.1f} %")]
            if busy >= self.options.busy_warning_percent:
                r.find(
                    "cpu_saturated",
                    "warning",
                    f"CPU busy {busy:.0f} % across {ncpu} cores",
                    cause="cpu_exhausted",
                    evidence=ev,
                )
            if wait >= self.options.iowait_warning_percent:
                r.find(
                    "cpu_iowait_high",
                    "warning",
                    f"CPU waiting on disk I/O {wait:.0f} % of the time",
                    cause="storage_slow",
                    evidence=ev,
                )
        self._last = (total, idle, iowait)
        return r
