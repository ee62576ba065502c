"""Exposes the probes' latest results to Prometheus: a custom prometheus_client Collector and a cached renderer.

Probes run on their own schedule; a scrape only renders what they last produced, so a scrape never
waits for a slow probe. :class:`DiagCollector` is the plain prometheus_client Collector (register it on
any registry). :class:`Exposition` is what ``/metrics`` serves: the same text, byte for byte (the tests
compare them), but each probe's text is rendered once per probe run, directly from diag's metrics, and
kept as bytes (and as deflate blocks for gzip), so a scrape renders only the process figures.
"""

from __future__ import annotations

import logging
import platform
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from diag import __version__
from diag.exporters.exposition import encode, encode_metrics, exposed_name, to_families, valid_names
from diag.model import Metric as DiagMetric
from diag.probes.runner import ProbeRunner, ProbeState

log = logging.getLogger(__name__)

def health_metrics(states: Sequence[ProbeState]) -> list[DiagMetric]:
    """Per-probe health (success, no data, duration, last run, failures) and the current findings.

    A probe that has not finished its first run yet has no health samples (unknown, not failed).
    """
    success = DiagMetric("diag_probe_success", "Whether the probe's last run succeeded (1) or failed (0).")
    no_data = DiagMetric("diag_probe_no_data", "Whether the probe found nothing to watch on this host (1).")
    duration = DiagMetric("diag_probe_duration_seconds", "How long the probe's last run took.")
    last = DiagMetric("diag_probe_last_run_timestamp_seconds", "When the probe last ran (Unix time).")
    failures = DiagMetric("diag_probe_failures_total", "Failed probe runs since the agent started.", "counter")
    interval = DiagMetric("diag_probe_interval_seconds", "The probe's configured time between runs.")
    findings = DiagMetric(
        "diag_finding",
        "A current finding (1) by check, severity and subject; absent when resolved.",
        label_names=("check", "severity", "subject", "probe"),
    )
    for m in (success, no_data, duration, last, failures, interval):
        m.label_names = ("probe",)
    seen: set[tuple[str, ...]] = set()
    for s in states:
        if not s.runs:
            continue  # not run yet: its health is unknown, and a 0 would fire alerts at every start
        success.samples.append(((s.name,), 1.0 if s.success else 0.0))
        no_data.samples.append(((s.name,), 1.0 if s.no_data else 0.0))
        duration.samples.append(((s.name,), s.duration_s))
        last.samples.append(((s.name,), s.last_run))
        failures.samples.append(((s.name,), float(s.failures)))
        interval.samples.append(((s.name,), s.interval_s))
        for f in s.result.findings:
            key = (f.check, f.severity, f.subject, s.name)
            if key not in seen:  # a duplicate label set would make the exposition invalid
                seen.add(key)
                findings.samples.append((key, 1.0))
    return [success, no_data, duration, last, failures, interval, findings]


def health_families(states: Sequence[ProbeState]) -> list[Metric]:
    return to_families(health_metrics(states))


def build_info_family() -> Metric:
    info = InfoMetricFamily("diag_build", "diag version and Python runtime.")
    info.add_metric([], {"version": __version__, "python": platform.python_version()})
    return info


class DiagCollector(Collector):
    """Yields the probes' metrics, per-probe health, findings, and build info.

    Converted families are cached per probe run (``generation``). A metric name belongs to the first
    probe that exposed it: a second probe exposing the same name would repeat a family, which makes
    Prometheus reject the whole scrape, so that family is dropped (and logged once) instead. So is a
    family whose metric or label names Prometheus would not accept.
    """

    def __init__(self, runner: ProbeRunner) -> None:
        self.runner = runner
        self._cache: dict[str, tuple[int, list[Metric]]] = {}
        self._owner: dict[str, str] = {}  # exposed metric name -> probe that exposes it
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.build_info = build_info_family()

    def _drop(self, probe: str, name: str, why: str) -> None:
        if (name, probe) not in self._warned:
            self._warned.add((name, probe))
            log.warning("probe %s exposes %s, %s; dropped", probe, name, why)

    def accepted(self, state: ProbeState) -> tuple[int, list[DiagMetric]]:
        """The probe's metrics that may be exposed, and the generation they belong to."""
        generation, metrics = state.generation, state.result.metrics  # read together: a run may land meanwhile
        out = []
        for m in metrics:
            name = exposed_name(m)
            if not valid_names(name, m.label_names):
                self._drop(state.name, repr(name), "not a valid metric or label name")
                continue
            owner = self._owner.setdefault(name, state.name)
            if owner != state.name:
                self._drop(state.name, name, f"which probe {owner} already does")
                continue
            out.append(m)
        return generation, out

    def families(self, state: ProbeState) -> tuple[int, list[Metric]]:
        """The probe's families and the generation they were converted from."""
        with self._lock:
            hit = self._cache.get(state.name)
            if hit is not None and hit[0] == state.generation:
                return hit
            generation, metrics = self.accepted(state)
            try:
                fams = to_families(metrics)
            except ValueError as e:  # a passed-through family prometheus_client refuses
                self._drop(state.name, "a family", str(e))
                fams = []
            hit = (generation, fams)
            self._cache[state.name] = hit
            return hit

    def collect(self) -> Iterator[Metric]:
        states = list(self.runner.states.values())
        for s in states:
            yield from self.families(s)[1]
        yield from health_families(states)
        yield self.build_info


#: Level 1 compresses the text ~7x at a third of the CPU of level 6 (which gains another 12 %).
GZIP_LEVEL = 1
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS


def _deflate(data: bytes, final: bool) -> bytes:
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)  # raw deflate: the gzip framing is ours
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


class Exposition:
    """Renders ``/metrics``: the probes' text cached per run, process figures per scrape.

    The output is the same text ``generate_latest`` gives for :func:`make_registry` (tests compare them),
    only cheaper. Each probe's text is rendered once per probe run (``generation``); the body (every
    probe's text, the health block, build info) is joined again only when some probe has run since the
    last scrape, and compressed once for gzip clients. A scrape itself renders and compresses only the
    ``process_*`` figures and splices them on: the body's deflate stream ends with a sync flush
    (byte-aligned, not final, no references past itself), so the tail's stream can follow it inside one
    standard gzip member, whose CRC-32 continues from the body's.
    """

    def __init__(self, runner: ProbeRunner, process: bool = True) -> None:
        self.runner = runner
        self.collector = DiagCollector(runner)
        self._text: dict[str, tuple[int, bytes]] = {}
        self._build = encode([self.collector.build_info])
        self._process = ProcessCollector(registry=None) if process else None
        self._key: tuple[int, ...] | None = None  # the probe generations the body was made from
        self._body = b""
        self._gz: tuple[bytes, int] | None = None  # the body as deflate blocks, and its CRC-32
        self._lock = threading.Lock()
        #: More text rendered on every scrape after the process figures (e.g. the incident engine's metrics).
        self.extra: list[Callable[[], bytes]] = []

    def _probe_text(self, state: ProbeState) -> bytes:
        hit = self._text.get(state.name)
        if hit is not None and hit[0] == state.generation:
            return hit[1]
        with self.collector._lock:
            generation, metrics = self.collector.accepted(state)
        try:
            text = encode_metrics(metrics)
        except ValueError as e:  # a passed-through family prometheus_client refuses
            self.collector._drop(state.name, "a family", str(e))
            text = b""
        self._text[state.name] = (generation, text)
        return text

    def _current(self, gzip: bool) -> tuple[bytes, tuple[bytes, int] | None]:
        with self._lock:  # concurrent scrapes would otherwise render the same body twice
            states = list(self.runner.states.values())
            key = tuple(s.generation for s in states)
            if key != self._key:
                parts = [self._probe_text(s) for s in states]
                parts.append(encode_metrics(health_metrics(states)))
                parts.append(self._build)
                self._key, self._body, self._gz = key, b"".join(parts), None
            if gzip and self._gz is None:
                self._gz = (_deflate(self._body, final=False), zlib.crc32(self._body))
            return self._body, self._gz

    def render(self, gzip: bool = False) -> bytes:
        """The exposition text, or (``gzip``) the same text as one gzip member."""
        body, gz = self._current(gzip)
        tail = encode(self._process.collect()) if self._process is not None else b""
        for fn in self.extra:
            tail += fn()
        if not gzip:
            return body + tail
        assert gz is not None
        blocks, crc = gz
        size = (len(body) + len(tail)) & 0xFFFFFFFF
        trailer = struct.pack("<II", zlib.crc32(tail, crc) & 0xFFFFFFFF, size)
        return b"".join([_GZIP_HEADER, blocks, _deflate(tail, final=True), trailer])


def make_registry(runner: ProbeRunner) -> CollectorRegistry:
    """A private registry: diag's collector plus the agent's own process figures (CPU, RSS, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DiagCollector(runner))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
