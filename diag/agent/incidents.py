"""Feeds ``diag agent``'s own schedule into the incident engine: probe runs and SNMP polls become incidents.

Each probe run is a full report of its scope (``probe:NAME@HOST``), so :meth:`Engine.observe` sees both new
findings and cleared ones; the verifying re-check of a cleared one runs the probe again (its ``collect``,
directly, so the re-check does not feed itself back in). SNMP devices of the inventory (hosts with
``snmp.profiles``) are polled on ``agent.incidents.snmp_interval`` and observed the same way, per device.
Imported only when ``agent.incidents`` is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from diag.errors import NoData
from diag.incidents.service import IncidentService
from diag.model import Finding

if TYPE_CHECKING:
    from diag.incidents.settings import Settings
    from diag.inventory import Host, Inventory
    from diag.model import Result
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
        if not state.success:  # a failed run says nothing about the findings: neither new nor cleared
            return
        scope = f"probe:{name}@{self.runner.hostname}"
        try:
            self.service.engine.observe("probe", scope, list(state.result.findings), recheck=lambda: self.rerun(name))
        except Exception:  # the probe schedule must go on even if the incident store has a problem
            log.exception("incident engine: probe %s", name)

    def rerun(self, name: str) -> Sequence[Finding]:
        """The verifying re-check: run the probe again and return what it finds now."""
        try:
            result = self.runner.probes[name].collect()
        except NoData:
            return []
        for f in result.findings:
            f.host = self.runner.hostname
            f.labels.setdefault("probe", name)
        return result.findings

    def on_snmp(self, host: Host, result: Result) -> None:
        assert self.poller is not None
        poller = self.poller
        try:
            self.service.engine.observe(
                "snmp", f"snmp:{host.name}", list(result.findings), recheck=lambda: poller.poll_host(host).findings
            )
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
