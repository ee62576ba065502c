"""Load probe on recorded /proc/loadavg lines against the recorded online CPU list (2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.errors import NoData
from diag.probes.base import Paths
from diag.probes.load import LoadOptions, LoadProbe, parse_cpu_list

FIX = Path(__file__).parents[2] / "fixtures"
SYS = FIX / "sys" / "load"


def test_idle_host_has_metrics_and_no_finding() -> None:
    r = LoadProbe(LoadOptions(), Paths(procfs=FIX / "proc" / "load" / "idle", sysfs=SYS)).collect()
    got = {m.name: m.samples[0][1] for m in r.metrics}
    assert got["diag_load1"] == 0.37 and got["diag_load15"] == 0.13
    assert got["diag_load_runnable_tasks"] == 1 and got["diag_load_tasks"] == 89
    assert not r.findings


def test_load_above_twice_the_cores_is_critical() -> None:
    paths = Paths(procfs=FIX / "proc" / "load" / "busy", sysfs=SYS)
    [f] = LoadProbe(LoadOptions(), paths).collect().findings
    assert f.severity == "critical" and f.check == "load_high"
    assert "4.60" in f.summary and "2 cores" in f.summary
    assert "3.90 4.60 3.20 5/120 9999" in f.evidence[0].text
    [w] = LoadProbe(LoadOptions(critical_per_core=3.0), paths).collect().findings
    assert w.severity == "warning"


def test_cpu_list_and_bad_file(tmp_path: Path) -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == 7
    (tmp_path / "loadavg").write_text("garbage\n")
    with pytest.raises(NoData, match="loadavg:1"):
        LoadProbe(LoadOptions(), Paths(procfs=tmp_path, sysfs=SYS)).collect()
