"""Feeds ``diag agent``'s own schedule into the incident engine: probe runs and SNMP polls become incidents.

Each probe run is a full report of its scope (``probe:NAME@HOST``), so :meth:`Engine.observe` sees both new
findings and cleared ones; the verifying re-check of a cleared one runs the probe again (its ``collect``,
directly, so the re-check does not feed itself back in). A run that failed, timed out or had no data
(``NoData``: the file it reads is gone) looked at nothing: it is observed as a :class:`~diag.model.Gap`, so the
scope's incidents hold ("not checked") instead of clearing; a re-check with no data raises ``NotChecked``.
SNMP devices of the inventory (hosts with ``snmp.profiles``) are polled on ``agent.incidents.snmp_interval``
and observed the same way, per device, with the poll's gaps (a timeout, a profile that failed, a cut walk).
Imported only when ``agent.incidents`` is configured.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from diag.errors import NoData
from diag.incidents.service import IncidentService
from diag.model import Gap, Result

if TYPE_CHECKING:
    from diag.incidents.settings import Settings
    from diag.inventory import Host, Inventory
    from diag.network.snmp.poller import SnmpPoller
    from diag.probes.runner import ProbeRunner, ProbeState

log = logging.getLogger(__name__)


class AgentFeed:
    """Connects the agent's probe runner (and SNMP poller) to an :class:`IncidentService`."""

    def __init__(self, service: IncidentService, runner: ProbeRunner, poller: SnmpPoller | None = None) -> None:
        self.service = service
        self.runner = runner
        self.poller = poller
        runner.on_result.append(self.on_probe)
        if poller is not None:
            poller.on_result.append(self.on_snmp)

    def on_probe(self, name: str, state: ProbeState) -> None:
        scope = f"probe:{name}@{self.runner.hostname}"
        gaps = list(state.result.gaps)
        if not state.success or state.no_data:  # it looked at nothing: neither new nor cleared findings
            what = "had no data" if state.no_data else "failed"
            gaps = [Gap(f"probe {name} {what}: {state.error or 'no detail'}")]
        try:
            self.service.engine.observe(
                "probe", scope, list(state.result.findings), recheck=lambda: self.rerun(name), gaps=gaps
            )
        except Exception:  # the probe schedule must go on even if the incident store has a problem
            log.exception("incident engine: probe %s", name)

    def rerun(self, name: str) -> Result:
        """The verifying re-check: run the probe again and return what it finds now (and what it could not see).

        No data is not "gone": a probe whose file vanished raises ``NotChecked`` (the engine holds the incident).
        """
        from diag.incidents.sources import NotChecked

        try:
            result = self.runner.probes[name].collect()
        except NoData as e:
            raise NotChecked(f"probe {name} had no data: {e}") from e
        for f in result.findings:
            f.host = self.runner.hostname
            f.labels.setdefault("probe", name)
        return result

    def on_snmp(self, host: Host, result: Result) -> None:
        assert self.poller is not None
        poller = self.poller
        try:
            self.service.engine.observe(
                "snmp", f"snmp:{host.name}", list(result.findings), recheck=lambda: poller.poll_host(host),
                gaps=result.gaps,
            )  # fmt: skip
        except Exception:
            log.exception("incident engine: snmp %s", host.name)


def attach(
    settings: Settings,
    inventory: Inventory | None,
    runner: ProbeRunner,
    poller: SnmpPoller | None,
) -> tuple[IncidentService, AgentFeed]:
    """Build the service from ``agent.incidents`` settings and the feed of the agent's sources into it.

    ``poller`` is the agent's own SNMP poller when it polls; without one, inventory devices with SNMP profiles
    get a poller of their own here.
    """
    hosts = inventory.hosts if inventory is not None else {}
    service = IncidentService(settings, hosts)
    if poller is None and any(h.snmp.get("profiles") for h in hosts.values()) and inventory is not None:
        from diag.network.snmp.poller import SnmpPoller

        poller = SnmpPoller(inventory, interval=settings.snmp_interval)
    return service, AgentFeed(service, runner, poller)
