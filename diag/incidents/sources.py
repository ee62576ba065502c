"""Adapters from diag's result types to the engine: a playbook run (``diag check``) observed host by host.

A host that could not be checked is a finding too: ``unreachable`` and ``timeout`` become ``host_unreachable``
(a *down check*, so topology applies: hosts behind a failed switch become its impact), ``auth_failed`` and
``hostkey_mismatch`` become ``ssh_access_failed``. A host that was checked reports everything the playbook
found, so clearing works per ``playbook:NAME@HOST`` scope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from diag.model import Evidence, Finding

if TYPE_CHECKING:
    from diag.incidents.engine import Engine, Outcome
    from diag.model import HostResult, RunReport

_STATUS_CHECK = {
    "unreachable": ("host_unreachable", "critical", "does not answer"),
    "timeout": ("host_unreachable", "critical", "does not answer in time"),
    "auth_failed": ("ssh_access_failed", "warning", "refuses diag's SSH credentials"),
    "hostkey_mismatch": ("ssh_access_failed", "critical", "presents an SSH host key that differs from the known one"),
}


def host_findings(r: HostResult, source: str = "ssh") -> list[Finding]:
    """The findings of one host's run, with a finding for a host that could not be checked."""
    out: list[Finding] = []
    for f in r.findings:
        f.host = f.host or r.host
        out.append(f)
    mapped = _STATUS_CHECK.get(r.status)
    if mapped is not None:
        check, severity, what = mapped
        ev = Evidence("text", f"{source} connection to {r.host}", r.error or r.status, {"status": r.status})
        out.append(
            Finding(check, severity, f"{r.host} {what} ({r.error or r.status})", "", evidence=[ev], host=r.host)  # type: ignore[arg-type]
        )
    return out


def observe_report(
    engine: Engine,
    report: RunReport,
    recheck: Callable[[str], Sequence[Finding]] | None = None,
    source: str = "playbook",
) -> list[Outcome]:
    """Observe every host of a playbook run; ``recheck(host)`` re-runs the playbook on that host.

    All hosts go to the engine in one batch, so that topology sees a switch and the hosts behind it together.
    """
    reports = {f"playbook:{report.playbook}@{r.host}": host_findings(r) for r in report.results}
    rechecks = None
    if recheck is not None:
        rechecks = {f"playbook:{report.playbook}@{r.host}": _bind(recheck, r.host) for r in report.results}
    return engine.observe_many(source, reports, rechecks)


def _bind(recheck: Callable[[str], Sequence[Finding]], host: str) -> Callable[[], Sequence[Finding]]:
    return lambda: recheck(host)
