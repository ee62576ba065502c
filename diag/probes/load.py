"""Load average and runnable/total tasks from /proc/loadavg, judged against the number of online cores."""

from __future__ import annotations

import os

from diag.errors import NoData
from diag.model import Evidence, Result, Severity
from diag.probes.base import Probe, ProbeOptions, read_text, register


class LoadOptions(ProbeOptions, kw_only=True):
    warning_per_core: float = 1.0  # load5 above cores x this: more runnable tasks than cores can serve
    critical_per_core: float = 2.0  # load5 above cores x this: tasks wait as long as they run


def parse_cpu_list(text: str) -> int:
    """Count the CPUs in a sysfs CPU list such as ``0-3,8,10-11``."""
    n = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        n += int(hi) - int(lo) + 1 if hi else 1
    return n


@register
class LoadProbe(Probe):
    name = "load"
    help = "Load average (1, 5, 15 min) and runnable tasks, against the number of online cores."
    Options = LoadOptions

    def cores(self) -> int:
        """Online cores from sysfs (follows hotplug); the process' view when sysfs is not there."""
        try:
            return parse_cpu_list(read_text(self.paths.sys("devices", "system", "cpu", "online"))) or 1
        except (NoData, ValueError):
            return os.cpu_count() or 1

    def collect(self) -> Result:
        assert isinstance(self.options, LoadOptions)
        path = self.paths.proc("loadavg")
        line = read_text(path).strip()
        parts = line.split()
        try:
            load1, load5, load15 = float(parts[0]), float(parts[1]), float(parts[2])
            running, _, total = parts[3].partition("/")
            runnable, tasks = float(running), float(total)
        except (IndexError, ValueError):
            raise NoData(f"{path}:1: unexpected format {line[:80]!r}") from None
        cores = self.cores()
        r = Result()
        r.metric("diag_load1", "Load average over the last minute.").add(load1)
        r.metric("diag_load5", "Load average over the last 5 minutes.").add(load5)
        r.metric("diag_load15", "Load average over the last 15 minutes.").add(load15)
        r.metric("diag_load_runnable_tasks", "Tasks runnable right now (running or waiting for a CPU).").add(runnable)
        r.metric("diag_load_tasks", "Tasks (processes and threads) that exist right now.").add(tasks)
        r.metric("diag_load_per_core_ratio", "5-minute load average divided by the online cores.").add(load5 / cores)

        o = self.options
        severity: Severity | None = None
        limit = 0.0
        if load5 > cores * o.critical_per_core:
            severity, limit = "critical", cores * o.critical_per_core
        elif load5 > cores * o.warning_per_core:
            severity, limit = "warning", cores * o.warning_per_core
        if severity is not None:
            ev = Evidence(
                "file",
                "/proc/loadavg",
                f"{line}\n{cores} online cores; load5 {load5:.2f} > {limit:g}",
                {"load1": load1, "load5": load5, "load15": load15, "cores": cores, "limit": limit},
            )
            r.find(
                "load_high",
                severity,
                f"load average {load5:.2f} over 5 min on {cores} cores ({load5 / cores:.1f} per core)",
                subject="load5",
                cause="cpu_overloaded",
                evidence=[ev],
            )
        return r
