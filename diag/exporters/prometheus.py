"""A custom prometheus_client Collector that exposes the probes' latest results on a private registry.

Probes run on their own schedule; a scrape only renders what they last produced, so a scrape never
waits for a slow probe. Converted metric families are cached per probe run (``generation``), which
keeps the per-scrape cost to rendering text.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from diag import __version__
from diag.model import Metric as DiagMetric
from diag.runner import ProbeRunner, ProbeState


def to_families(metrics: Iterable[DiagMetric]) -> list[Metric]:
    """Convert diag metrics to prometheus_client families (merging families that share a name)."""
    out: dict[str, Metric] = {}
    for m in metrics:
        fam = out.get(m.name)
        if fam is None:
            if m.kind == "counter":
                fam = CounterMetricFamily(m.name, m.help, labels=m.label_names)
            elif m.kind == "info":
                fam = InfoMetricFamily(m.name.removesuffix("_info"), m.help, labels=m.label_names)
            else:
                fam = GaugeMetricFamily(m.name, m.help, labels=m.label_names)
            out[m.name] = fam
        for labels, value in m.samples:
            if m.kind == "info":
                fam.add_metric(labels, {})  # type: ignore[attr-defined]
            else:
                fam.add_metric(labels, value)  # type: ignore[attr-defined]
    return list(out.values())


class DiagCollector(Collector):
    """Yields the probes' metrics, per-probe health, findings, and build info."""

    def __init__(self, runner: ProbeRunner) -> None:
        self.runner = runner
        self._cache: dict[str, tuple[int, list[Metric]]] = {}
        self._lock = threading.Lock()

    def _families(self, state: ProbeState) -> list[Metric]:
        with self._lock:
            hit = self._cache.get(state.name)
            if hit is not None and hit[0] == state.generation:
                return hit[1]
            fams = to_families(state.result.metrics)
            self._cache[state.name] = (state.generation, fams)
            return fams

    def collect(self) -> Iterator[Metric]:
        states = list(self.runner.states.values())
        success = GaugeMetricFamily(
            "diag_probe_success", "Whether the probe's last run succeeded (1) or failed (0).", labels=["probe"]
        )
        no_data = GaugeMetricFamily(
            "diag_probe_no_data", "Whether the probe found nothing to watch on this host (1).", labels=["probe"]
        )
        duration = GaugeMetricFamily(
            "diag_probe_duration_seconds", "How long the probe's last run took.", labels=["probe"]
        )
        last = GaugeMetricFamily(
            "diag_probe_last_run_timestamp_seconds", "When the probe last ran (Unix time).", labels=["probe"]
        )
        failures = CounterMetricFamily(
            "diag_probe_failures", "Failed probe runs since the agent started.", labels=["probe"]
        )
        findings = GaugeMetricFamily(
            "diag_finding",
            "A current finding (1) by check, severity and subject; absent when resolved.",
            labels=["check", "severity", "subject", "probe"],
        )
        seen: set[tuple[str, ...]] = set()
        for s in states:
            success.add_metric([s.name], 1.0 if s.success else 0.0)
            no_data.add_metric([s.name], 1.0 if s.no_data else 0.0)
            duration.add_metric([s.name], s.duration_s)
            last.add_metric([s.name], s.last_run)
            failures.add_metric([s.name], s.failures)
            for f in s.result.findings:
                key = (f.check, f.severity, f.subject, s.name)
                if key not in seen:  # a duplicate label set would make the exposition invalid
                    seen.add(key)
                    findings.add_metric(list(key), 1.0)
            yield from self._families(s)
        yield success
        yield no_data
        yield duration
        yield last
        yield failures
        yield findings
        info = InfoMetricFamily("diag_build", "diag version and Python runtime.")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info


def make_registry(runner: ProbeRunner) -> CollectorRegistry:
    """A private registry: diag's collector plus the agent's own process figures (CPU, RSS, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DiagCollector(runner))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
