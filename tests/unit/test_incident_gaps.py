"""No data is not "OK": an incident clears only on a positive observation (the one rule, in the engine).

A run that could not look (a host that did not answer, a step left for approval, a playbook that did not apply,
a probe whose file is gone, a mount whose statvfs fails, a re-check that returns gaps) holds the incident where it
is and journals ``not checked: WHY`` once per reason; the next run that does look clears it as before. The
probe cases run the real filesystem probe on a temporary root through the agent's own feed; a "restart" is a
new service on the same database (the agent's re-check of a probe scope is only known once the probe runs).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from diag.agent.incidents import AgentFeed
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.incidents.sources import observe_report, recheck_findings
from diag.model import Evidence, Finding, Gap, HostResult, Result, RunReport, StepRecord
from diag.probes.base import Paths, ProbeOptions
from diag.probes.filesystem import FilesystemOptions
from diag.probes.runner import ProbeRunner


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def service(tmp_path: Path, clock: Clock) -> IncidentService:
    return IncidentService(from_mapping({"open_after": 0, "close_after": 30}, tmp_path / "data"), clock=clock)


def disk() -> Finding:
    ev = Evidence("command", "df -Pk /data", "/dev/sdb1 1000 990 10 99% /data")
    return Finding("disk_full", "critical", "/data is 99% full", "/data", evidence=[ev], host="web-1")


def events(svc: IncidentService, inc_id: int) -> list[tuple[str, str]]:
    return [(e.kind, e.text) for e in svc.store.events(inc_id)]


def run(status: str, *findings: Finding, steps: list[StepRecord] | None = None) -> RunReport:
    r = HostResult("web-1", status, None if status in ("ok", "findings") else "10.0.0.1:22 (web-1): no route")  # type: ignore[arg-type]
    r.findings, r.steps = list(findings), steps or []
    return RunReport("disk-full", [r])


def test_a_playbook_run_that_did_not_look_holds_the_incident_and_says_so(tmp_path: Path) -> None:
    clock = Clock()
    svc = service(tmp_path, clock)
    try:
        state = {"report": run("findings", disk())}

        def recheck(host: str) -> list[Finding]:
            return recheck_findings(state["report"].results[0])

        observe_report(svc.engine, state["report"], recheck)
        (inc,) = svc.store.query()
        assert inc.state == "open"
        # unreachable, a step error after login, a step left for approval, the playbook not applying: all hold
        approval = [StepRecord("df", "needs_approval", reason="needs approval: changes the host")]
        skipped = RunReport("disk-full", [], skipped=[{"host": "web-1", "reason": "os is not linux"}])
        for report in (run("unreachable"), run("error", steps=[StepRecord("df", "error")]),
                       run("ok", steps=approval), skipped):  # fmt: skip
            state["report"] = report
            outs = [o for o in observe_report(svc.engine, report, recheck) if o.incident_id == inc.id]
            assert [o.action for o in outs] == ["not_checked"], report
            clock.t += 31
            svc.engine.tick()  # the clock has nothing to resolve: the incident never started clearing
            assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        held = [t for k, t in events(svc, inc.id) if k == "not_checked"]
        assert len(held) == 4 and held[0].startswith("not checked: web-1 was not checked (unreachable: ")
        assert "step df needs approval" in held[2] and "the playbook did not run (os is not linux)" in held[3]
        # the host being unreachable is its own finding (and incident); once reached, it clears like any other
        unreach = [i for i in svc.store.query() if i.check_id == "host_unreachable"]
        assert len(unreach) == 1
        # the same reason again is not a new journal line
        state["report"] = run("unreachable")
        observe_report(svc.engine, state["report"], recheck)
        observe_report(svc.engine, state["report"], recheck)
        assert sum(k == "not_checked" for k, _ in events(svc, inc.id)) == 5
        # a positive observation clears it: the run looked and found no full disk, and the re-check agrees
        state["report"] = run("ok")
        assert [o.action for o in observe_report(svc.engine, state["report"], recheck)
                if o.incident_id == inc.id] == ["clearing"]  # fmt: skip
        clock.t += 31
        svc.engine.tick()
        assert svc.store.get(inc.id).state == "resolved"  # type: ignore[union-attr]
    finally:
        svc.close()


def test_a_recheck_that_cannot_look_holds_a_clearing_incident_through_every_tick(tmp_path: Path) -> None:
    clock = Clock()
    svc = service(tmp_path, clock)
    try:
        scope = "snmp:sw-1"
        down = Finding("snmp_interface_down", "critical", "ge-0/0/1 is down", "ge-0/0/1", host="sw-1")
        svc.engine.observe("snmp", scope, [down])
        answer: dict[str, Result] = {"now": Result(gaps=[Gap("SNMP: no answer from 127.0.0.1:161 in 2 s")])}
        svc.engine.observe("snmp", scope, [], recheck=lambda: answer["now"])
        (inc,) = svc.store.query()
        assert inc.state == "clearing"
        for _ in range(3):
            clock.t += 31
            svc.engine.tick()
            assert svc.store.get(inc.id).state == "clearing"  # type: ignore[union-attr]
        held = [t for k, t in events(svc, inc.id) if k == "not_checked"]
        assert held == ["not checked: the re-check of snmp:sw-1 could not look: SNMP: no answer from 127.0.0.1:161 "
                        "in 2 s; stays clearing"]  # fmt: skip
        # a gap about another interface does not hold this one
        answer["now"] = Result(gaps=[Gap("ifInErrors: no earlier sample", frozenset({"x"}), frozenset({"ge-0/0/1"}))])
        clock.t += 31
        svc.engine.tick()
        assert svc.store.get(inc.id).state == "resolved"  # type: ignore[union-attr]
    finally:
        svc.close()


@dataclass
class Config:
    """What the probe runner needs of the agent's configuration, for one probe on a temporary root."""

    paths: Paths
    probes: Mapping[str, ProbeOptions] = field(default_factory=dict)
    hostname: str | None = "web-1"
    probe_workers: int = 1


def fs_root(tmp_path: Path) -> Paths:
    """A /proc/mounts naming one ext4 mount, /data, whose directory is statted for real."""
    proc, root = tmp_path / "proc", tmp_path / "root"
    proc.mkdir()
    (root / "data").mkdir(parents=True)
    (proc / "mounts").write_text("/dev/sdb1 /data ext4 rw,relatime 0 0\n")
    return Paths(procfs=proc, sysfs=tmp_path / "sys", rootfs=root, state=tmp_path / "state")


def test_a_probe_without_data_or_with_a_failing_mount_holds_the_incident_also_across_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    paths = fs_root(tmp_path)
    opts = FilesystemOptions(warning_percent=0.0001, critical_percent=0.0002)  # any used byte is "full"
    mounts = paths.proc("mounts").read_text()

    def agent() -> tuple[IncidentService, ProbeRunner]:
        svc = service(tmp_path, clock)
        runner = ProbeRunner(Config(paths, {"filesystem": opts}))
        AgentFeed(svc, runner)
        return svc, runner

    svc, runner = agent()
    try:
        runner.run("filesystem")
        (inc,) = svc.store.query()
        assert (inc.check_id, inc.subject, inc.state) == ("filesystem_full", "/data", "open")
        paths.proc("mounts").unlink()  # the probe's file is gone: NoData, which used to read as "all clear"
        runner.run("filesystem")
        assert runner.states["filesystem"].no_data
        assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        paths.proc("mounts").write_text(mounts)
        shutil.rmtree(paths.root("/data"))  # statvfs fails on the mount: that one mount was not looked at
        runner.run("filesystem")
        assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        held = [t for k, t in events(svc, inc.id) if k == "not_checked"]
        assert len(held) == 2 and "probe filesystem had no data" in held[0] and "statvfs on /data failed" in held[1]
        paths.root("/data").mkdir()
        opts.warning_percent = opts.critical_percent = 100.0  # looked at, and not full
        runner.run("filesystem")
        assert svc.store.get(inc.id).state == "clearing"  # type: ignore[union-attr]
    finally:
        runner.shutdown()
        svc.close()
    # restart while clearing, long after close_after: the clock must not resolve it without a new observation
    clock.t += 3600
    svc, runner = agent()
    try:
        svc.engine.tick()
        assert svc.store.get(inc.id).state == "clearing"  # type: ignore[union-attr]
        paths.proc("mounts").unlink()
        runner.run("filesystem")  # the first run after the restart has no data: still not resolved
        svc.engine.tick()
        assert svc.store.get(inc.id).state == "clearing"  # type: ignore[union-attr]
        paths.proc("mounts").write_text(mounts)
        runner.run("filesystem")  # looked, not found, and the re-check (the probe again) agrees: resolved
        assert svc.store.get(inc.id).state == "resolved"  # type: ignore[union-attr]
    finally:
        runner.shutdown()
        svc.close()


def test_the_celery_workers_feed_holds_an_unreachable_hosts_incident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's path into the shared engine (tasks._to_incidents) is observe_report: the same rule holds."""
    from types import SimpleNamespace

    from diag.distributed import tasks

    clock = Clock()
    svc = service(tmp_path, clock)
    monkeypatch.setattr(tasks.SETTINGS, "incidents", SimpleNamespace(engine=svc.engine))
    pb = SimpleNamespace(name="disk-full")
    try:
        tasks._to_incidents(HostResult("web-1", "findings", findings=[disk()]), pb, None, None, {"vars": {}})
        (inc,) = svc.store.query()
        down = HostResult("web-1", "unreachable", "10.0.0.1:22 (web-1): connection refused")
        tasks._to_incidents(down, pb, None, None, {"vars": {}})
        assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        assert [k for k, _ in events(svc, inc.id)][-1] == "not_checked"
        assert {i.check_id for i in svc.store.query()} == {"disk_full", "host_unreachable"}
    finally:
        svc.close()


def test_a_log_source_that_cannot_be_read_and_a_backup_without_copies_hold_their_incidents(tmp_path: Path) -> None:
    """Two probes' partial paths, through the agent's feed: a log file that cannot be read (here: replaced by a
    directory) holds the log-pattern incident; a backup job whose copies are gone opens ``backup_missing`` and
    holds ``backup_stale`` (its age was not judged: no copy)."""
    from diag.probes.backup import BackupJob, BackupOptions
    from diag.probes.logscan import LogPattern, LogscanOptions

    clock = Clock()
    root = tmp_path / "root"
    (root / "var/log").mkdir(parents=True)
    (root / "backups").mkdir()
    log, dump = root / "var/log/app.log", root / "backups/db.sql.gz"
    log.write_text("")
    dump.write_bytes(b"x" * 100)
    old = time.time() - 48 * 3600  # the probe judges age by the real clock: two days old, stale against 24 h
    os.utime(dump, (old, old))
    paths = Paths(procfs=tmp_path / "proc", sysfs=tmp_path / "sys", rootfs=root, state=tmp_path / "state")
    opts: dict[str, ProbeOptions] = {
        "logscan": LogscanOptions(
            files=["/var/log/app.log"], journal=False, default_patterns=False,
            patterns=[LogPattern(name="boom", regex="BOOM")],
        ),
        "backup": BackupOptions(jobs=[BackupJob(name="db", glob="/backups/*.sql.gz", max_age_hours=24)]),
    }  # fmt: skip
    svc = service(tmp_path, clock)
    runner = ProbeRunner(Config(paths, opts))
    AgentFeed(svc, runner)
    try:
        runner.run("logscan")  # the first run starts at the end of the file
        log.write_text("x BOOM\n")
        runner.run("logscan")
        runner.run("backup")
        by_check = {i.check_id: i for i in svc.store.query()}
        assert set(by_check) == {"log_boom", "backup_stale"}
        log.unlink()
        log.mkdir()  # cannot be read
        dump.unlink()  # no copy left: missing, and the stale one's age is unknown
        runner.run("logscan")
        runner.run("backup")
        states = {c: svc.store.get(i.id).state for c, i in by_check.items()}  # type: ignore[union-attr]
        assert states == {"log_boom": "open", "backup_stale": "open"}
        assert "backup_missing" in {i.check_id for i in svc.store.query()}
        held = {c: [e.text for e in svc.store.events(i.id) if e.kind == "not_checked"] for c, i in by_check.items()}
        assert "log source /var/log/app.log could not be read" in held["log_boom"][0]
        assert "backup db: no copy to judge" in held["backup_stale"][0]
        log.rmdir()
        log.write_text("")  # readable again, no new match: looked at, gone (and the re-check agrees)
        runner.run("logscan")
        clock.t += 31  # close_after
        runner.run("logscan")
        assert svc.store.get(by_check["log_boom"].id).state == "resolved"  # type: ignore[union-attr]
    finally:
        runner.shutdown()
        svc.close()
