"""What a report reads from the incident store: incidents first seen before the period's end, with the events
that matter for quality figures (acknowledgements, SLA breaches, escalations, reopens, resolutions).

The SQL lives in the store (:meth:`diag.incidents.store.Store.report_rows`, also on ``PgStore``); the row types are
the incident read model of :mod:`diag.model`.
"""

from __future__ import annotations

from typing import Protocol

from diag.incidents.store import REPORT_EVENT_KINDS as EVENT_KINDS
from diag.model import IncidentEvent, IncidentRow

Row = IncidentRow  # what figures and renderers call one incident of a report
Event = IncidentEvent


class Readable(Protocol):
    def report_rows(self, until: float, kinds: tuple[str, ...]) -> list[IncidentRow]: ...


def load(store: Readable, until: float) -> list[Row]:
    """Every incident first seen before ``until``, with its report-relevant events (in time order)."""
    return store.report_rows(until, EVENT_KINDS)
