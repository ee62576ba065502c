"""Incident transitions and ticket deliveries into the event journal.

The incident engine keeps its own per-incident events (``events`` table: opened, acknowledged, resolved,
ticket, parked ...). This copies each new event into the journal as ``incident.<kind>`` once, in order,
after every engine change (the engine's ``on_change`` callbacks, which its clock also fires every ``tick``,
so deliveries made by the outbox are copied within a tick). The last copied event id is read back from the
journal at start, so a restart neither skips nor repeats events.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from diag.journal import Journal

log = logging.getLogger(__name__)


class IncidentJournal:
    def __init__(self, store: Any, journal: Journal) -> None:
        self.store = store
        self.journal = journal
        self._lock = threading.Lock()
        last = journal.query(action="incident", limit=1, newest_first=True)
        self._synced = int(last[0].details.get("event_id", 0)) if last else 0

    def sync(self) -> None:
        """Copy the events newer than the last copied one (never raises: the engine must go on)."""
        try:
            with self._lock:
                rows = self.store.events_after(self._synced)
                for r in rows:
                    self.journal.append(
                        str(r[3]),
                        f"incident.{r[4]}",
                        f"incident:{r[1]}",
                        str(r[8]),
                        {"event_id": r[0], "incident": r[1], "host": r[6], "check": r[7], "text": r[5], "at": r[2]},
                    )
                    self._synced = int(r[0])
        except Exception:
            log.exception("copying incident events into the journal failed; the next change retries")


def attach(service: Any, journal: Journal) -> IncidentJournal:
    """Copy ``service``'s incident events into ``journal`` after every engine change."""
    ij = IncidentJournal(service.store, journal)
    service.engine.on_change.append(ij.sync)
    ij.sync()
    return ij
