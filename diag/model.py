"""The shared vocabulary: metrics, evidence, findings and results that flow from collectors to exporters.

Collectors (probes, remote, network) produce these; incidents and exporters consume them. Everything
here is plain data so it can be serialised to JSON unchanged (``to_dict``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
#: gauge, counter and info are what probes make; the others only come passed through (textfile).
MetricKind = Literal["gauge", "counter", "info", "unknown", "histogram", "summary", "stateset", "gaugehistogram"]

#: Host statuses of a remote run, as in the ``diag check --json`` contract.
HostStatus = Literal["ok", "findings", "unreachable", "auth_failed", "hostkey_mismatch", "timeout", "error"]


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


@dataclass(slots=True)
class Result:
    """What one unit of work (a probe run, a playbook on a host) produced."""

    metrics: list[Metric] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

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
