"""File descriptor probe on recorded file-nr, status and limits files; fd directories are built per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from diag.model import Result
from diag.probes.base import Paths
from diag.probes.fds import FdsOptions, FdsProbe, parse_limit

FIX = Path(__file__).parents[2] / "fixtures" / "proc" / "fds"


def make_proc(tmp_path: Path, fds: dict[int, int]) -> Path:
    """The recorded processes, each with ``fds[pid]`` entries in its fd directory (sockets, pipes, files)."""
    proc = tmp_path / "proc"
    shutil.copytree(FIX / "normal", proc)
    for pid, n in fds.items():
        fd_dir = proc / str(pid) / "fd"
        fd_dir.mkdir()
        for i in range(n):
            target = f"socket:[{9000 + i}]" if i % 3 else ("pipe:[77]" if i % 2 else "/var/log/app.log")
            os.symlink(target, fd_dir / str(i))
    return proc


def values(r: Result) -> dict[str, float]:
    return {m.name: m.samples[0][1] for m in r.metrics}


def test_system_figures_and_no_finding(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {7001: 10, 7002: 50, 7003: 20})
    r = FdsProbe(FdsOptions(), Paths(procfs=proc)).collect()
    got = values(r)
    assert got["diag_filefd_allocated"] == 491 and got["diag_filefd_maximum"] == 2466177
    # 7002 (FDSize 64) is skipped at once; 7003 (FDSize 16384, limit 1048576) cannot reach 80 % but could reach 10000
    assert got["diag_filefd_processes_scanned"] == 2
    assert got["diag_filefd_process_usage_ratio"] == 0.1
    assert not r.findings


def test_process_near_its_limit(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {7001: 85, 7002: 60, 7003: 301})
    r = FdsProbe(FdsOptions(process_warning_fds=300), Paths(procfs=proc)).collect()
    found = {f.subject: f for f in r.findings}
    assert sorted(found) == ["bigserver", "leaky"]
    leaky = found["leaky"]
    assert leaky.severity == "warning" and leaky.check == "filefd_process"
    assert leaky.summary == "process leaky (pid 7001) holds 85 file descriptors, 85 % of its limit 100"
    assert "Max open files" in leaky.evidence[0].text
    assert leaky.evidence[0].data["kinds"] == {"socket": 56, "pipe": 14, "file": 15}
    big = found["bigserver"]  # far from its limit, but over the absolute threshold
    assert big.severity == "warning" and "301 file descriptors" in big.summary
    assert values(r)["diag_filefd_process_usage_ratio"] == 0.85


def test_critical_share_and_system_wide(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {7001: 96})
    shutil.copy(FIX / "high" / "sys" / "fs" / "file-nr", proc / "sys" / "fs" / "file-nr")
    r = FdsProbe(FdsOptions(), Paths(procfs=proc)).collect()
    sev = {f.check: f.severity for f in r.findings}
    assert sev == {"filefd_process": "critical", "filefd_system": "warning"}  # 2100000 of 2466177 = 85 %
    assert (
        not FdsProbe(FdsOptions(scan_processes=False, system_warning_percent=99), Paths(procfs=proc)).collect().findings
    )


def test_parse_limit() -> None:
    soft, line = parse_limit((FIX / "normal" / "7001" / "limits").read_text())
    assert soft == 100 and line.startswith("Max open files")
    assert parse_limit("Max open files unlimited unlimited files\n")[0] is None
