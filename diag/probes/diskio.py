"""Block device I/O counters from /proc/diskstats, and a finding when a device is busy nearly all the time.

Field layout (Documentation/admin-guide/iostats.rst): after ``major minor name`` come reads completed,
reads merged, sectors read, ms reading, writes completed, writes merged, sectors written, ms writing,
I/Os in progress, ms doing I/O, weighted ms; kernels >= 4.18 add 4 discard fields, >= 5.5 two flush
fields. A sector here is always 512 bytes, whatever the device's sector size.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

SECTOR = 1 / 512  # divisor that turns sectors into bytes (a power of two: exact)

# (field index after the name, metric suffix, help, divisor); ms fields become seconds, sectors bytes
COUNTERS: tuple[tuple[int, str, str, float], ...] = (
    (0, "reads_completed_total", "Reads completed successfully.", 1.0),
    (1, "reads_merged_total", "Adjacent reads merged before being issued.", 1.0),
    (2, "read_bytes_total", "Bytes read.", SECTOR),
    (3, "read_time_seconds_total", "Seconds spent by all reads.", 1000.0),
    (4, "writes_completed_total", "Writes completed successfully.", 1.0),
    (5, "writes_merged_total", "Adjacent writes merged before being issued.", 1.0),
    (6, "written_bytes_total", "Bytes written.", SECTOR),
    (7, "write_time_seconds_total", "Seconds spent by all writes.", 1000.0),
    (9, "io_time_seconds_total", "Seconds the device had I/O in flight (busy time).", 1000.0),
    (10, "io_time_weighted_seconds_total", "Seconds spent doing I/O, weighted by the requests in flight.", 1000.0),
    (11, "discards_completed_total", "Discards completed successfully.", 1.0),
    (12, "discards_merged_total", "Adjacent discards merged before being issued.", 1.0),
    (13, "discarded_bytes_total", "Bytes discarded.", SECTOR),
    (14, "discard_time_seconds_total", "Seconds spent by all discards.", 1000.0),
    (15, "flush_requests_total", "Flush requests completed successfully.", 1.0),
    (16, "flush_requests_time_seconds_total", "Seconds spent by all flush requests.", 1000.0),
)


class DiskIoOptions(ProbeOptions, kw_only=True):
    # like node_exporter: RAM disks, loop devices and partitions (their disk is already counted)
    device_exclude: str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p|mmcblk\d+p)\d+$"
    busy_warning_percent: float = 90.0  # share of wall time the device had I/O in flight between runs


@register
class DiskIoProbe(Probe):
    name = "diskio"
    help = "Disk I/O counters per block device; a finding when a device is busy nearly all the time."
    Options = DiskIoOptions

    def __init__(self, options: ProbeOptions, paths: Paths, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(options, paths)
        self._clock = clock  # injectable so a test can replay two recorded snapshots a known time apart
        assert isinstance(options, DiskIoOptions)
        self._exclude = re.compile(options.device_exclude)
        self._skip: dict[str, bool] = {}  # device name -> excluded; names are stable, the regex runs once each
        self._last: dict[str, tuple[float, str]] = {}  # device -> (io ms, its diskstats line)
        self._last_at = 0.0

    def collect(self) -> Result:
        assert isinstance(self.options, DiskIoOptions)
        text = read_text(self.paths.proc("diskstats"))
        now = self._clock()
        r = Result()
        fams = [r.metric(f"diag_disk_{suffix}", h, "counter", ("device",)) for _, suffix, h, _ in COUNTERS]
        in_progress = r.metric("diag_disk_io_now", "I/O requests in flight right now.", labels=("device",))
        seen: dict[str, tuple[float, str]] = {}
        skip = self._skip
        for lineno, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if len(parts) < 14:
                continue
            dev = parts[2]
            excluded = skip.get(dev)
            if excluded is None:
                excluded = skip[dev] = self._exclude.search(dev) is not None
            if excluded:
                continue
            try:
                values = [float(v) for v in parts[3:]]
            except ValueError:
                raise ProbeError(f"/proc/diskstats:{lineno}: not a counter line: {line[:80]!r}") from None
            n = len(values)
            for (idx, _, _, scale), fam in zip(COUNTERS, fams, strict=True):
                if idx < n:
                    fam.add(values[idx] / scale, dev)
            in_progress.add(values[8], dev)
            seen[dev] = (values[9], line.strip())
        if not seen and not text.strip():
            raise NoData("/proc/diskstats is empty")

        span_ms = (now - self._last_at) * 1000.0
        # Declared on every run, samples from the second on: the family set a scrape sees is then the same from
        # the first scrape (a rule or panel on it is not "unknown" until the probe happens to have run twice).
        share = r.metric(
            "diag_disk_busy_ratio",
            "Share of wall time the device had I/O in flight since the previous run.",
            labels=("device",),
        )
        if self._last and span_ms > 0:
            for dev, (io_ms, line) in seen.items():
                prev = self._last.get(dev)
                if prev is None or io_ms < prev[0]:
                    continue  # new device or counter reset
                busy = min(1.0, (io_ms - prev[0]) / span_ms)
                share.add(busy, dev)
                if busy * 100.0 >= self.options.busy_warning_percent:
                    r.find(
                        "disk_busy",
                        "warning",
                        f"disk {dev} busy {busy * 100:.0f} % of the last {span_ms / 1000:.0f} s",
                        subject=dev,
                        cause="storage_slow",
                        evidence=[
                            Evidence(
                                "file",
                                "/proc/diskstats (previous run, this run)",
                                f"{prev[1]}\n{line}",
                                {"device": dev, "busy_ratio": round(busy, 4), "interval_seconds": span_ms / 1000},
                            )
                        ],
                    )
        self._last = seen
        self._last_at = now
        return r
