"""SLA clocks: due times from priority (or the knowledge-base entry), breaches, and line escalation.

Two clocks start when an incident opens: *respond* (someone acknowledges it: ``diag incidents ack ID``) and
*resolve* (the verifying re-check closes it). A clock that runs out is a breach, once per clock per incident:
the engine records an event, adds a note to the ticket, moves the incident up one support line and counts
it in ``diag_incidents_sla_breaches_total{kind}``.
"""

from __future__ import annotations

from diag.incidents.settings import LINES, Settings
from diag.incidents.store import Incident

SEVERITY_PRIORITY = {"critical": "high", "warning": "normal", "info": "low"}


def priority_for(severity: str, kb_priority: str | None, never_suppress: bool) -> str:
    if never_suppress:
        return "urgent"
    return kb_priority or SEVERITY_PRIORITY.get(severity, "normal")


def due_times(
    settings: Settings, priority: str, kb_sla: tuple[float, float] | None, opened_at: float
) -> tuple[float, float]:
    respond, resolve = kb_sla or settings.sla.get(priority) or settings.sla["normal"]
    return opened_at + respond, opened_at + resolve


def next_line(line: str) -> str:
    i = LINES.index(line) if line in LINES else 0
    return LINES[min(i + 1, len(LINES) - 1)]


def breached(inc: Incident, now: float) -> list[str]:
    """Clocks of ``inc`` that ran out at ``now`` and were not reported yet: "respond", "resolve"."""
    done = set(inc.doc.get("breaches", []))
    out = []
    if inc.acked_at is None and inc.respond_due is not None and now >= inc.respond_due and "respond" not in done:
        out.append("respond")
    if inc.resolve_due is not None and now >= inc.resolve_due and "resolve" not in done:
        out.append("resolve")
    return out
