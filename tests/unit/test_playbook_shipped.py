"""The checks of every shipped playbook, run over recorded command outputs (tests/fixtures/remote/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diag.model import HostResult
from diag.remote import facts
from diag.remote import playbook as pbmod
from diag.remote.runner import run_check
from tests.unit.fake_ssh import SHIPPED, FakePool, host, scenario


def run(playbook: str, name: str) -> HostResult:
    pb, variables, conn = scenario(playbook, name)
    report = run_check([host()], pb, FakePool({"web-03": conn}), variables)
    assert len(report.results) == 1
    return report.results[0]


def checks(r: HostResult) -> set[tuple[str, str]]:
    return {(f.check, f.subject) for f in r.findings}


def test_every_shipped_playbook_is_valid_and_documented() -> None:
    files = sorted(SHIPPED.glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"linux-baseline", "disk-full", "service-down", "high-load", "network-path", "facts"} <= names
    docs = (SHIPPED.parent / "docs" / "playbooks.md").read_text()
    for f in files:
        pb = pbmod.load(f)
        assert pb.name == f.stem
        assert len(pb.description) > 100, f"{f}: say what the playbook concludes and why"
        assert all(s.description for s in pb.steps), f"{f}: every step says what it looks at"
        assert f"## {pb.name}" in docs
        assert not any(s.changes for s in pb.steps), "shipped diagnostics are read-only"


def test_linux_baseline_lab_full_tmpfs_finds_the_full_filesystem_with_df_evidence() -> None:
    r = run("linux-baseline", "lab-full-tmpfs")
    full = [f for f in r.findings if f.check == "fs_full"]
    assert len(full) == 1
    f = full[0]
    assert f.severity == "critical"
    assert f.subject.endswith("/h02/fs0")
    assert "is 100% full" in f.summary
    ev = f.evidence[0]
    assert ev.kind == "command" and "df -Pk" in ev.data["command"]
    assert any(line.startswith("dgs-tmpfs") and "100%" in line for line in ev.text.splitlines())
    assert {c for c, _ in checks(r)} == {"fs_full", "clock_unsynchronised", "dns_failed", "load_high"}
    steps = {s.id: s for s in r.steps}
    assert steps["failed_units"].status == "skipped"  # no systemd in the lab: skipped, not an error
    assert r.status == "findings" and r.error is None


def test_linux_baseline_finds_every_problem_of_a_sick_debian_host() -> None:
    r = run("linux-baseline", "debian-problems")
    assert checks(r) == {
        ("load_critical", ""),
        ("cpu_iowait", ""),
        ("memory_critical", ""),
        ("oom_kills", ""),
        ("fs_full", "/"),
        ("fs_full", "/var"),
        ("fs_filling", "/srv/data"),
        ("inodes_full", "/var"),
        ("inodes_filling", "/srv/data"),
        ("units_failed", ""),
        ("clock_unsynchronised", ""),
        ("dns_failed", ""),
        ("gateway_unreachable", ""),
        ("iface_errors", "ens3"),
        ("log_errors", ""),
    }
    by = {(f.check, f.subject): f for f in r.findings}
    assert by[("memory_critical", "")].summary.startswith("only 160 MiB of 3922 MiB memory available (4.1%)")
    assert "nginx.service" in by[("units_failed", "")].summary
    assert "192.168.10.1" in by[("gateway_unreachable", "")].summary
    assert "killed 4121 (java), 7788 (postgres) (4 lines in the dmesg log)" in by[("oom_kills", "")].summary
    assert [e.data["step"] for e in by[("oom_kills", "")].evidence] == ["oom", "memory"]
    assert "1412 RX and 31 TX errors" in by[("iface_errors", "ens3")].summary
    # the mount point with a space is one column; its "-" inode use never fires
    disk = next(s for s in r.steps if s.id == "inodes")
    assert {"mount": "/mnt/backup disk", "iuse_pct": None}.items() <= disk.parsed[-1].items()


def test_service_down_with_systemd_narrows_to_the_cause() -> None:
    r = run("service-down", "systemd-failed")
    assert checks(r) == {
        ("unit_not_active", "nginx"),
        ("unit_restarting", "nginx"),
        ("unit_log_errors", "nginx"),
        ("dependency_down", "php8.2-fpm.service"),
        ("port_not_listening", "nginx:80"),
    }
    by = {f.check: f for f in r.findings}
    assert "failed (failed), last result exit-code" in by["unit_not_active"].summary
    assert "Failed to start" in by["unit_log_errors"].summary or "failed" in by["unit_log_errors"].summary
    assert {s.id: s.status for s in r.steps}["process"] == "skipped"


def test_service_down_without_systemd_looks_for_the_process() -> None:
    r = run("service-down", "lab-nginx-missing")
    assert checks(r) == {("process_missing", "nginx"), ("port_not_listening", "nginx:80")}
    assert {s.id: s.status for s in r.steps}["unit"] == "skipped"


def test_disk_full_finds_deleted_open_files_and_largest_dirs() -> None:
    r = run("disk-full", "deleted-open")
    assert {c for c, _ in checks(r)} == {"disk_full", "largest_dirs", "deleted_open_files"}
    by = {f.check: f for f in r.findings}
    assert "9266 MiB are held by deleted files" in by["deleted_open_files"].summary
    assert "nginx (pid 1423)" in by["deleted_open_files"].summary
    assert "/var/log 30 GiB" in by["largest_dirs"].summary
    assert {s.id: s.status for s in r.steps}["inode_hogs"] == "skipped"


def test_disk_full_on_the_lab_tmpfs() -> None:
    r = run("disk-full", "lab-full-tmpfs")
    assert {c for c, _ in checks(r)} == {"disk_full"}


def test_high_load_busy_host() -> None:
    r = run("high-load", "busy")
    assert {c for c, _ in checks(r)} == {
        "load_high",
        "io_blocked",
        "memory_pressure",
        "iowait_high",
        "cpu_saturated",
        "top_cpu",
        "top_memory",
        "d_state",
    }
    by = {f.check: f for f in r.findings}
    assert "java (pid 4121, 187%)" in by["top_cpu"].summary
    assert "44%" in by["iowait_high"].summary  # the since-boot first line (7%) is left out
    assert "jbd2/sda3-8 in jbd2_journal_commit_transaction" in by["d_state"].summary


def test_network_path_loss_traces_where_the_path_stops() -> None:
    r = run("network-path", "loss")
    assert {c for c, _ in checks(r)} == {"target_no_reply", "path_stops"}
    stop = next(f for f in r.findings if f.check == "path_stops")
    assert "hop 3 (198.51.100.7)" in stop.summary


def test_network_path_reachable_gateway_has_no_findings_and_no_trace() -> None:
    r = run("network-path", "lab-gateway")
    assert r.status == "ok" and r.findings == []
    steps = {s.id: s for s in r.steps}
    assert steps["ping"].parsed["received"] == 3
    assert steps["trace"].status == "skipped"


def test_facts_are_collected_kept_with_history_and_diffed(tmp_path: Path) -> None:
    r = run("facts", "lab")
    assert r.status == "ok"
    values = r.values()
    assert values["os"]["ID"] == "debian"
    assert values["cpu"]["count"] == 2
    assert len(values["packages"]) == 799
    assert {"name": "adduser", "version": "3.134", "arch": "all"} in values["packages"]
    assert any(d["name"] == "vda" for d in values["disks"])
    assert values["users"] == [{"login": "diaglab"}]  # who uses the machine: line 1 finds a reporter's workstation
    first = facts.save(tmp_path, "web-03", "facts", values, when=1_700_000_000)
    changed = json.loads(json.dumps(values))
    changed["packages"] = [p for p in changed["packages"] if p["name"] != "adduser"]
    changed["kernel"]["release"] = "6.1.0-99-amd64"
    second = facts.save(tmp_path, "web-03", "facts", changed, when=1_700_000_100)
    assert facts.history(tmp_path, "web-03") == [first, second]
    latest = facts.latest(tmp_path, "web-03")
    assert latest is not None
    s = facts.summary(latest)
    assert s["os"].startswith("Debian GNU/Linux 12") and s["packages"] == 798
    d = facts.diff(json.loads(first.read_text()), latest)
    assert d["kernel"]["to"] == "6.1.0-99-amd64"
    assert d["packages_changed"]["removed"] == ["adduser"]


@pytest.mark.parametrize("name", ["linux-baseline", "disk-full", "service-down", "high-load", "network-path"])
def test_shipped_playbooks_apply_to_linux_only(name: str) -> None:
    pb = pbmod.load(SHIPPED / f"{name}.yaml")
    assert pb.applies("linux", ()) is None
    assert pb.applies("cisco_ios", ()) is not None
