"""The multi-target SNMP exporter: ``/snmp?target=HOST[:PORT]&module=if_mib`` on the agent's HTTP port.

The same pattern as Prometheus' snmp_exporter: Prometheus names the device and the module (a profile, or
several separated by commas) and the agent polls it during the scrape. Credentials come from the inventory
host whose name or address is the target; a target outside the inventory is polled with v2c and the
configured default community only when one is configured. Nothing SNMP is imported until the first
``/snmp`` request, so an agent that never serves one pays no memory for it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from diag.wsgi import App, Response, json_response

if TYPE_CHECKING:
    from diag.inventory import Host, Inventory
    from diag.network.snmp.client import Target
    from diag.network.snmp.poller import SnmpPoller
    from diag.network.snmp.profiles import PollState

log = logging.getLogger(__name__)

DEFAULT_MODULE = "if_mib"


class SnmpExporter:
    """Resolves targets against the inventory and answers scrapes; keeps per-target state for findings."""

    def __init__(self, inventory: Inventory | None, default_community: str | None = None) -> None:
        self.inventory = inventory
        self.default_community = default_community
        self._states: dict[tuple[str, str], PollState] = {}
        self._lock = threading.Lock()

    def _host(self, name: str) -> Host | None:
        if self.inventory is None:
            return None
        host = self.inventory.hosts.get(name)
        if host is not None:
            return host
        return next((h for h in self.inventory.hosts.values() if h.address == name), None)

    def resolve(self, text: str) -> Target:
        """The Target for a ``target=`` value; LookupError when it may not be polled."""
        from diag.network.snmp.client import Target, parse_target, target_from_host

        name, port = parse_target(text, 0)
        host = self._host(name)
        if host is not None:
            return target_from_host(host, port or None)
        if self.default_community is None:
            raise LookupError(f"target {name!r} is not in the inventory and no default community is configured")
        return Target(host=name, port=port or 161, community=self.default_community, name=name)

    def handle(self, environ: dict[str, Any]) -> Response:
        from diag.errors import DiagError
        from diag.exporters.exposition import CONTENT_TYPE, encode_metrics
        from diag.network.snmp import profiles

        query = parse_qs(environ.get("QUERY_STRING", ""))
        target_text = (query.get("target") or [""])[0]
        if not target_text:
            return json_response({"error": "missing target parameter"}, "400 Bad Request")
        # module=a,b and module=a&module=b both work: Prometheus sends `params: {module: [a, b]}` as the latter
        modules = [m for value in (query.get("module") or [DEFAULT_MODULE]) for m in value.split(",") if m]
        try:
            target = self.resolve(target_text)
            loaded = [profiles.load(m) for m in modules]
        except (LookupError, ValueError, DiagError) as e:
            return json_response({"error": str(e)}, "400 Bad Request")
        key = (f"{target.host}:{target.port}", ",".join(modules))
        with self._lock:
            state = self._states.setdefault(key, profiles.PollState())
        result = profiles.poll(target, loaded, state)
        for f in result.findings:
            log.info("snmp %s: %s: %s", target.label, f.check, f.summary)
        return "200 OK", [("Content-Type", CONTENT_TYPE)], encode_metrics(result.metrics)


def register_routes(
    app: App, inventory: Inventory | None, default_community: str | None = None, poller: SnmpPoller | None = None
) -> SnmpExporter:
    """Mount ``/snmp`` on the agent's App, and ``/snmp/inventory`` (the poller's latest results) if given."""
    exporter = SnmpExporter(inventory, default_community)
    app.route("/snmp", exporter.handle)
    if poller is not None:

        def inventory_metrics(environ: dict[str, Any]) -> Response:
            from diag.exporters.exposition import CONTENT_TYPE, encode_metrics

            return "200 OK", [("Content-Type", CONTENT_TYPE)], encode_metrics(poller.metrics())

        app.route("/snmp/inventory", inventory_metrics)
    return exporter
