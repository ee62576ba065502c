"""The network collectors inside ``diag agent``: the SNMP trap receiver and the SNMP poller of inventory devices.

Built only when configured (``agent.traps``; inventory hosts with ``snmp.profiles`` unless
``agent.snmp_poll.enabled`` is false). Each appears to the exporter as a source of the probe runner
(``snmp_traps``, ``snmp_poll``), so its metrics, health and current findings are in ``/metrics`` like a
probe's. Trap findings are events: they go to the findings sink (the incident engine, once it is wired;
until then the log) and to ``GET /traps``, not to ``diag_finding``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from diag.errors import DiagError
from diag.httpd import App, Response, json_response
from diag.model import Finding, Metric, Result

if TYPE_CHECKING:
    from diag.config import AgentConfig
    from diag.inventory import Inventory
    from diag.network.poller import SnmpPoller
    from diag.network.traps import TrapReceiver
    from diag.runner import ProbeRunner

log = logging.getLogger(__name__)

FindingSink = Callable[[list[Finding]], object]


def log_findings(findings: list[Finding]) -> None:
    """The sink until the incident engine takes findings: one log line each (secrets are masked by the filter)."""
    for f in findings:
        log.info("finding %s %s %s: %s", f.severity, f.host, f.check, f.summary)


class NetworkParts:
    """Owns the receiver and the poller, records their outcomes in the runner, serves ``/traps``."""

    def __init__(
        self, cfg: AgentConfig, inv: Inventory | None, runner: ProbeRunner, app: App, sink: FindingSink | None = None
    ) -> None:
        self.runner = runner
        self.sink = sink or log_findings
        self._push_polled = sink is not None  # the log would repeat a standing condition every cycle
        self.receiver: TrapReceiver | None = None
        self.poller: SnmpPoller | None = None
        self._seen_generation = -1
        self._lock = threading.Lock()
        if cfg.traps is not None:
            from diag.network.trapconfig import engine_identity
            from diag.network.traps import TrapReceiver

            engine = engine_identity(cfg.traps, cfg.paths.state)
            self.receiver = TrapReceiver(cfg.traps, inv, on_finding=self._on_trap, engine=engine)
            try:
                self.bound = self.receiver.bind()  # now, so a taken port stops the agent before it starts
            except OSError as e:
                raise DiagError(f"agent.traps: {e.strerror or e}") from None
            runner.add_source("snmp_traps")
            app.route("/traps", self._traps)
        if inv is not None and cfg.snmp_poll.enabled and any(h.snmp.get("profiles") for h in inv.hosts.values()):
            from diag.network.poller import SnmpPoller

            self.poller = SnmpPoller(inv, cfg.snmp_poll.interval, cfg.snmp_poll.concurrency)
            self.poller.on_cycle.append(self._on_cycle)
            runner.add_source("snmp_poll")

    def start(self) -> None:
        if self.receiver is not None:
            self.receiver.start()
            self.refresh()  # zero counters from the start: a rate needs a first sample
        if self.poller is not None:
            self.poller.start()
            log.info("polling %d SNMP devices every %g s", len(self.poller.hosts), self.poller.interval)

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()
        if self.poller is not None:
            self.poller.stop()

    def refresh(self) -> None:
        """Before a scrape: put the receiver's counters into its runner state if they changed."""
        if self.receiver is None:
            return
        with self._lock:
            generation = self.receiver.generation
            if generation == self._seen_generation:
                return
            self._seen_generation = generation
            self.runner.record("snmp_traps", Result(metrics=self.receiver.metrics()))

    def _on_trap(self, findings: list[Finding]) -> None:
        self.sink(findings)

    def _on_cycle(self, poller: SnmpPoller) -> None:
        results = dict(poller.results)
        down = sum(
            1
            for r in results.values()
            if any(m.name == "diag_snmp_up" and any(v == 0 for _, v in m.samples) for m in r.metrics)
            or any(f.check == "snmp_poll_failed" for f in r.findings)
        )
        devices = Metric("diag_snmp_poll_devices", "Inventory devices polled over SNMP.", samples=[((), len(results))])
        not_answering = Metric(
            "diag_snmp_poll_devices_down", "Polled devices that did not answer (or could not be polled).",
            samples=[((), float(down))],
        )  # fmt: skip
        cycle = Metric(
            "diag_snmp_poll_cycle_seconds", "How long the last poll of all devices took.",
            samples=[((), poller.cycle_seconds)],
        )  # fmt: skip
        findings = poller.findings()
        self.runner.record("snmp_poll", Result([devices, not_answering, cycle], findings), None, poller.cycle_seconds)
        if findings and self._push_polled:
            self.sink(findings)

    def _traps(self, environ: dict[str, Any]) -> Response:
        """``GET /traps``: the latest notifications (newest last) with their findings, as JSON."""
        assert self.receiver is not None
        severities = self.receiver.config.severities
        events = [
            e.to_dict() | {"findings": [f.to_dict() | {"host": f.host} for f in e.findings(severities)]}
            for e in self.receiver.recent()
        ]
        return json_response({"now": time.time(), "events": events})

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.receiver is not None:
            out["traps"] = {
                "listening": [f"{h}:{p}" for h, p in self.bound],
                "received": sum(self.receiver.received.values()),
                "rejected": {k: v for k, v in self.receiver.rejected.items() if v},
            }
        if self.poller is not None:
            out["snmp_poll"] = {"devices": len(self.poller.hosts), "cycle_seconds": round(self.poller.cycle_seconds, 3)}
        return out
