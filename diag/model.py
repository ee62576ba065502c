"""The shared vocabulary: metrics, evidence, findings and results that flow from collectors to exporters.

Collectors (probes, remote, network) produce these; incidents and exporters consume them. Everything
here is plain data so it can be serialised to JSON unchanged (``to_dict``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
#: gauge, counter and info are what probes make; the others only come passed through (textfile).
MetricKind = Literal["gauge", "counter", "info", "unknown", "histogram", "summary", "stateset", "gaugehistogram"]

#: Host statuses of a remote run, as in the ``diag check --json`` contract.
HostStatus = Literal[
    "ok", "findings", "unreachable", "auth_failed", "hostkey_mismatch", "hostkey_unknown", "timeout", "error"
]
#: Host statuses that mean the host could not be checked (exit status 3).
UNCHECKED: frozenset[str] = frozenset(
    {"unreachable", "auth_failed", "hostkey_mismatch", "hostkey_unknown", "timeout", "error"}
)
#: Which failure wins when a host fails more than once (a host-key mismatch over a later timeout).
_PRECEDENCE = {
    "hostkey_mismatch": 7, "hostkey_unknown": 6, "auth_failed": 5, "unreachable": 4, "timeout": 3, "error": 2
}  # fmt: skip
#: What one playbook step did on one host.
StepStatus = Literal["ok", "failed", "skipped", "needs_approval", "timeout", "error"]


@dataclass(slots=True)
class Metric:
    """One metric family: a name, its help and kind, and its samples keyed by label values."""

    name: str
    help: str
    kind: MetricKind = "gauge"
    label_names: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    #: A family passed through as it came (textfile): (sample name, labels, value), e.g. ``x_bucket``
    #: with ``le``. Exporters use it instead of ``samples`` when it is not empty.
    raw: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, *label_values: str) -> Metric:
        if len(label_values) != len(self.label_names):
            raise ValueError(f"{self.name}: expected labels {self.label_names}, got {label_values}")
        self.samples.append((label_values, float(value)))
        return self

    def iter_samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every sample as (sample name, labels, value), for plain and passed-through families alike."""
        if self.raw:
            yield from self.raw
            return
        suffix = "_total" if self.kind == "counter" and not self.name.endswith("_total") else ""
        for label_values, value in self.samples:
            yield self.name + suffix, dict(zip(self.label_names, label_values, strict=True)), value


@dataclass(slots=True)
class Evidence:
    """Something that shows why a finding was made: a command and its output, log lines, values.

    ``kind`` is one of command, log, metric, file, text. ``data`` holds structured extras (exit status,
    duration, parsed values); ``text`` is already capped and redacted by whoever made it.
    """

    kind: str
    title: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "text": self.text, "data": self.data}


def fingerprint(*parts: str) -> str:
    """A stable identity for a condition: the same check on the same subject of the same host."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


@dataclass(slots=True)
class Finding:
    """A judgement: something is wrong (or notable), how badly, why, and the evidence for it."""

    check: str
    severity: Severity
    summary: str
    subject: str = ""
    cause: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    host: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    observed_at: float = field(default_factory=time.time)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host, self.check, self.subject)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "summary": self.summary,
            "cause": self.cause,
            "subject": self.subject,
            "fingerprint": self.fingerprint,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(slots=True, frozen=True)
class Gap:
    """Part of a run's scope that it could not look at: no data is not "OK".

    A host that did not answer, a probe that failed or found nothing to read, an SNMP profile that timed out or
    a walk cut short: the incidents of what it concerns are neither present nor gone, so the incident engine
    holds them where they are (and journals ``not checked: REASON``) instead of clearing them. ``checks`` and
    ``subjects`` narrow it (None: all of the scope); ``observed`` are checks the run did judge even so (an
    unreachable host's own ``host_unreachable``).
    """

    reason: str
    checks: frozenset[str] | None = None
    subjects: frozenset[str] | None = None
    observed: frozenset[str] = frozenset()

    def covers(self, check: str, subject: str) -> bool:
        """Whether a condition ``check`` on ``subject`` was left unobserved by this gap."""
        if check in self.observed:
            return False
        return (self.checks is None or check in self.checks) and (self.subjects is None or subject in self.subjects)


def gap_for(gaps: Sequence[Gap], check: str, subject: str) -> Gap | None:
    """The first of ``gaps`` that left ``check`` on ``subject`` unobserved, or None (it was looked at)."""
    return next((g for g in gaps if g.covers(check, subject)), None)


@dataclass(slots=True)
class Result:
    """What one unit of work (a probe run, a playbook on a host) produced.

    ``gaps`` say what it could not look at (see :class:`Gap`): a finding missing there is not evidence that
    the condition is gone.
    """

    metrics: list[Metric] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def metric(self, name: str, help: str, kind: MetricKind = "gauge", labels: tuple[str, ...] = ()) -> Metric:
        """Start a new metric family in this result and return it for ``add``."""
        m = Metric(name, help, kind, labels)
        self.metrics.append(m)
        return m

    def find(
        self,
        check: str,
        severity: Severity,
        summary: str,
        subject: str = "",
        cause: str | None = None,
        evidence: list[Evidence] | None = None,
    ) -> Finding:
        f = Finding(check, severity, summary, subject, cause, evidence or [])
        self.findings.append(f)
        return f

    @property
    def sample_count(self) -> int:
        return sum(len(m.samples) + len(m.raw) for m in self.metrics)


def worst_severity(findings: list[Finding]) -> Severity | None:
    if not findings:
        return None
    return max((f.severity for f in findings), key=SEVERITY_RANK.__getitem__)


# ---- remote runs: what ``diag check`` reports (one entry of ``results`` per host in the JSON contract)


@dataclass(slots=True)
class StepRecord:
    """What one step did on one host."""

    id: str
    status: StepStatus
    command: str = ""
    reason: str | None = None
    exit_status: int | None = None
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    parsed: Any = None
    bytes_sent: int = 0  # what the command printed (stdout + stderr)
    bytes_kept: int = 0  # what diag kept of it (the 1 MiB transport cap, then the evidence cap)

    def evidence(self) -> Evidence:
        return Evidence(
            kind="command",
            title=self.command or self.id,
            text=self.stdout,
            data={
                "step": self.id,
                "command": self.command,
                "exit_status": self.exit_status,
                "duration_s": round(self.duration_s, 3),
                "stderr": self.stderr,
                "truncated": self.truncated,
                "bytes_kept": self.bytes_kept,
                "bytes_sent": self.bytes_sent,
                "parsed": self.parsed,
            },
        )

    def view(self) -> dict[str, Any]:
        """What later expressions see of this step (``df.exit``, ``df.parsed``, ``df.skipped``...)."""
        ran = self.status in ("ok", "failed", "timeout") or (self.status == "error" and self.exit_status is not None)
        return {
            "exit": self.exit_status,
            "ok": self.status == "ok",
            "ran": ran,
            "skipped": not ran,
            "timed_out": self.status == "timeout",
            "stdout": self.stdout,
            "stderr": self.stderr,
            "parsed": self.parsed,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "exit_status": self.exit_status,
            "duration_s": round(self.duration_s, 3),
            "parsed": self.parsed,
            "truncated": self.truncated,
            **({"bytes_kept": self.bytes_kept, "bytes_sent": self.bytes_sent} if self.truncated else {}),
        }


@dataclass(slots=True)
class HostResult:
    """The outcome of a playbook on one host (one entry of ``results`` in the JSON contract)."""

    host: str
    status: HostStatus = "ok"
    error: str | None = None
    duration_s: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def worst(self) -> Severity | None:
        return worst_severity(self.findings)

    def fail(self, status: HostStatus, error: str) -> None:
        """Record a failure; the most telling one wins (a host-key mismatch over a later timeout)."""
        if _PRECEDENCE.get(status, 0) > _PRECEDENCE.get(self.status, 0):
            self.status, self.error = status, error
        elif self.error is None:
            self.error = error

    def values(self) -> dict[str, Any]:
        """Parsed values of the steps that ran (what ``facts`` keeps per host)."""
        return {s.id: s.parsed for s in self.steps if s.parsed is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "status": self.status,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "worst_severity": self.worst,
            "truncated": any(s.truncated for s in self.steps),
            "findings": [f.to_dict() for f in self.findings],
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(slots=True)
class RunReport:
    """All hosts' results of one ``diag check``."""

    playbook: str
    results: list[HostResult]
    skipped: list[dict[str, str]] = field(default_factory=list)  # hosts the playbook does not apply to
    duration_s: float = 0.0

    def exit_code(self) -> int:
        """Nagios: 3 when a host could not be checked, else 2/1/0 for the worst severity critical/warning/other.

        A run in which the playbook applied to none of the targets (a cisco_ios playbook on a juniper_junos device)
        checked nothing: 3 as well, never 0 with "no findings".
        """
        if any(r.status in UNCHECKED for r in self.results) or (self.skipped and not self.results):
            return 3
        worst = max((SEVERITY_RANK[f.severity] for r in self.results for f in r.findings), default=0)
        return worst if worst in (1, 2) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "results": [r.to_dict() for r in self.results],
            "skipped": self.skipped,
            "duration_s": round(self.duration_s, 3),
            "exit_status": self.exit_code(),
        }


# ---- incidents as readers see them (the store's queries return these; the engine keeps its own Incident)


@dataclass(slots=True)
class IncidentEvent:
    """One journal event of an incident as readers (reports, console) see it."""

    at: float
    actor: str
    kind: str
    data: dict[str, Any]


@dataclass(slots=True)
class IncidentRow:
    """One incident as readers outside the engine see it (reports, per-engineer figures): the read model."""

    id: int
    host: str
    check: str
    subject: str
    cause: str  # the finding's cause id, else the check: what "the same cause" means in recurrence
    state: str
    severity: str
    classification: str
    line: str
    priority: str
    first_seen: float
    opened_at: float | None
    acked_at: float | None
    resolved_at: float | None
    kb_id: str | None
    reopened: int
    events: list[IncidentEvent] = field(default_factory=list)
    ticket_backend: str | None = None
    ticket_id: str | None = None
