"""Turn a host's result into JSON for the broker and back, so a distributed run renders like a local one."""

from __future__ import annotations

from typing import Any

from diag.model import Evidence, Finding
from diag.remote.runner import HostResult, StepRecord


def host_result_from_dict(d: dict[str, Any]) -> HostResult:
    """Rebuild a :class:`HostResult` from :meth:`HostResult.to_dict` output (the ``diag check --json`` shape)."""
    findings = [
        Finding(
            check=f["check"],
            severity=f["severity"],
            summary=f["summary"],
            subject=f.get("subject", ""),
            cause=f.get("cause"),
            evidence=[Evidence(e["kind"], e["title"], e.get("text", ""), e.get("data", {})) for e in f["evidence"]],
            host=d["host"],
        )
        for f in d.get("findings", [])
    ]
    steps = [
        StepRecord(
            id=s["id"],
            status=s["status"],
            reason=s.get("reason"),
            exit_status=s.get("exit_status"),
            duration_s=s.get("duration_s", 0.0),
            parsed=s.get("parsed"),
        )
        for s in d.get("steps", [])
    ]
    return HostResult(d["host"], d["status"], d.get("error"), d.get("duration_s", 0.0), findings, steps)
