"""The network collectors inside ``diag agent``: the SNMP trap receiver and the SNMP poller of inventory devices.

Built only when configured (``agent.traps``; inventory hosts with ``snmp.profiles`` unless
``agent.snmp_poll.enabled`` is false). Each appears to the exporter as a source of the probe runner
(``snmp_traps``, ``snmp_poll``), so its metrics, health and current findings are in ``/metrics`` like a
probe's. Trap findings are events: they go to the findings sink and to ``GET /traps``, not to
``diag_finding``. The sink is the incident engine when ``agent.incidents`` is configured (:meth:`connect`),
else the log. With the engine, a linkUp trap resolves the linkDown's incident only after a re-check of the
interface (a poll of the device, or a GET of its ifOperStatus), as the engine requires of push sources.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diag.errors import DiagError
from diag.model import Evidence, Finding, Metric, Result, fingerprint, gap_for
from diag.wsgi import App, Response, json_response

if TYPE_CHECKING:
    from diag.config import AgentConfig
    from diag.inventory import Inventory
    from diag.network.snmp.poller import SnmpPoller
    from diag.network.traps.receiver import TrapReceiver
    from diag.probes.runner import ProbeRunner

log = logging.getLogger(__name__)

FindingSink = Callable[[list[Finding]], object]
IF_INDEX = "1.3.6.1.2.1.2.2.1.1."
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8."


@dataclass(slots=True)
class _Verdict:
    """What the incident engine asks of a verifying re-check (its ``VerdictLike``)."""

    cleared: bool
    note: str
    evidence: list[Evidence] = field(default_factory=list)


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
        self.inventory = inv
        self.engine: Any = None
        self.receiver: TrapReceiver | None = None
        self.poller: SnmpPoller | None = None
        self._seen_generation = -1
        self._lock = threading.Lock()
        if cfg.traps is not None:
            from diag.network.traps.config import engine_identity
            from diag.network.traps.receiver import TrapReceiver

            engine = engine_identity(cfg.traps, cfg.paths.state)
            self.receiver = TrapReceiver(cfg.traps, inv, on_finding=self._on_trap, engine=engine)
            try:
                self.bound = self.receiver.bind()  # now, so a taken port stops the agent before it starts
            except OSError as e:
                raise DiagError(f"agent.traps: {e.strerror or e}") from None
            runner.add_source("snmp_traps")
            app.route("/traps", self._traps)
        if inv is not None and cfg.snmp_poll.enabled and any(h.snmp.get("profiles") for h in inv.hosts.values()):
            from diag.network.snmp.poller import SnmpPoller

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
        # The incident engine gets the polls device by device from the poller itself (diag.agent.incidents).
        self.runner.record(
            "snmp_poll", Result([devices, not_answering, cycle], poller.findings()), None, poller.cycle_seconds
        )

    # -- the incident engine ---------------------------------------------------------------------------
    def connect(self, engine: Any) -> None:
        """Send trap findings to the incident engine (``diag.incidents.engine.Engine``) instead of the log."""
        self.engine = engine
        self.sink = self._to_engine
        resumable = getattr(engine, "resumable", None)
        if resumable is not None:  # a linkUp re-check that was due when the agent stopped is built again
            resumable("snmp_trap", self._resume_recheck)

    def _to_engine(self, findings: list[Finding]) -> None:
        opened = [f for f in findings if "resolves" not in f.labels]
        if opened:
            self.engine.ingest("snmp_trap", opened)
        for f in findings:
            if "resolves" in f.labels:  # linkUp: the condition a linkDown opened may be gone; verify first
                fp = fingerprint(f.host, f.labels["resolves"], f.subject)
                self.engine.resolve("snmp_trap", fp, _LinkRecheck(self, f), f.evidence[0])

    def _resume_recheck(self, incident: Any, spec: Any) -> _LinkRecheck:
        """The verifier of a linkUp whose re-check was due when the agent stopped, from what it stored."""
        index = spec.get("if_index")
        varbinds = [[f"{IF_INDEX}{index}", "Integer", index]] if index is not None else []
        ev = Evidence("text", "linkUp (resumed after a restart)", "", {"varbinds": varbinds})
        up = Finding("snmp_link_up", "info", "", str(spec["subject"]), evidence=[ev], host=str(spec["host"]))
        return _LinkRecheck(self, up)

    def recheck_link(self, up: Finding) -> _Verdict:
        """Is the interface of a linkUp trap really up? A poll of the device, else a GET of ifOperStatus."""
        host = self.inventory.hosts.get(up.host) if self.inventory is not None else None
        if host is None or not host.snmp:
            return _Verdict(
                False, f"{up.host} has no SNMP settings in the inventory: confirm interface {up.subject} by hand"
            )
        try:
            if self.poller is not None and host in self.poller.hosts:
                result = self.poller.poll_host(host)
                still = [f for f in result.findings if f.check == "snmp_interface_down" and f.subject == up.subject]
                gap = None if still else gap_for(result.gaps, "snmp_interface_down", up.subject)
                if gap is not None:  # a poll that timed out has no interface-down finding: that is not "up"
                    return _Verdict(False, f"re-check by SNMP poll: interface {up.subject} not checked: {gap.reason}")
                why = "still down" if still else "up (no interface-down finding)"
                evidence = [e for f in still for e in f.evidence]
                return _Verdict(not still, f"re-check by SNMP poll: interface {up.subject} {why}", evidence)
            index = next((v for o, _, v in up.evidence[0].data.get("varbinds", []) if o.startswith(IF_INDEX)), None)
            if index is None:
                return _Verdict(False, f"the linkUp trap names no ifIndex: confirm interface {up.subject} by hand")
            from diag.network.snmp.client import open_session, target_from_host

            session = open_session(target_from_host(host))
            try:
                ((oid, _, status),) = session.get([f"{IF_OPER_STATUS}{index}"])
            finally:
                session.close()
        except DiagError as e:
            return _Verdict(False, f"re-check of interface {up.subject} failed: {e}")
        text = f"{oid} = {status}"
        return _Verdict(
            status == 1,
            f"re-check by SNMP GET: ifOperStatus.{index} = {status}",
            [Evidence("metric", "ifOperStatus", text)],
        )

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


class _LinkRecheck:
    """A linkUp's verifying re-check, with what the engine stores to build it again after a restart."""

    def __init__(self, parts: NetworkParts, up: Finding) -> None:
        self.parts, self.up = parts, up
        varbinds = up.evidence[0].data.get("varbinds", []) if up.evidence else []
        index = next((v for o, _, v in varbinds if str(o).startswith(IF_INDEX)), None)
        self.resume_spec = {"host": up.host, "subject": up.subject, "if_index": index if type(index) is int else None}

    def __call__(self) -> _Verdict:
        return self.parts.recheck_link(self.up)
