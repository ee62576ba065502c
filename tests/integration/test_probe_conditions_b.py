"""Part B probes under real conditions: a log that receives OOM-killer lines and gets rotated, backups that age,
a textfile directory exported by a running ``diag agent``, and the hardware probes on this machine.

The log and backup tests run ``diag probe`` as a real process each time, so every run is a true agent
restart that must pick up its offsets from the state directory. The textfile test starts ``diag agent``
on 127.0.0.1 (ports 19150-19199) and scrapes its /metrics with urllib.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DIAG, StartAgent, wait_for

pytestmark = pytest.mark.integration

PORTS = range(19150, 19200)
FIXTURES = Path(__file__).parents[1] / "fixtures"
OOM_LINES = (FIXTURES / "logscan" / "oom-kern.log").read_text().splitlines(keepends=True)


def diag_probe(inventory: Path, data: Path, probe: str) -> tuple[int, dict[str, Any]]:
    """Run ``diag probe --only PROBE --json`` as its own process; (exit status, that probe's JSON)."""
    proc = subprocess.run(
        [DIAG, "probe", "--inventory", str(inventory), "--data", str(data), "--only", probe, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode in (0, 1, 2), proc.stderr
    [out] = json.loads(proc.stdout)["probes"]
    assert out["success"], out
    return proc.returncode, out


def matches_total(out: dict[str, Any], pattern: str, source: str) -> float:
    for s in out["samples"]:
        if s["name"] == "diag_log_matches_total" and s["labels"] == {"pattern": pattern, "source": source}:
            return float(s["value"])
    return 0.0


def test_logscan_oom_restart_and_rotation(tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    kern = logdir / "kern.log"
    kern.write_text("Nov 23 00:00:01 web-03 kernel: [1.0] an old boot: Out of memory: Killed process 1 (init)\n")
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"agent:\n  probes:\n    logscan:\n      files: [{kern}]\n      journal: false\n")
    data = tmp_path / "data"

    # A daemon's view: the file stays open for appending, also across the rename below.
    writer = kern.open("a", buffering=1)
    try:
        code, out = diag_probe(inv, data, "logscan")  # first run: starts at the end, old history is no news
        assert code == 0 and out["findings"] == []

        for line in OOM_LINES:
            writer.write(line)
        code, out = diag_probe(inv, data, "logscan")
        assert code == 2  # critical
        [f] = out["findings"]
        assert (f["check"], f["severity"], f["cause"]) == ("log_oom_kill", "critical", "memory_exhausted")
        evidence = f["evidence"][0]["text"]
        assert "python3 invoked oom-killer" in evidence
        assert "oom-kill:constraint=CONSTRAINT_NONE" in evidence
        assert "Out of memory: Killed process 48213 (python3)" in evidence
        assert "an old boot" not in evidence
        assert matches_total(out, "oom_kill", str(kern)) == 3

        # a restart (a new process, same state dir): the old lines are not reported again
        code, out = diag_probe(inv, data, "logscan")
        assert code == 0 and out["findings"] == []
        assert matches_total(out, "oom_kill", str(kern)) == 3

        # rotation: lines just before it, then rename to .1, a new file, and lines appended to both
        writer.write("Nov 23 01:30:00 web-03 kernel: [2.0] r1 nginx[10]: segfault at 10 ip 0 sp 0 error 4\n")
        os.rename(kern, logdir / "kern.log.1")
        writer.write("Nov 23 01:30:01 web-03 kernel: [2.1] r2 nginx[11]: segfault at 11 ip 0 sp 0 error 4\n")
        with kern.open("a") as new:
            new.write("Nov 23 01:30:02 web-03 kernel: [2.2] r3 nginx[12]: segfault at 12 ip 0 sp 0 error 4\n")
            new.write(OOM_LINES[-1])
        code, out = diag_probe(inv, data, "logscan")
        got = {f["check"]: f for f in out["findings"]}
        assert set(got) == {"log_segfault", "log_oom_kill"}
        seg = got["log_segfault"]["evidence"][0]["text"].splitlines()
        assert [ln.split()[6] for ln in seg] == ["r1", "r2", "r3"]  # each new line once, in order
        assert matches_total(out, "segfault", str(kern)) == 3
        assert matches_total(out, "oom_kill", str(kern)) == 4

        # after the rotation everything stays counted once, also across another restart
        with kern.open("a") as new:
            new.write("Nov 23 01:31:00 web-03 kernel: [3.0] r4 nginx[13]: segfault at 13 ip 0 sp 0 error 4\n")
        code, out = diag_probe(inv, data, "logscan")
        assert matches_total(out, "segfault", str(kern)) == 4
        assert [f["evidence"][0]["text"].split()[6] for f in out["findings"]] == ["r4"]
        read = next(s["value"] for s in out["samples"] if s["name"] == "diag_log_bytes_read_total")
        written = (logdir / "kern.log.1").stat().st_size + kern.stat().st_size
        first_line = len(kern.with_name("kern.log.1").read_text().splitlines(keepends=True)[0])
        assert read == written - first_line  # every byte after the first run was read exactly once
    finally:
        writer.close()


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"  # Debian package systemd-journal-remote


def journal_append(directory: Path, *entries: dict[str, str]) -> None:
    """Append entries to a real journal file, written by systemd-journal-remote from the export format."""
    out = []
    for i, e in enumerate(entries):
        fields = {
            "__REALTIME_TIMESTAMP": str(time.time_ns() // 1000 + i),
            "__MONOTONIC_TIMESTAMP": str(time.monotonic_ns() // 1000 + i),
            "_BOOT_ID": "3c9e5f0b6d8a4e2c9f1d7b3a5e6c8d90",
            **e,
        }
        out.append("".join(f"{k}={v}\n" for k, v in fields.items()) + "\n")
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={directory / 'remote.journal'}", "-"],
        input="".join(out).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )


def test_logscan_follows_a_real_journal(tmp_path: Path) -> None:
    if not Path(JOURNAL_REMOTE).exists():
        pytest.fail("systemd-journal-remote is missing: scripts/test.sh installs it (debian-packages.txt)")
    jdir = tmp_path / "journal"
    jdir.mkdir()
    journal_append(jdir, {"MESSAGE": "Out of memory: Killed process 1 (history)", "SYSLOG_IDENTIFIER": "kernel"})
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"agent:\n  probes:\n    logscan: {{files: [], journal_directory: '{jdir}'}}\n")
    data = tmp_path / "data"

    code, out = diag_probe(inv, data, "logscan")  # first run: the journal's history is not news
    assert code == 0 and out["findings"] == []
    oom = OOM_LINES[-1].split("kernel: ", 1)[1].split("] ", 1)[1].rstrip()
    journal_append(
        jdir,
        {"MESSAGE": "python3 invoked oom-killer: gfp_mask=0x140cca, order=0", "SYSLOG_IDENTIFIER": "kernel"},
        {"MESSAGE": oom, "SYSLOG_IDENTIFIER": "kernel"},
        {
            "MESSAGE": "Failed password for root from 203.0.113.7 port 51234 ssh2",
            "SYSLOG_IDENTIFIER": "sshd",
            "_PID": "77",
        },
    )
    code, out = diag_probe(inv, data, "logscan")
    got = {f["check"]: f for f in out["findings"]}
    assert code == 2 and set(got) == {"log_oom_kill", "log_auth_failure"}
    assert "kernel: Out of memory: Killed process 48213 (python3)" in got["log_oom_kill"]["evidence"][0]["text"]
    assert "history" not in got["log_oom_kill"]["evidence"][0]["text"]
    assert got["log_auth_failure"]["evidence"][0]["text"].startswith("sshd[77]: Failed password")
    assert matches_total(out, "oom_kill", "journal") == 2

    code, out = diag_probe(inv, data, "logscan")  # restart: the cursor was kept
    assert out["findings"] == [] and matches_total(out, "oom_kill", "journal") == 2
    journal_append(
        jdir, {"MESSAGE": "INFO: task kworker:1 blocked for more than 120 seconds.", "SYSLOG_IDENTIFIER": "kernel"}
    )
    code, out = diag_probe(inv, data, "logscan")
    assert [f["check"] for f in out["findings"]] == ["log_hung_task"]
    assert matches_total(out, "oom_kill", "journal") == 2


def test_backup_freshness_with_real_files(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "agent:\n  probes:\n    backup:\n      jobs:\n"
        f"        - {{name: db, glob: '{backups}/db-*.sql.gz', max_age_hours: 26}}\n"
    )
    old = backups / "db-20251120.sql.gz"
    old.write_bytes(os.urandom(2048))
    t = time.time() - 3 * 24 * 3600
    os.utime(old, (t, t))
    code, out = diag_probe(inv, tmp_path / "data", "backup")
    [f] = out["findings"]
    assert code == 2 and f["check"] == "backup_stale" and f["severity"] == "critical"
    assert "72." in f["summary"] and str(old) in f["evidence"][0]["text"]

    fresh = backups / "db-20251123.sql.gz"
    fresh.write_bytes(os.urandom(4096))
    code, out = diag_probe(inv, tmp_path / "data", "backup")
    assert code == 0 and out["findings"] == []
    values = {s["name"]: s["value"] for s in out["samples"]}
    assert values["diag_backup_files"] == 2 and values["diag_backup_newest_size_bytes"] == 4096
    assert values["diag_backup_newest_age_seconds"] < 600

    fresh.write_bytes(b"")  # the dump failed and left an empty file
    code, out = diag_probe(inv, tmp_path / "data", "backup")
    assert [f["check"] for f in out["findings"]] == ["backup_too_small"]


def _sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    for fam in families.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def _machine_has_systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


def _machine_has_sensors() -> bool:
    return any(Path("/sys/class/thermal").glob("thermal_zone*/temp")) or any(
        Path("/sys/class/hwmon").glob("hwmon*/**/temp*_input")
    )


def _machine_has_disk_health() -> bool:
    mdstat = Path("/proc/mdstat")
    if mdstat.exists() and any(line.startswith("md") for line in mdstat.read_text().splitlines()):
        return True
    smartctl = shutil.which("smartctl")
    if smartctl is None:
        return False
    scan = subprocess.run([smartctl, "--scan-open"], capture_output=True, text=True, timeout=60, check=False)
    return any(line.startswith("/dev/") for line in scan.stdout.splitlines())


def test_agent_exports_textfiles_and_hardware_probes_have_no_data(tmp_path: Path, start_agent: StartAgent) -> None:
    tf = tmp_path / "textfile"
    shutil.copytree(FIXTURES / "textfile" / "good", tf)
    shutil.copy(FIXTURES / "textfile" / "broken" / "half_written.prom", tf / "broken.prom")
    inventory = f"""
agent:
  probes:
    textfile: {{directory: "{tf}", interval: 1}}
    logscan: {{files: ["{tmp_path}/no-such.log"]}}
"""
    agent = start_agent(inventory, ports=PORTS)
    assert 19150 <= agent.port < 19200

    def scraped() -> dict[str, Any] | None:
        fams = {f.name: f for f in text_string_to_metric_families(agent.metrics())}
        needed = ("backup_runs", "diag_textfile_scrape_error", "diag_probe_no_data")
        if not all(n in fams for n in needed):
            return None
        # a probe that has not run yet has no health samples: wait until every probe asserted on below has run
        waited = ("thermal", "systemd", "diskhealth", "logscan", "timesync")
        if any(_sample(fams, "diag_probe_success", probe=p) is None for p in waited):
            return None
        return fams

    fams = wait_for(scraped, timeout=60, what="textfile metrics and the hardware probes' health on /metrics")

    # the good files, as they were written, with their types
    assert fams["backup_runs"].type == "counter"
    assert _sample(fams, "backup_runs_total", result="failed") == 3
    assert fams["backup_duration_seconds"].type == "histogram"
    assert _sample(fams, "backup_duration_seconds_bucket", le="600") == 410  # labels exactly as written
    assert fams["raid_io_latency_seconds"].type == "summary"
    assert _sample(fams, "raid_io_latency_seconds", quantile="0.99") == 0.04
    assert _sample(fams, "custom_untyped_value") == 42
    assert _sample(fams, "diag_textfile_mtime_seconds", file="backup_job.prom") is not None
    # the broken one: skipped, flagged, and named in the agent's log and in a finding
    assert "app_queue_depth" not in fams
    assert _sample(fams, "diag_textfile_mtime_seconds", file="broken.prom") is None
    assert _sample(fams, "diag_textfile_scrape_error") == 1
    assert _sample(fams, "diag_finding", check="textfile_invalid", subject="broken.prom") == 1
    wait_for(lambda: "broken.prom" in agent.stderr() and "line 4" in agent.stderr(), what="the parse warning")
    assert _sample(fams, "diag_probe_success", probe="textfile") == 1

    # thermal, systemd, diskhealth on this machine: no data where the hardware or systemd is absent,
    # never a failure
    expect = {
        "thermal": _machine_has_sensors(),
        "systemd": _machine_has_systemd(),
        "diskhealth": _machine_has_disk_health(),
        "logscan": False,  # pointed at a file that does not exist, and no journal: nothing to watch
    }
    for probe, has_data in expect.items():
        assert _sample(fams, "diag_probe_success", probe=probe) == 1, probe
        assert _sample(fams, "diag_probe_no_data", probe=probe) == (0 if has_data else 1), probe
    # "no data" is not a failure in the agent's own view either
    assert not set(expect) & set(agent.health()["failing_probes"])
    assert _sample(fams, "diag_probe_success", probe="timesync") == 1
