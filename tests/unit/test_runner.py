"""The probe runner: success, no data, failure, timeout and the "previous run still going" path.

Probes are the real cpu and memory probes reading a procfs tree in a temp dir, made from recorded
files (tests/fixtures/agent/proc); a FIFO that nobody writes stands in for a read that hangs.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from diag import config
from diag.probes.runner import ProbeRunner, ProbeState

FIXTURES = Path(__file__).parent.parent / "fixtures" / "agent" / "proc"


def make_runner(procfs: Path, *only: str, timeout: float = 5.0) -> ProbeRunner:
    raw: dict[str, object] = {
        "paths": {"procfs": str(procfs)},
        "hostname": "test-host",
        "probes": {name: {"timeout": timeout} for name in only},
    }
    return ProbeRunner(config.build(None, raw), only=list(only))


@pytest.fixture
def procfs(tmp_path: Path) -> Path:
    d = tmp_path / "proc"
    shutil.copytree(FIXTURES, d)
    return d


def test_success_records_samples_and_bumps_generation(procfs: Path) -> None:
    runner = make_runner(procfs, "cpu", "memory")
    states = runner.run_all()
    assert set(states) == {"cpu", "memory"}
    cpu = states["cpu"]
    assert (cpu.success, cpu.no_data, cpu.error, cpu.runs, cpu.generation) == (True, False, None, 1, 1)
    names = {m.name for m in cpu.result.metrics}
    assert "diag_cpu_seconds_total" in names
    # the ratios need two runs, but their families are declared from the first (a scrape sees a stable set)
    assert all(not m.samples for m in cpu.result.metrics if m.name in ("diag_cpu_busy_ratio", "diag_cpu_iowait_ratio"))
    assert {"diag_cpu_busy_ratio", "diag_cpu_iowait_ratio"} <= names
    # 2 CPUs x 8 modes in the recorded /proc/stat
    secs = next(m for m in cpu.result.metrics if m.name == "diag_cpu_seconds_total")
    assert len(secs.samples) == 16
    runner.run("cpu")
    assert cpu.runs == 2 and cpu.generation == 2


def test_missing_file_is_no_data_not_failure(procfs: Path) -> None:
    (procfs / "meminfo").unlink()
    runner = make_runner(procfs, "memory")
    s = runner.run("memory")
    assert s.success and s.no_data
    assert s.error is not None and "meminfo" in s.error and "does not exist" in s.error
    assert s.failures == 0 and s.result.metrics == []


def test_unreadable_file_is_no_data(procfs: Path) -> None:
    # A directory where a file should be: reading it fails with EISDIR, as an odd /proc entry would.
    (procfs / "meminfo").unlink()
    (procfs / "meminfo").mkdir()
    s = make_runner(procfs, "memory").run("memory")
    assert s.success and s.no_data and s.error is not None and "meminfo" in s.error


def test_exception_is_a_failed_run_and_drops_stale_figures(procfs: Path) -> None:
    runner = make_runner(procfs, "cpu")
    assert runner.run("cpu").result.metrics
    (procfs / "stat").write_text("cpu  1 2 3 4\ncpu0 one two three four\n")
    s = runner.run("cpu")
    assert not s.success and not s.no_data
    assert s.error is not None and s.error.startswith("ValueError:")
    assert s.failures == 1 and s.result.metrics == []  # the old figures would lie


def test_findings_carry_host_and_probe(procfs: Path) -> None:
    text = (procfs / "meminfo").read_text().splitlines()
    total = next(int(line.split()[1]) for line in text if line.startswith("MemTotal:"))
    lines = [f"MemAvailable:   {total // 100} kB" if line.startswith("MemAvailable:") else line for line in text]
    (procfs / "meminfo").write_text("\n".join(lines) + "\n")
    runner = make_runner(procfs, "memory")
    runner.run("memory")
    [f] = [f for f in runner.findings() if f.check == "memory_low"]
    assert f.severity == "critical" and f.host == "test-host" and f.labels["probe"] == "memory"


def test_hung_probe_times_out_and_is_not_started_twice(procfs: Path) -> None:
    (procfs / "stat").unlink()
    os.mkfifo(procfs / "stat")  # open() for reading blocks until someone opens it for writing
    # 2 s, not 0.5: the memory probe and the healthy cpu run at the end must finish within it on a loaded machine
    runner = make_runner(procfs, "cpu", "memory", timeout=2.0)
    seen: list[tuple[str, str | None]] = []
    runner.on_result.append(lambda name, s: seen.append((name, s.error)))

    s = runner.run("cpu")
    assert not s.success and s.error == "timed out after 2 s"
    assert runner.busy() == ["cpu"]
    threads = threading.active_count()

    s = runner.run("cpu")  # the first run is still blocked in open()
    assert not s.success and s.error == "previous run still going after 2 s"
    assert s.failures == 2 and threading.active_count() == threads  # no second thread was started

    assert runner.run("memory").success  # other probes are unaffected

    # Unblock the stuck read: the writer opens and closes, the reader sees EOF and the thread ends.
    fd = os.open(procfs / "stat", os.O_WRONLY)
    os.close(fd)
    wait_until(lambda: runner.busy() == [])
    (procfs / "stat").unlink()
    shutil.copy(FIXTURES / "stat", procfs / "stat")
    s = runner.run("cpu")
    assert s.success and s.error is None
    assert [n for n, _ in seen] == ["cpu", "cpu", "memory", "cpu"]


def test_workers_are_reused_between_runs(procfs: Path) -> None:
    runner = make_runner(procfs, "cpu", "memory")
    for _ in range(5):
        runner.run("cpu")
        runner.run("memory")
    assert runner._workers._started == 1  # one after the other: one worker thread did all ten runs
    assert runner.states["cpu"].runs == 5 and runner.states["memory"].runs == 5


def test_run_all_returns_every_state(procfs: Path) -> None:
    runner = make_runner(procfs, "cpu", "memory")
    states = runner.run_all()
    assert all(isinstance(s, ProbeState) and s.runs == 1 for s in states.values())


def test_shutdown_releases_a_caller_waiting_on_a_hung_probe(procfs: Path) -> None:
    (procfs / "stat").unlink()
    os.mkfifo(procfs / "stat")
    runner = make_runner(procfs, "cpu", timeout=60)
    waiter = threading.Thread(target=runner.run, args=("cpu",))
    waiter.start()
    wait_until(lambda: runner.busy() == ["cpu"])
    runner.shutdown()
    waiter.join(10)
    assert not waiter.is_alive()  # released long before the 60 s timeout
    s = runner.states["cpu"]
    assert s.runs == 0 and s.failures == 0  # shutting down is neither an outcome nor a failure
    assert runner.run("memory" if "memory" in runner.probes else "cpu").runs == 0  # no new runs after shutdown
    os.close(os.open(procfs / "stat", os.O_WRONLY))  # let the stuck thread end


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
