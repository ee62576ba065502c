"""Adapters from diag's result types to the engine: a playbook run (``diag check``) observed host by host.

A host that could not be checked is a finding too: ``unreachable`` and ``timeout`` become ``host_unreachable``
(a *down check*, so topology applies: hosts behind a failed switch become its impact), ``auth_failed`` and
``hostkey_mismatch``/``hostkey_unknown`` become ``ssh_access_failed``. A host that was checked reports
everything the playbook found, so clearing works per scope: ``playbook:NAME@HOST``, with the check's variables
when it had any (``playbook:disk-full@web-03?path=%2Fsrv``): what was checked is part of the scope, so a check
of ``/`` never clears an incident that a check of ``/srv`` found.

A host that was *not* checked (any status but ``ok``/``findings``, a step left for approval, or the playbook
not applying to it) reports a :class:`~diag.model.Gap` for its scope: the engine holds the playbook's incidents
there instead of reading the missing findings as "gone". Only the connection checks the attempt did judge
(``host_unreachable`` once an SSH session was refused or set up) are observed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from diag.errors import DiagError
from diag.model import Evidence, Finding, Gap

if TYPE_CHECKING:
    from diag.incidents.engine import Engine, Outcome
    from diag.model import HostResult, RunReport

_STATUS_CHECK = {
    "unreachable": ("host_unreachable", "critical", "does not answer"),
    "timeout": ("host_unreachable", "critical", "does not answer in time"),
    "auth_failed": ("ssh_access_failed", "warning", "refuses diag's SSH credentials"),
    "hostkey_mismatch": ("ssh_access_failed", "critical", "presents an SSH host key that differs from the known one"),
    "hostkey_unknown": ("ssh_access_failed", "warning", "presents an SSH host key diag does not know yet"),
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


_CONNECTION_CHECKS = frozenset({"host_unreachable", "ssh_access_failed"})
#: Connection checks a host's status judged: unreachable says nothing of credentials; refused credentials or a
#: host key prove the host answers; a step error (or a lost session) came after a session was set up.
_OBSERVED = {
    "unreachable": frozenset({"host_unreachable"}),
    "timeout": frozenset({"host_unreachable"}),
    "auth_failed": frozenset({"host_unreachable", "ssh_access_failed"}),
    "hostkey_mismatch": frozenset({"host_unreachable", "ssh_access_failed"}),
    "hostkey_unknown": frozenset({"host_unreachable", "ssh_access_failed"}),
}


def host_gaps(r: HostResult) -> list[Gap]:
    """What a host's run could not look at: all of the playbook when the host was not checked, else nothing.

    A step that needs approval did not run, so its checks were not judged either (the whole scope is held:
    the result does not say which checks a step has).
    """
    if r.status not in ("ok", "findings"):
        observed = _OBSERVED.get(r.status)
        if observed is None:  # "error": a session was set up if any step ran (a bad variable fails before)
            observed = _CONNECTION_CHECKS if r.steps else frozenset()
        return [Gap(f"{r.host} was not checked ({r.status}: {r.error or 'no detail'})", observed=observed)]
    waiting = [s.id for s in r.steps if s.status == "needs_approval"]
    if waiting:
        why = f"{r.host}: step {', '.join(waiting)} needs approval and did not run"
        return [Gap(why, observed=_CONNECTION_CHECKS)]
    return []


class NotChecked(DiagError):
    """A re-check that could not look at the host: it proves nothing, so the incident must stay open."""


def recheck_findings(r: HostResult) -> list[Finding]:
    """What a verifying re-check found; :class:`NotChecked` when the host was not checked at all.

    An unreachable host, refused credentials or a playbook that errored do not show that a condition is gone:
    reporting them as "no such finding now" would resolve an incident that may still be broken. The engine
    treats a re-check that raises as proving nothing and keeps the incident open.
    """
    if r.status not in ("ok", "findings"):
        raise NotChecked(f"{r.host}: the re-check could not check the host ({r.status}: {r.error or 'no detail'})")
    gaps = host_gaps(r)
    if gaps:
        raise NotChecked(f"the re-check did not look at everything: {gaps[0].reason}")
    return host_findings(r)


def playbook_scope(playbook: str, host: str, variables: Mapping[str, Any] | None = None) -> str:
    """One playbook run on one host: ``playbook:NAME@HOST``, plus ``?k=v&...`` (sorted) for its variables."""
    base = f"playbook:{playbook}@{host}"
    if not variables:
        return base
    return f"{base}?{urlencode(sorted((str(k), str(v)) for k, v in variables.items()))}"


_SCOPE = re.compile(r"playbook:([A-Za-z0-9_.-]+)@([^?]+)(?:\?(.*))?")


def parse_playbook_scope(scope: str) -> tuple[str, str, dict[str, str]] | None:
    """``(playbook, host, variables)`` of a :func:`playbook_scope`, or None for another kind of scope."""
    m = _SCOPE.fullmatch(scope)
    if m is None:
        return None
    return m.group(1), m.group(2), dict(parse_qsl(m.group(3) or "", keep_blank_values=True))


def observe_report(
    engine: Engine,
    report: RunReport,
    recheck: Callable[[str], Sequence[Finding]] | None = None,
    source: str = "playbook",
    variables: Mapping[str, Any] | None = None,
) -> list[Outcome]:
    """Observe every host of a playbook run (with ``variables``); ``recheck(host)`` re-runs it on that host.

    All hosts go to the engine in one batch, so that topology sees a switch and the hosts behind it together.
    A host the playbook did not apply to (``report.skipped``) was not looked at: its scope's incidents hold.
    """
    scopes = {r.host: playbook_scope(report.playbook, r.host, variables) for r in report.results}
    reports = {scopes[r.host]: host_findings(r) for r in report.results}
    gaps = {scopes[r.host]: host_gaps(r) for r in report.results}
    for skip in report.skipped:
        scope = playbook_scope(report.playbook, str(skip["host"]), variables)
        reports.setdefault(scope, [])
        gaps.setdefault(scope, [Gap(f"{skip['host']}: the playbook did not run ({skip.get('reason', 'skipped')})")])
    rechecks = None
    if recheck is not None:
        rechecks = {scopes[r.host]: _bind(recheck, r.host) for r in report.results}
    return engine.observe_many(source, reports, rechecks, gaps)


def _bind(recheck: Callable[[str], Sequence[Finding]], host: str) -> Callable[[], Sequence[Finding]]:
    return lambda: recheck(host)
