"""Processes probe on a recorded /proc tree: real stat lines, edited to hold zombies and D-state processes."""

from __future__ import annotations

import shutil
from pathlib import Path

from diag.model import Result
from diag.probes.base import Paths
from diag.probes.processes import ProcessesOptions, ProcessesProbe, parse_stat

FIX = Path(__file__).parents[2] / "fixtures" / "proc" / "processes"


def metric(r: Result, name: str) -> dict[tuple[str, ...], float]:
    return {lv: v for m in r.metrics if m.name == name for lv, v in m.samples}


def test_comm_with_spaces_and_parentheses() -> None:
    comm, fields = parse_stat((FIX / "6000" / "stat").read_bytes())
    assert comm == b"(my) prog x"
    assert fields[0] == b"R" and fields[1] == b"5320"


def test_counts_and_findings(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(FIX, proc)
    (proc / "self").mkdir()  # non-numeric entries are not processes
    (proc / "4242").mkdir()  # a process that exited between listdir and open: skipped
    now = [500.0]
    probe = ProcessesProbe(ProcessesOptions(), Paths(procfs=proc), clock=lambda: now[0])
    first = probe.collect()
    states = {k[0]: v for k, v in metric(first, "diag_processes_state").items()}
    assert states["Z"] == 7 and states["D"] == 6 and states["R"] == 1 and states["S"] == 6 and states["I"] == 1
    assert states["T"] == 0  # every known state is exported, also when empty
    assert metric(first, "diag_processes")[()] == 21
    assert metric(first, "diag_processes_threads")[()] == 4 + 7 + 6 + 12 + 6  # num_threads of each process
    assert metric(first, "diag_processes_pid_max")[()] == 32768
    found = {f.check: f for f in first.findings}
    assert sorted(found) == ["processes_uninterruptible", "zombie_processes"]
    zombies = found["zombie_processes"]
    assert "parent gunicorn (pid 4000) has not reaped 7" in zombies.summary
    assert zombies.evidence[0].text.splitlines()[1].split() == ["4000", "gunicorn", "7", *map(str, range(4001, 4008))]
    assert zombies.evidence[0].data["parents"] == {4000: list(range(4001, 4008))}
    blocked = found["processes_uninterruptible"]
    assert "nfs_wait_bit_killable" in blocked.evidence[0].text and "io_schedule" in blocked.evidence[0].text
    # first run: no CPU deltas yet, so only the memory table; the biggest RSS comes first
    assert [e.title for e in blocked.evidence[1:]] == ["top 5 processes by memory (RSS)"]
    assert blocked.evidence[1].text.splitlines()[1].split()[0] == "6000"

    # 10 s later "(my) prog x" used 5 s of CPU (500 ticks at 100 Hz): 50 % of a core
    stat = proc / "6000" / "stat"
    fields = stat.read_text().split(" ")
    hz = probe._hz
    fields[15] = str(int(fields[15]) + int(5 * hz))  # utime is field 14 of the line; comm takes 3 words here
    stat.write_text(" ".join(fields))
    now[0] += 10.0
    second = probe.collect()
    top_cpu = next(e for f in second.findings for e in f.evidence if e.title == "top 5 processes by CPU")
    first_row = top_cpu.text.splitlines()[1].split()
    assert first_row[0] == "6000" and first_row[-1] == "50.0"


def test_thresholds_are_configurable(tmp_path: Path) -> None:
    opts = ProcessesOptions(zombies_warning=10, uninterruptible_warning=10)
    assert not ProcessesProbe(opts, Paths(procfs=FIX)).collect().findings
