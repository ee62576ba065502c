"""Disk I/O probe on two recorded /proc/diskstats snapshots, 10 s apart on an injected clock."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diag.errors import ProbeError
from diag.model import Result
from diag.probes.base import Paths
from diag.probes.diskio import DiskIoOptions, DiskIoProbe

FIX = Path(__file__).parents[2] / "fixtures" / "proc" / "diskio"


def value(r: Result, name: str, dev: str) -> float:
    return next(v for m in r.metrics if m.name == name for lv, v in m.samples if lv == (dev,))


def devices(r: Result) -> set[str]:
    return {lv[0] for m in r.metrics if m.name == "diag_disk_reads_completed_total" for lv, _ in m.samples}


def test_counters_in_base_units_and_busy_finding(tmp_path: Path) -> None:
    shutil.copy(FIX / "t0" / "diskstats", tmp_path / "diskstats")
    now = [1000.0]
    probe = DiskIoProbe(DiskIoOptions(), Paths(procfs=tmp_path), clock=lambda: now[0])
    first = probe.collect()
    assert devices(first) == {"vda"}  # loop*, zram0 and the partition vda1 are excluded by default
    line = (FIX / "t0" / "diskstats").read_text().splitlines()[8].split()
    assert line[2] == "vda"
    assert value(first, "diag_disk_read_bytes_total", "vda") == int(line[5]) * 512
    assert value(first, "diag_disk_io_time_seconds_total", "vda") == int(line[12]) / 1000
    assert value(first, "diag_disk_flush_requests_total", "vda") == int(line[18])
    assert not first.findings
    # the busy ratio needs two runs, but its family is declared from the first (a scrape sees a stable set)
    [share] = [m for m in first.metrics if m.name == "diag_disk_busy_ratio"]
    assert not share.samples

    shutil.copy(FIX / "t1" / "diskstats", tmp_path / "diskstats")
    now[0] += 10.0  # the recorded t1 is 10 s after t0; io_time grew by 9.6 s
    second = probe.collect()
    assert value(second, "diag_disk_busy_ratio", "vda") == 0.96
    assert value(second, "diag_disk_io_now", "vda") == 12
    [busy] = second.findings
    assert busy.check == "disk_busy" and busy.subject == "vda" and busy.severity == "warning"
    assert "96 %" in busy.summary
    assert len(busy.evidence[0].text.splitlines()) == 2  # the two diskstats lines


def test_exclude_regex_is_configurable(tmp_path: Path) -> None:
    shutil.copy(FIX / "t0" / "diskstats", tmp_path / "diskstats")
    r = DiskIoProbe(DiskIoOptions(device_exclude="^loop"), Paths(procfs=tmp_path)).collect()
    assert devices(r) == {"vda", "vda1", "zram0"}


def test_garbage_names_the_file_and_line(tmp_path: Path) -> None:
    text = (FIX / "t0" / "diskstats").read_text().replace("vda 5", "vda x", 1)
    (tmp_path / "diskstats").write_text(text)
    with pytest.raises(ProbeError, match=r"^/proc/diskstats:9: not a counter line"):
        DiskIoProbe(DiskIoOptions(), Paths(procfs=tmp_path)).collect()
