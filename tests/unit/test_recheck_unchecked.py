"""A verifying re-check that could not look at the host proves nothing: the incident stays open.

An unreachable host (or refused credentials, or a playbook that errored) reports no ``disk_full`` finding; read as
"gone", it would resolve an incident about a disk that may still be full.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.incidents.sources import NotChecked, observe_report, recheck_findings
from diag.model import Evidence, Finding, HostResult, RunReport


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def disk() -> Finding:
    ev = Evidence("command", "df -Pk /data", "/dev/sdb1 1000 990 10 99% /data")
    return Finding("disk_full", "critical", "/data is 99% full", "/data", evidence=[ev], host="web-1")


def test_recheck_findings_refuses_a_host_that_was_not_checked() -> None:
    assert [f.check for f in recheck_findings(HostResult("web-1", "findings", findings=[disk()]))] == ["disk_full"]
    assert recheck_findings(HostResult("web-1", "ok")) == []
    for status in ("unreachable", "timeout", "auth_failed", "hostkey_mismatch", "hostkey_unknown", "error"):
        with pytest.raises(NotChecked, match=rf"^web-1: the re-check could not check the host \({status}: "):
            recheck_findings(HostResult("web-1", status, "10.0.0.1:22 (web-1): no route"))  # type: ignore[arg-type]


def test_an_unreachable_recheck_keeps_the_incident_open(tmp_path: Path) -> None:
    clock = Clock()
    svc = IncidentService(from_mapping({"open_after": 0, "close_after": 30}, tmp_path), clock=clock)
    try:
        host = {"status": "findings"}

        def recheck(name: str) -> list[Finding]:
            r = HostResult(name, host["status"], None if host["status"] == "findings" else "no answer")  # type: ignore[arg-type]
            if r.status == "findings":
                r.findings = [disk()]
            return recheck_findings(r)

        first = RunReport("disk-full", [HostResult("web-1", "findings", findings=[disk()])])
        observe_report(svc.engine, first, recheck)
        (inc,) = svc.store.query()
        assert inc.state == "open"
        # the host stops answering: the run reports host_unreachable, not disk_full, so disk_full starts clearing
        host["status"] = "unreachable"
        observe_report(svc.engine, RunReport("disk-full", [HostResult("web-1", "unreachable", "no answer")]), recheck)
        clock.t += 31
        svc.engine.tick()
        assert svc.store.get(inc.id).state in ("open", "clearing")  # type: ignore[union-attr]
        assert "resolved" not in [e.kind for e in svc.store.events(inc.id)]
    finally:
        svc.close()
