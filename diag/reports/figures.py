"""Every figure of a support-quality report, computed from incident rows alone (docs/reports.md defines each).

The period is ``[start, end)``; an incident belongs to it when it was *opened* in it (damped conditions that never
opened are not incidents). Times are seconds. Pure functions: the same rows always give the same report, and
the tests recompute the figures from the database by hand.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diag.model import IncidentRow as Row

DAY = 86400.0
#: Checks that mean a service (not the whole host) is down; the host-level ones are the incidents' down_checks.
SERVICE_CHECKS = frozenset(
    {
        "systemd_unit_failed", "unit_not_active", "port_not_listening", "process_missing", "reach_tcp_port",
        "reach_http", "reach_service", "snmp_interface_down", "link_down",
    }
)  # fmt: skip


@dataclass(slots=True)
class Options:
    start: float
    end: float
    role: str = "engineer"  # "lead" adds the per-engineer section
    groups: Mapping[str, Sequence[str]] | None = None  # host -> inventory groups
    down_checks: frozenset[str] = frozenset({"host_unreachable", "host_down", "snmp_not_answering"})
    slo: float = 0.999
    history_days: int = 56
    forecast_days: int = 7
    top: int = 10


def _mean(xs: Sequence[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _share(n: int, total: int) -> float | None:
    return n / total if total else None


def _ranked(counter: Counter[str], top: int | None = None) -> list[dict[str, Any]]:
    # count descending, then name, so that equal counts come out in a stable order
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": k, "count": v} for k, v in items[:top]]


def _is_person(actor: str) -> bool:
    """Acknowledgements come from people; the engine's own actors are sources and clocks."""
    return actor not in {"sla", "outbox", "probe", "snmp", "alertmanager", "trap", "api", "engine"}


def in_period(rows: Iterable[Row], start: float, end: float) -> list[Row]:
    return [r for r in rows if r.opened_at is not None and start <= r.opened_at < end]


def breaches(r: Row) -> set[str]:
    return {str(e.data.get("clock")) for e in r.events if e.kind == "sla_breach"}


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def availability(rows: Sequence[Row], o: Options, hosts: Iterable[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """Per host (down checks) and per service (host + subject of service checks): the share of the period
    without an outage. An outage lasts from the condition's first sighting to its verified resolution (or the
    period's end), clipped to the period; overlapping outages count once."""
    length = o.end - o.start
    host_iv: dict[str, list[tuple[float, float]]] = defaultdict(list)
    svc_iv: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r.opened_at is None:
            continue
        s, e = max(r.first_seen, o.start), min(r.resolved_at if r.resolved_at is not None else o.end, o.end)
        if e <= s:
            continue
        if r.check in o.down_checks:
            host_iv[r.host].append((s, e))
        elif r.check in SERVICE_CHECKS:
            svc_iv[(r.host, r.subject)].append((s, e))
    out_hosts = []
    for h in sorted(set(hosts) | set(host_iv)):
        down = _union_seconds(host_iv.get(h, []))
        a = 1 - down / length
        out_hosts.append({"host": h, "downtime_s": down, "availability": a, "slo_met": a >= o.slo})
    out_svcs = []
    for (h, subj), iv in sorted(svc_iv.items()):
        down = _union_seconds(iv)
        a = 1 - down / length
        out_svcs.append({"host": h, "service": subj, "downtime_s": down, "availability": a, "slo_met": a >= o.slo})
    return {"hosts": out_hosts, "services": out_svcs}


def forecast(rows: Sequence[Row], o: Options) -> dict[str, Any]:
    """Incidents opened per day over the last ``history_days`` before the period's end, and a least-squares
    line through them carried ``forecast_days`` ahead (never below 0)."""
    first_day = o.end - o.history_days * DAY
    daily = [0] * o.history_days
    for r in rows:
        if r.opened_at is not None and first_day <= r.opened_at < o.end:
            daily[int((r.opened_at - first_day) // DAY)] += 1
    # history starts at the first day with an incident: days before the store existed are not "zero incidents"
    lead = next((i for i, n in enumerate(daily) if n), len(daily))
    ys = daily[lead:]
    xs = list(range(lead, o.history_days))
    if len(ys) >= 2:
        slope, intercept = statistics.linear_regression(xs, ys)
    else:
        slope, intercept = 0.0, float(ys[0]) if ys else 0.0
    ahead = [max(0.0, intercept + slope * (o.history_days + i)) for i in range(o.forecast_days)]
    return {
        "history_start": first_day + lead * DAY,
        "daily": ys,
        "method": "least-squares line over daily counts",
        "slope_per_day": slope,
        "forecast_daily": ahead,
        "forecast_total": sum(ahead),
    }


def compute(rows: Sequence[Row], o: Options) -> dict[str, Any]:
    """The whole report as plain data (what JSON prints and HTML draws)."""
    period = in_period(rows, o.start, o.end)
    total = len(period)
    ack = [r.acked_at - r.opened_at for r in period if r.acked_at is not None and r.opened_at is not None]
    res = [r.resolved_at - r.opened_at for r in period if r.resolved_at is not None and r.opened_at is not None]
    groups = o.groups or {}
    by_group: Counter[str] = Counter()
    for r in period:
        for g in groups.get(r.host) or ("(no group)",):
            by_group[g] += 1
    breached = [r for r in period if breaches(r)]
    kinds: Counter[str] = Counter()
    for r in period:
        kinds.update(breaches(r))
    by_line_sla: dict[str, dict[str, Any]] = {}
    for line in sorted({r.line for r in period}):
        rs = [r for r in period if r.line == line]
        ok = sum(1 for r in rs if not breaches(r))
        by_line_sla[line] = {"incidents": len(rs), "within_sla": ok, "compliance": _share(ok, len(rs))}
    # recurrence: the same cause on the same host, counting reopenings as recurrences too
    recur: Counter[tuple[str, str]] = Counter()
    for r in period:
        recur[(r.cause, r.host)] += 1 + r.reopened
    recurring = [
        {"cause": c, "host": h, "count": n}
        for (c, h), n in sorted(recur.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= 2
    ][: o.top]
    atypical: Counter[str] = Counter(r.cause for r in period if r.classification != "typical")
    kb_candidates = [
        {
            "cause": c,
            "count": n,
            "hosts": len({r.host for r in period if r.cause == c and r.classification != "typical"}),
        }
        for c, n in sorted(atypical.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= 2
    ][: o.top]
    # automation: typical (known fix) incidents ranked by the time people spent on them (count x time to resolve)
    typical_by: dict[str, list[Row]] = defaultdict(list)
    for r in period:
        if r.classification == "typical":
            typical_by[r.kb_id or r.cause].append(r)
    ranked: list[tuple[float, int, str]] = []
    for key, rs in typical_by.items():
        spent = sum(r.resolved_at - r.opened_at for r in rs if r.resolved_at is not None and r.opened_at is not None)
        ranked.append((spent / 3600, len(rs), key))
    ranked.sort(key=lambda a: (-a[0], -a[1], a[2]))
    automation = [{"kb": key, "count": n, "hours_to_resolve": hours} for hours, n, key in ranked]
    reopened = sum(1 for r in period if r.reopened > 0)
    # handling per group (675n: "analysis of request handling per group"): the same figures within each group
    per_group: dict[str, list[Row]] = defaultdict(list)
    for r in period:
        for g in groups.get(r.host) or ("(no group)",):
            per_group[g].append(r)
    group_handling = []
    for g, rs in sorted(per_group.items()):
        g_ack = [r.acked_at - r.opened_at for r in rs if r.acked_at is not None and r.opened_at is not None]
        g_res = [r.resolved_at - r.opened_at for r in rs if r.resolved_at is not None and r.opened_at is not None]
        ok = sum(1 for r in rs if not breaches(r))
        group_handling.append(
            {
                "group": g,
                "incidents": len(rs),
                "mtta_s": _mean(g_ack),
                "mttr_s": _mean(g_res),
                "sla_compliance": _share(ok, len(rs)),
                "typical_share": _share(sum(1 for r in rs if r.classification == "typical"), len(rs)),
            }
        )
    report: dict[str, Any] = {
        "period": {"start": o.start, "end": o.end, "days": (o.end - o.start) / DAY},
        "totals": {
            "incidents": total,
            "resolved": sum(1 for r in period if r.resolved_at is not None),
            "open": sum(1 for r in period if r.resolved_at is None),
            "acknowledged": len(ack),
            "escalations": sum(1 for r in period for e in r.events if e.kind == "escalated"),
        },
        "mtta_s": _mean(ack),
        "mtta_median_s": _median(ack),
        "mttr_s": _mean(res),
        "mttr_median_s": _median(res),
        "by_cause": _ranked(Counter(r.cause for r in period), o.top),
        "by_host": _ranked(Counter(r.host for r in period), o.top),
        "by_group": _ranked(by_group),
        "groups": group_handling,
        "by_line": _ranked(Counter(r.line for r in period)),
        "by_severity": _ranked(Counter(r.severity for r in period)),
        "typical": {
            "typical": sum(1 for r in period if r.classification == "typical"),
            "atypical": sum(1 for r in period if r.classification != "typical"),
            "typical_share": _share(sum(1 for r in period if r.classification == "typical"), total),
            "l1_share": _share(sum(1 for r in period if r.line == "L1"), total),
        },
        "sla": {
            "incidents_breached": len(breached),
            "compliance": _share(total - len(breached), total),
            "breaches": dict(sorted(kinds.items())),
            "by_line": by_line_sla,
            "breached_ids": [r.id for r in breached],
        },
        "reopen_rate": _share(reopened, total),
        "recurring": recurring,
        "kb_candidates": kb_candidates,
        "automation_candidates": automation[: o.top],
        "availability": availability(rows, o, groups.keys()),
        "forecast": forecast(rows, o),
    }
    if o.role == "lead":
        report["engineers"] = engineers(period)
    return report


def engineers(period: Sequence[Row]) -> list[dict[str, Any]]:
    """Per person who acknowledged incidents: how many, how fast, how many breached, how long to resolve."""
    per: dict[str, list[tuple[Row, float]]] = defaultdict(list)
    for r in period:
        for e in r.events:
            if e.kind == "acknowledged" and _is_person(e.actor) and r.opened_at is not None:
                per[e.actor].append((r, e.at - r.opened_at))
                break  # the first acknowledgement owns the incident
    out = []
    for who, items in sorted(per.items()):
        res = [r.resolved_at - r.opened_at for r, _ in items if r.resolved_at is not None and r.opened_at is not None]
        out.append(
            {
                "engineer": who,
                "acknowledged": len(items),
                "mean_time_to_ack_s": _mean([t for _, t in items]),
                "resolved": len(res),
                "mean_time_to_resolve_s": _mean(res),
                "sla_breached": sum(1 for r, _ in items if breaches(r)),
            }
        )
    return out
