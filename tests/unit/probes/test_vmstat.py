"""Vmstat probe on two recorded /proc/vmstat snapshots (swap counters edited), 20 s apart on an injected clock."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diag.errors import ProbeError
from diag.probes.base import Paths
from diag.probes.vmstat import VmstatOptions, VmstatProbe

FIX = Path(__file__).parents[2] / "fixtures" / "proc" / "vmstat"


def test_selection_and_swapping(tmp_path: Path) -> None:
    shutil.copy(FIX / "t0" / "vmstat", tmp_path / "vmstat")
    now = [100.0]
    probe = VmstatProbe(VmstatOptions(), Paths(procfs=tmp_path), clock=lambda: now[0])
    first = probe.collect()
    got = {m.name: m.samples[0][1] for m in first.metrics}
    assert got["diag_vmstat_pswpin_total"] == 10000 and got["diag_vmstat_pswpout_total"] == 12000
    assert {"diag_vmstat_pgmajfault_total", "diag_vmstat_pgpgin_bytes_total"} <= set(got)
    assert not [n for n in got if n.startswith("diag_vmstat_nr_")]  # not in the default selection
    assert not first.findings

    shutil.copy(FIX / "t1" / "vmstat", tmp_path / "vmstat")
    now[0] += 20.0  # 20000 + 30000 pages in 20 s = 2500 pages/s
    [f] = probe.collect().findings
    assert f.check == "swapping" and "2500 pages/s" in f.summary
    assert "pswpout 12000 -> 42000" in f.evidence[0].text


def test_nr_fields_are_gauges_and_garbage_names_the_line(tmp_path: Path) -> None:
    shutil.copy(FIX / "t0" / "vmstat", tmp_path / "vmstat")
    r = VmstatProbe(VmstatOptions(fields="^nr_free_pages$"), Paths(procfs=tmp_path)).collect()
    assert [(m.name, m.kind) for m in r.metrics] == [("diag_vmstat_nr_free_pages", "gauge")]
    (tmp_path / "vmstat").write_text("nr_free_pages 12\npswpin lots\n")
    with pytest.raises(ProbeError, match=r"^/proc/vmstat:2: "):
        VmstatProbe(VmstatOptions(), Paths(procfs=tmp_path)).collect()
