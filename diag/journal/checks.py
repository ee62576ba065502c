"""Journal records for a check run: who ran which playbook on which targets, each command sent, each finding.

Used by ``diag check`` (CLI) and by the API's check jobs, so both leave the same trail. Commands come from the
runner's step records (already masked by :func:`diag.secrets.mask`), so no secret reaches the journal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from diag.journal import Entry, Journal

if TYPE_CHECKING:
    from diag.model import HostResult, RunReport

#: step statuses that mean the command was sent to the host
_SENT = frozenset({"ok", "failed", "timeout"})


def started(j: Journal, actor: str, playbook: str, targets: Sequence[str], allow_changes: bool, job: str = "") -> None:
    details = {"playbook": playbook, "targets": list(targets), "allow_changes": allow_changes}
    if job:
        details["job"] = job
    j.append(actor, "check.started", ",".join(targets), "running", details)


def host_done(j: Journal, actor: str, playbook: str, r: HostResult, job: str = "") -> None:
    """One host's commands and findings, then its outcome."""
    j.append_many(host_entries(actor, playbook, r, job))


def host_entries(actor: str, playbook: str, r: HostResult, job: str = "") -> list[Entry]:
    """The records of one host's run: each command sent or held back, each finding, then the host's outcome."""
    base = {"playbook": playbook, **({"job": job} if job else {})}
    out: list[Entry] = []
    for s in r.steps:
        if s.status in _SENT or (s.status == "error" and s.exit_status is not None):
            out.append(
                (
                    actor,
                    "command.sent",
                    r.host,
                    f"exit {s.exit_status}" if s.exit_status is not None else s.status,
                    {**base, "step": s.id, "command": s.command, "duration_s": round(s.duration_s, 3)},
                )
            )
        elif s.status == "needs_approval":
            out.append((actor, "command.held", r.host, "needs approval", {**base, "step": s.id, "command": s.command}))
    for f in r.findings:
        out.append(
            (
                actor,
                "finding",
                r.host,
                f.severity,
                {**base, "check": f.check, "summary": f.summary, "subject": f.subject, "fingerprint": f.fingerprint},
            )
        )
    out.append(
        (
            actor,
            "check.host",
            r.host,
            r.status,
            {
                **base,
                "worst": r.worst,
                "findings": len(r.findings),
                "error": r.error,
                "duration_s": round(r.duration_s, 3),
            },
        )
    )
    return out


def finished(j: Journal, actor: str, report: RunReport, job: str = "") -> None:
    details = {
        "playbook": report.playbook,
        "hosts": len(report.results),
        "skipped": len(report.skipped),
        "exit_status": report.exit_code(),
        "duration_s": round(report.duration_s, 3),
        **({"job": job} if job else {}),
    }
    targets = ",".join(r.host for r in report.results)
    j.append(actor, "check.finished", targets, f"exit {report.exit_code()}", details)
