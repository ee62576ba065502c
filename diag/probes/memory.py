"""Memory, swap, pressure stall information (PSI) and OOM kills, from /proc/meminfo, /proc/pressure, /proc/vmstat."""

from __future__ import annotations

from diag.errors import NoData
from diag.model import Evidence, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register


class MemoryOptions(ProbeOptions, kw_only=True):
    available_warning_percent: float = 10.0
    available_critical_percent: float = 5.0
    swap_used_warning_percent: float = 80.0
    pressure_some_warning_percent: float = 20.0  # avg10 share of time some task stalled on memory
    pressure_full_critical_percent: float = 10.0  # avg10 share of time all tasks stalled on memory


def parse_meminfo(text: str) -> dict[str, float]:
    """Fields of /proc/meminfo in bytes (the kernel's 'kB' is KiB); counts without unit stay counts."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        value = float(parts[0])
        out[name.strip()] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return out


def parse_pressure(text: str) -> dict[str, dict[str, float]]:
    """``some avg10=0.00 avg60=0.00 avg300=0.00 total=123`` -> {"some": {"avg10": 0.0, ..., "total": 123}}."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        out[kind] = {k: float(v) for k, v in (f.split("=", 1) for f in fields)}
    return out


def _metric_name(field: str) -> str:
    return field.replace("(", "_").replace(")", "").lower()


@register
class MemoryProbe(Probe):
    name = "memory"
    help = "Memory, swap, pressure stall (PSI) and OOM kills."
    Options = MemoryOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        self._oom_kills: float | None = None

    def collect(self) -> Result:
        assert isinstance(self.options, MemoryOptions)
        o = self.options
        info = parse_meminfo(read_text(self.paths.proc("meminfo")))
        if "MemTotal" not in info:
            raise NoData("/proc/meminfo has no MemTotal")
        r = Result()
        by_field = r.metric(
            "diag_memory_meminfo_bytes",
            "Every /proc/meminfo field, in bytes (page counts as counts).",
            labels=("field",),
        )
        for k, v in info.items():
            by_field.add(v, _metric_name(k))
        total, avail = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0.0))
        swap_total, swap_free = info.get("SwapTotal", 0.0), info.get("SwapFree", 0.0)
        r.metric("diag_memory_total_bytes", "Physical memory.").add(total)
        r.metric("diag_memory_available_bytes", "Memory available for new work without swapping.").add(avail)
        r.metric("diag_swap_total_bytes", "Swap space.").add(swap_total)
        r.metric("diag_swap_free_bytes", "Unused swap space.").add(swap_free)

        avail_pct = 100.0 * avail / total if total else 100.0
        ev = [
            Evidence(
                "metric",
                "/proc/meminfo",
                f"MemTotal {total / 2**20:.0f} MiB, MemAvailable "
                f"{avail / 2**20:.0f} MiB ({avail_pct:.1f} %), SwapTotal {swap_total / 2**20:.0f} MiB, "
                f"SwapFree {swap_free / 2**20:.0f} MiB",
            )
        ]
        if avail_pct <= o.available_critical_percent:
            r.find(
                "memory_low",
                "critical",
                f"only {avail_pct:.1f} % of memory available",
                cause="memory_exhausted",
                evidence=ev,
            )
        elif avail_pct <= o.available_warning_percent:
            r.find(
                "memory_low",
                "warning",
                f"only {avail_pct:.1f} % of memory available",
                cause="memory_exhausted",
                evidence=ev,
            )
        if swap_total > 0:
            used_pct = 100.0 * (swap_total - swap_free) / swap_total
            if used_pct >= o.swap_used_warning_percent:
                r.find(
                    "swap_used",
                    "warning",
                    f"{used_pct:.0f} % of swap in use",
                    cause="memory_exhausted",
                    evidence=ev,
                )

        self._pressure(r)
        self._oom(r)
        return r

    def _pressure(self, r: Result) -> None:
        assert isinstance(self.options, MemoryOptions)
        stall = r.metric(
            "diag_pressure_stall_seconds_total",
            "Time tasks stalled on a resource (PSI).",
            "counter",
            ("resource", "kind"),
        )
        avg10 = r.metric(
            "diag_pressure_avg10_ratio",
            "Share of the last 10 s tasks stalled on a resource (PSI).",
            labels=("resource", "kind"),
        )
        for resource in ("cpu", "memory", "io"):
            try:
                psi = parse_pressure(read_text(self.paths.proc("pressure", resource)))
            except NoData:
                continue  # kernel without PSI: the other figures still count
            for kind, f in psi.items():
                stall.add(f.get("total", 0.0) / 1e6, resource, kind)
                avg10.add(f.get("avg10", 0.0) / 100, resource, kind)
            if resource == "memory":
                some, full = psi.get("some", {}).get("avg10", 0.0), psi.get("full", {}).get("avg10", 0.0)
                ev = [Evidence("metric", "/proc/pressure/memory", f"some avg10={some:.2f} %, full avg10={full:.2f} %")]
                if full >= self.options.pressure_full_critical_percent:
                    r.find(
                        "memory_pressure",
                        "critical",
                        f"all tasks stalled on memory {full:.0f} % of the time",
                        cause="memory_exhausted",
                        evidence=ev,
                    )
                elif some >= self.options.pressure_some_warning_percent:
                    r.find(
                        "memory_pressure",
                        "warning",
                        f"tasks stalled on memory {some:.0f} % of the time",
                        cause="memory_exhausted",
                        evidence=ev,
                    )

    def _oom(self, r: Result) -> None:
        try:
            text = read_text(self.paths.proc("vmstat"))
        except NoData:
            return
        for line in text.splitlines():
            if line.startswith("oom_kill "):
                kills = float(line.split()[1])
                r.metric(
                    "diag_oom_kills_total", "Processes killed by the kernel's OOM killer since boot.", "counter"
                ).add(kills)
                if self._oom_kills is not None and kills > self._oom_kills:
                    n = int(kills - self._oom_kills)
                    r.find(
                        "oom_kill",
                        "critical",
                        f"the kernel OOM killer killed {n} process(es)",
                        cause="memory_exhausted",
                        evidence=[Evidence("metric", "/proc/vmstat oom_kill", f"{self._oom_kills:.0f} -> {kills:.0f}")],
                    )
                self._oom_kills = kills
