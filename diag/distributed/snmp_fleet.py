"""The fleet's SNMP results for Prometheus: what the workers polled, read back from Redis and rendered.

Workers write each device's latest poll to one Redis hash; any process can render the whole fleet from it
(``diag worker --export-snmp`` adds it to that worker's ``/metrics``). Results older than ``max_age_s`` are
left out, so a device nobody polls any more disappears instead of showing stale values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from diag.model import Finding, Metric, Result


def fleet_metrics(
    redis_client: Any, max_age_s: float = 600.0, namespace: str = ""
) -> tuple[list[Metric], list[Finding]]:
    """Every fresh device result merged into families with ``target`` as the first label, and its findings."""
    from diag.distributed import keys
    from diag.distributed.codec import result_from_dict
    from diag.network.snmp.poller import merge_by_target

    findings: list[Finding] = []
    fresh: list[tuple[str, Result]] = []
    now = time.time()
    for host, raw in sorted(redis_client.hgetall(keys.key(namespace, keys.SNMP_LATEST)).items()):
        doc = json.loads(raw)
        if now - float(doc.get("at", 0)) > max_age_s:
            continue
        result = result_from_dict(doc["result"])
        findings.extend(result.findings)
        fresh.append((host.decode() if isinstance(host, bytes) else str(host), result))
    return merge_by_target(fresh), findings


class FleetSnmpCollector:
    """A prometheus_client collector over :func:`fleet_metrics` (registered on a worker's registry)."""

    def __init__(self, redis_client: Any, max_age_s: float = 600.0, namespace: str = "") -> None:
        self.redis = redis_client
        self.max_age_s = max_age_s
        self.namespace = namespace

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration time (Redis may not be up yet)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        metrics, _ = fleet_metrics(self.redis, self.max_age_s, self.namespace)
        for m in metrics:
            if m.kind == "counter":
                name = m.name[: -len("_total")] if m.name.endswith("_total") else m.name
                fam: Any = CounterMetricFamily(name, m.help, labels=list(m.label_names))
            else:
                fam = GaugeMetricFamily(m.name, m.help, labels=list(m.label_names))
            for labels, value in m.samples:
                fam.add_metric(list(labels), value)
            yield fam
