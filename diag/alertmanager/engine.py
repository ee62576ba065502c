"""What the receiver needs of the incident engine: open or enrich an incident, and resolve it after a re-check.

The receiver is written against this protocol so that it can be tested and reasoned about on its own;
:func:`diag.alertmanager.wiring.build_sink` binds it to the engine of :mod:`diag.incidents`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from diag.model import Evidence, Finding

if TYPE_CHECKING:
    from diag.alertmanager.receiver import Verdict


class IncidentSink(Protocol):
    def ingest(self, source: str, findings: Sequence[Finding]) -> Any:
        """A firing alert: open the incident for each finding's fingerprint, or add this occurrence to it."""
        ...

    def resolve(self, source: str, fingerprint: str, verify: Callable[[], Verdict], evidence: Evidence) -> Any:
        """A resolved alert: resolve the incident if ``verify()`` confirms the condition is gone."""
        ...
