"""The console's host-centred view: every host the agent knows, worst first, and one host's page.

Known hosts are the agent's own host (its probes), the inventory's hosts (SSH targets and SNMP devices) and any
host an incident names (an Alertmanager alert or a trap from a device outside the inventory). A host's state is
the worst of its open incidents and its last check: critical, unreachable (the last check could not reach or
log in), warning, info, unknown (never checked, no incident), ok.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diag.api.service import Service
    from diag.journal import Record

#: worst first
STATE_ORDER = ("critical", "unreachable", "warning", "info", "unknown", "ok")
_RANK = {s: i for i, s in enumerate(STATE_ORDER)}
_UNREACHABLE = frozenset({"unreachable", "auth_failed", "hostkey_mismatch", "hostkey_unknown", "timeout", "error"})
#: journal records read for the overview: the newest check of each host is among them
OVERVIEW_RECORDS = 5000


@dataclass(slots=True)
class HostRow:
    name: str
    kind: str  # agent | server | device | other
    address: str = ""
    groups: str = ""
    state: str = "unknown"
    open: int = 0
    worst_incident: str | None = None
    check_status: str | None = None
    check_worst: str | None = None
    findings: int = 0
    playbook: str = ""
    when: float | None = None
    incidents: list[dict[str, Any]] = field(default_factory=list)


def _worse(a: str, b: str) -> str:
    return a if _RANK[a] <= _RANK[b] else b


def host_state(check: Record | None, incidents: list[dict[str, Any]]) -> str:
    state = "ok" if check is not None else "unknown"
    if check is not None:
        if check.result in _UNREACHABLE:
            state = "unreachable"
        elif check.details.get("worst") in _RANK:
            state = _worse(state, str(check.details["worst"]))
    for inc in incidents:
        if inc.get("severity") in _RANK:
            state = _worse(state, inc["severity"])
    return state


def kind_of(svc: Service, name: str) -> str:
    if svc.local_host is not None and name == svc.local_host:
        return "agent"
    h = svc.hosts.get(name)
    if h is None:
        return "other"
    return "device" if h.snmp.get("profiles") or h.device_type != "linux" else "server"


def last_checks(svc: Service, limit: int = OVERVIEW_RECORDS) -> dict[str, Record]:
    last: dict[str, Record] = {}
    for rec in svc.journal.query(action="check.host", limit=limit, newest_first=True):
        last.setdefault(rec.target, rec)
    return last


def overview(svc: Service, open_incidents: list[dict[str, Any]]) -> list[HostRow]:
    """Every known host with its state, worst first (then the most open incidents, then by name)."""
    by_host: dict[str, list[dict[str, Any]]] = {}
    for inc in open_incidents:
        by_host.setdefault(inc["host"], []).append(inc)
    last = last_checks(svc)
    names = dict.fromkeys([*([svc.local_host] if svc.local_host else []), *svc.hosts, *by_host])
    rows: list[HostRow] = []
    for name in names:
        h = svc.hosts.get(name)
        r = last.get(name)
        incs = by_host.get(name, [])
        row = HostRow(
            name=name,
            kind=kind_of(svc, name),
            address=h.address if h else ("this agent" if name == svc.local_host else ""),
            groups=", ".join(h.groups) if h else "",
            state=host_state(r, incs),
            open=len(incs),
            worst_incident=min((i["severity"] for i in incs), key=lambda s: _RANK.get(s, 9), default=None),
            check_status=r.result if r else None,
            check_worst=r.details.get("worst") if r else None,
            findings=int(r.details.get("findings", 0)) if r else 0,
            playbook=str(r.details.get("playbook", "")) if r else "",
            when=r.ts if r else None,
            incidents=incs,
        )
        rows.append(row)
    rows.sort(key=lambda x: (_RANK.get(x.state, 9), -x.open, x.name))
    return rows


def counts(rows: list[HostRow]) -> dict[str, int]:
    out = dict.fromkeys(STATE_ORDER, 0)
    for r in rows:
        out[r.state] = out.get(r.state, 0) + 1
    return out


def knows(svc: Service, name: str, open_incidents: list[dict[str, Any]]) -> bool:
    return name == svc.local_host or name in svc.hosts or any(i["host"] == name for i in open_incidents)


def check_runs(svc: Service, name: str, limit: int = 10) -> list[dict[str, Any]]:
    """The host's last check runs, each with the findings it journaled (same job, or same run just before)."""
    recs = svc.journal.query(target=name, limit=400, newest_first=True)
    runs: list[dict[str, Any]] = []
    # newest first: a run's findings come just before its check.host record in time, so after it in this order
    current: dict[str, Any] | None = None
    for rec in recs:
        if rec.action == "check.host":
            if len(runs) >= limit:
                break
            current = {"rec": rec, "findings": []}
            runs.append(current)
        elif rec.action == "finding" and current is not None:
            same_job = rec.details.get("job") == current["rec"].details.get("job")
            same_pb = rec.details.get("playbook") == current["rec"].details.get("playbook")
            if same_job and same_pb:
                current["findings"].append(rec)
    return runs


def sparkline(points: list[tuple[float, float]], width: int = 160, height: int = 32) -> dict[str, Any] | None:
    """SVG polyline points for a small trend chart (drawn as inline SVG: no script, no style attribute)."""
    if len(points) < 2:
        return None
    t0, t1 = points[0][0], points[-1][0]
    vs = [v for _, v in points]
    lo, hi = min(vs), max(vs)
    span_t = (t1 - t0) or 1.0
    span_v = (hi - lo) or 1.0
    pts = " ".join(
        f"{(t - t0) / span_t * (width - 2) + 1:.1f},{height - 1 - (v - lo) / span_v * (height - 2):.1f}"
        for t, v in points
    )
    return {"points": pts, "width": width, "height": height, "lo": lo, "hi": hi, "last": vs[-1], "n": len(points)}


def snmp_summary(result: Any) -> dict[str, Any]:
    """A device's last SNMP poll as its page shows it: interfaces up and down, each metric family, the findings."""
    families = []
    oper: list[float] = []
    for m in result.metrics:
        n = len(m.samples) or len(m.raw)
        families.append({"name": m.name, "help": m.help, "series": n})
        if m.name.endswith("if_oper_status"):
            oper += [v for _, v in m.samples]
    return {
        "families": families,
        "interfaces_up": sum(1 for v in oper if v == 1),
        "interfaces_down": sum(1 for v in oper if v != 1),
        "findings": [{"severity": f.severity, "summary": f.summary} for f in result.findings],
    }
