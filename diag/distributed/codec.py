"""Results to JSON for Redis and back: a host's check result, an SNMP poll result and its poll state."""

from __future__ import annotations

import time
from typing import Any

from diag.model import Evidence, Finding, HostResult, Metric, Result, StepRecord
from diag.network.snmp.profiles import PollState


def finding_from_dict(f: dict[str, Any], host: str) -> Finding:
    """A finding from :meth:`Finding.to_dict` output (plus ``host`` and ``observed_at`` when present)."""
    return Finding(
        check=f["check"],
        severity=f["severity"],
        summary=f["summary"],
        subject=f.get("subject", ""),
        cause=f.get("cause"),
        evidence=[Evidence(e["kind"], e["title"], e.get("text", ""), e.get("data", {})) for e in f["evidence"]],
        host=f.get("host") or host,
        observed_at=f.get("observed_at") or time.time(),
    )


def host_result_from_dict(d: dict[str, Any]) -> HostResult:
    """Rebuild a :class:`HostResult` from :meth:`HostResult.to_dict` output (the ``diag check --json`` shape)."""
    findings = [finding_from_dict(f, d["host"]) for f in d.get("findings", [])]
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


def result_to_dict(result: Result) -> dict[str, Any]:
    """A probe/poll :class:`Result` (metric families and findings) as JSON-able data."""
    return {
        "metrics": [
            {"name": m.name, "help": m.help, "kind": m.kind, "labels": list(m.label_names), "samples": m.samples}
            for m in result.metrics
        ],
        "findings": [{**f.to_dict(), "host": f.host, "observed_at": f.observed_at} for f in result.findings],
    }


def result_from_dict(d: dict[str, Any]) -> Result:
    metrics = [
        Metric(m["name"], m["help"], m["kind"], tuple(m["labels"]), [(tuple(lv), float(v)) for lv, v in m["samples"]])
        for m in d.get("metrics", [])
    ]
    findings = [finding_from_dict(f, "") for f in d.get("findings", [])]
    return Result(metrics, findings)


def state_to_dict(state: PollState) -> dict[str, Any]:
    """SNMP poll state (previous counters, sysUpTime) so the next poll may run on another worker."""
    return {"values": [[a, b, v] for (a, b), v in state.values.items()], "polled_at": state.polled_at}


def state_from_dict(d: dict[str, Any]) -> PollState:
    return PollState({(a, b): float(v) for a, b, v in d.get("values", [])}, float(d.get("polled_at", 0.0)))
