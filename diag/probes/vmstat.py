"""Paging and swapping counters from /proc/vmstat, and a finding when the host swaps hard.

As node_exporter, only a selection is exported by default (``fields``, a regex over the field names:
page-ins/outs, swap-ins/outs, page faults; the memory probe has the OOM kills). ``nr_*`` fields are
current page counts, so they become gauges; everything else is a counter ``diag_vmstat_<field>_total``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Metric, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

HELP = {
    "pgpgin": "Bytes paged in from block devices.",
    "pgpgout": "Bytes paged out to block devices.",
    "pswpin": "Pages swapped in.",
    "pswpout": "Pages swapped out.",
    "pgfault": "Page faults, minor and major.",
    "pgmajfault": "Major page faults (the page had to be read from disk).",
    "oom_kill": "Processes killed by the kernel's OOM killer.",
}


KIB_FIELDS = frozenset({"pgpgin", "pgpgout"})


class VmstatOptions(ProbeOptions, kw_only=True):
    fields: str = r"^(pgpg|pswp|pg.*fault)"  # fields to export (oom_kill is the memory probe's)
    swap_warning_pages_per_second: float = 250.0  # pages swapped in+out per second between runs (~1 MiB/s)


@register
class VmstatProbe(Probe):
    name = "vmstat"
    help = "Paging, swapping and page-fault counters from /proc/vmstat; a finding when the host swaps hard."
    Options = VmstatOptions

    def __init__(self, options: ProbeOptions, paths: Paths, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(options, paths)
        assert isinstance(options, VmstatOptions)
        self._clock = clock  # injectable so a test can replay two recorded snapshots a known time apart
        self._fields = re.compile(options.fields)
        self._wanted: dict[str, bool] = {}  # field -> exported; the regex runs once per field name
        self._last: tuple[float, float, float] | None = None  # time, pswpin, pswpout
        self._page = float(os.sysconf("SC_PAGE_SIZE"))

    def collect(self) -> Result:
        assert isinstance(self.options, VmstatOptions)
        text = read_text(self.paths.proc("vmstat"))
        now = self._clock()
        r = Result()
        values: dict[str, float] = {}
        wanted = self._wanted
        for lineno, line in enumerate(text.splitlines(), 1):
            name, _, value = line.partition(" ")
            keep = wanted.get(name)
            if keep is None:
                keep = wanted[name] = self._fields.search(name) is not None
            if not keep and name not in ("pswpin", "pswpout"):
                continue
            try:
                v = float(value)
            except ValueError:
                raise ProbeError(f"/proc/vmstat:{lineno}: not a counter line: {line[:80]!r}") from None
            values[name] = v
            if keep:
                help_text = HELP.get(name, f"Kernel counter {name} from /proc/vmstat.")
                if name in KIB_FIELDS:  # the kernel counts these in KiB; Prometheus wants base units
                    r.metrics.append(
                        Metric(f"diag_vmstat_{name}_bytes_total", help_text, "counter", samples=[((), v * 1024)])
                    )
                elif name.startswith("nr_"):
                    r.metrics.append(Metric(f"diag_vmstat_{name}", help_text, "gauge", samples=[((), v)]))
                else:
                    r.metrics.append(Metric(f"diag_vmstat_{name}_total", help_text, "counter", samples=[((), v)]))
        if not values and not text.strip():
            raise NoData("/proc/vmstat is empty")
        swin, swout = values.get("pswpin"), values.get("pswpout")
        if swin is not None and swout is not None:
            last = self._last
            if last is not None and now > last[0] and swin >= last[1] and swout >= last[2]:
                span = now - last[0]
                rate = (swin - last[1] + swout - last[2]) / span
                if rate >= self.options.swap_warning_pages_per_second:
                    r.find(
                        "swapping",
                        "warning",
                        f"the host swaps {rate:.0f} pages/s ({rate * self._page / 2**20:.1f} MiB/s)",
                        subject="swap",
                        cause="memory_exhausted",
                        evidence=[
                            Evidence(
                                "metric",
                                "/proc/vmstat (previous run -> this run)",
                                f"pswpin {last[1]:.0f} -> {swin:.0f}\npswpout {last[2]:.0f} -> {swout:.0f}\n"
                                f"over {span:.0f} s",
                                {"pages_per_second": round(rate, 1), "interval_seconds": span},
                            )
                        ],
                    )
            self._last = (now, swin, swout)
        return r
