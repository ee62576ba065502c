"""What the receiver needs of the incident engine: open or enrich an incident, and resolve it after a re-check.

The receiver is written against this protocol so that it can be tested and reasoned about on its own;
the agent hands it the engine of :mod:`diag.incidents` (:func:`diag.alertmanager.mount`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from diag.model import Evidence, Finding


@dataclass(slots=True)
class Verdict:
    """The verifying re-check's answer: is the condition gone, and the note that says why (with evidence)."""

    cleared: bool
    note: str
    evidence: list[Evidence] = field(default_factory=list)


class IncidentSink(Protocol):
    def ingest(self, source: str, findings: Sequence[Finding], *, now: float | None = None) -> Any:
        """A firing alert: open the incident for each finding's fingerprint, or add this occurrence to it.

        ``now`` is when the notification was received (a job replayed after a restart is not "seen again")."""
        ...

    def resolve(self, source: str, fingerprint: str, verify: Callable[[], Verdict], evidence: Evidence) -> Any:
        """A resolved alert: resolve the incident if ``verify()`` confirms the condition is gone."""
        ...
