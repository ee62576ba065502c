"""Builds the incident machinery from settings: store, knowledge base, topology, engine, ticket backend, outbox.

:class:`IncidentService` is what the agent, the CLI and other receivers (Alertmanager, traps) hold: its
``engine`` takes findings, its ``outbox`` delivers, :meth:`start` runs delivery and the SLA/re-check clock in
background threads, and :meth:`metrics` gives the ``diag_incidents_*`` families for ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from diag.errors import ConfigError, DiagError, SecretError, StoreUnavailable
from diag.exporters.tickets.base import TicketBackend
from diag.incidents.engine import Engine
from diag.incidents.knowledge import KnowledgeBase
from diag.incidents.outbox import Outbox
from diag.incidents.settings import Settings
from diag.incidents.store import OPEN_STATES
from diag.incidents.stores import open_store
from diag.incidents.topology import Topology
from diag.model import Metric

log = logging.getLogger(__name__)


def make_backend(settings: Settings) -> TicketBackend:
    """The configured ticket backend; secrets stay references (``env:``/``file:``) until the backend reveals them."""
    from diag.exporters.tickets import build

    cfg: dict[str, Any] = dict(settings.tickets)
    name = str(cfg.pop("backend", "local"))
    if name == "local" and not cfg.get("path"):
        cfg["path"] = str(settings.data / "tickets.sqlite")
    try:
        return build(name, cfg)
    except (ConfigError, SecretError):
        raise
    except DiagError as e:  # the registry's "unknown backend", a backend refusing its section
        raise ConfigError(f"agent.incidents.tickets: {e}") from None


class IncidentService:
    """Everything incidents, built from :class:`Settings` and (optionally) the inventory's hosts."""

    def __init__(
        self,
        settings: Settings,
        hosts: Mapping[str, Any] | None = None,
        *,
        backend: TicketBackend | None = None,
        kb: KnowledgeBase | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        hosts = hosts or {}
        self.store = open_store(settings)
        self.kb = kb if kb is not None else KnowledgeBase.load(settings.knowledge)
        topo = Topology({n: tuple(getattr(h, "parents", ())) for n, h in hosts.items()}, settings.down_checks)
        groups = {n: tuple(getattr(h, "groups", ())) for n, h in hosts.items()}
        self.engine = Engine(self.store, settings, self.kb, topo, groups=groups, clock=clock)
        self.backend = backend if backend is not None else make_backend(settings)
        self.outbox = Outbox(
            self.store,
            self.backend,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            poll=settings.delivery_poll,
        )
        self.engine.on_change.append(self.outbox.wake)
        self._stop = threading.Event()
        self._wake = threading.Event()  # a change may have set an earlier due time (a damped alert's open_due)
        self.engine.on_change.append(self._wake.set)
        self._ticker: threading.Thread | None = None

    def start(self) -> None:
        self.outbox.start()
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick_loop, name="incident-tick", daemon=True)
            self._ticker.start()

    def _tick_loop(self) -> None:
        """Tick when the next stored due time comes (a damped alert opens on time), at least every ``tick``."""
        while not self._stop.is_set():
            try:
                self.engine.tick()
                due = self.engine.next_due()
            except StoreUnavailable as e:  # every due time is stored: the next tick after it is back does it
                log.warning("incident clock: %s; trying again in %g s", e, self.settings.tick)
                due = None
            except Exception:  # the clock must keep running whatever one tick hit
                log.exception("incident tick failed")
                due = None
            wait = self.settings.tick if due is None else min(self.settings.tick, max(0.02, due - time.time()))
            self._wake.wait(wait)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.outbox.stop()
        if self._ticker is not None:
            self._ticker.join(10)
            self._ticker = None

    def close(self) -> None:
        self.stop()
        self.store.close()

    def __enter__(self) -> IncidentService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metrics(self) -> list[Metric]:
        """``diag_incidents_*``: open incidents, deliveries, failures, outbox depth, SLA breaches."""
        open_ = Metric(
            "diag_incidents_open",
            "Incidents open now (including those waiting for their verifying re-check).",
            label_names=("severity", "line", "classification"),
        )
        for r in self.store.read(
            "SELECT severity, line, classification, COUNT(*) FROM incidents WHERE state IN (?, ?) "
            "GROUP BY severity, line, classification ORDER BY 1, 2, 3",
            OPEN_STATES,
        ):
            open_.add(r[3], r[0], r[1], r[2])
        states = Metric("diag_incidents_state", "Live incidents by lifecycle state.", label_names=("state",))
        for r in self.store.read(
            "SELECT state, COUNT(*) FROM incidents WHERE state IN ('pending','suppressed','impact') GROUP BY state"
        ):
            states.add(r[1], r[0])
        flapping = Metric("diag_incidents_flapping", "Live incidents whose condition is flapping (state changes).")
        flapping.add(sum(1 for inc in self.store.query(OPEN_STATES, limit=1 << 30) if inc.doc.get("flapping")))
        depth = Metric(
            "diag_incidents_outbox_depth", "Ticket deliveries not done yet, by state.", label_names=("state",)
        )
        d = self.store.outbox_depth()
        for state in ("pending", "parked"):
            depth.add(d.get(state, 0), state)
        c = self.store.counters()
        # The label values known in advance are exported at 0 before their first event: a series that is born at 1
        # has no increase() in Prometheus, so an alert on the first SLA breach would never fire.
        families = [
            ("deliveries", "diag_incidents_deliveries", "Deliveries the ticket system accepted.", "action",
             ("open", "note", "close", "reopen")),
            ("delivery_failures", "diag_incidents_delivery_failures", "Deliveries that failed.", "reason",
             ("unavailable", "rejected")),
            ("sla_breaches", "diag_incidents_sla_breaches", "SLA clocks that ran out.", "kind", ("respond", "resolve")),
            ("opened", "diag_incidents_opened", "Incidents opened.", "classification", ("typical", "atypical")),
            ("resolved", "diag_incidents_resolved", "Incidents resolved after a verifying re-check.", "classification",
             ("typical", "atypical")),
        ]  # fmt: skip
        out = [open_, states, flapping, depth]
        for key, name, help_, label, known in families:
            m = Metric(name, help_, "counter", (label,))
            values = {lv: 0.0 for lv in known}
            values.update({lv: v for (n, lv), v in c.items() if n == key})
            for lv, v in sorted(values.items()):
                m.add(v, lv)
            out.append(m)
        reopened = Metric("diag_incidents_reopened", "Incidents reopened by a recurrence.", "counter")
        reopened.add(c.get(("reopened", ""), 0.0))
        down = Metric("diag_incidents_ticket_system_up", "Whether the last delivery attempt reached the ticket system.")
        down.add(0.0 if self.outbox.failures else 1.0)
        out += [reopened, down]
        return out

    def render(self) -> bytes:
        from diag.exporters.exposition import encode_metrics

        return encode_metrics(self.metrics())
