"""Exposes the probes' latest results to Prometheus: a custom prometheus_client Collector and a cached renderer.

Probes run on their own schedule; a scrape only renders what they last produced, so a scrape never
waits for a slow probe. :class:`DiagCollector` is the plain prometheus_client Collector (register it on
any registry). :class:`Exposition` is what ``/metrics`` serves: the same families, rendered by
prometheus_client's own text encoder, but each probe's text is rendered once per probe run and kept as
bytes, so a scrape re-renders only the small per-probe health block and the process figures.
"""

from __future__ import annotations

import logging
import platform
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from diag import __version__
from diag.model import Metric as DiagMetric
from diag.runner import ProbeRunner, ProbeState

log = logging.getLogger(__name__)

#: The text format we render (prometheus_client's CONTENT_TYPE_LATEST names a newer draft that older
#: Prometheus servers do not announce in their Accept header).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def to_families(metrics: Iterable[DiagMetric]) -> list[Metric]:
    """Convert diag metrics to prometheus_client families (merging families that share a name)."""
    out: dict[str, Metric] = {}
    for m in metrics:
        fam = out.get(m.name)
        if m.raw:  # passed through as it came (textfile): keep its type and its samples' own names
            if fam is None:
                fam = out[m.name] = Metric(m.name, m.help, m.kind)
            for sname, slabels, svalue in m.raw:
                fam.add_sample(sname, slabels, svalue)
            continue
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


def health_families(states: Sequence[ProbeState]) -> list[Metric]:
    """Per-probe health (success, no data, duration, last run, failures) and the current findings.

    A probe that has not finished its first run yet has no health samples (unknown, not failed).
    """
    success = GaugeMetricFamily(
        "diag_probe_success", "Whether the probe's last run succeeded (1) or failed (0).", labels=["probe"]
    )
    no_data = GaugeMetricFamily(
        "diag_probe_no_data", "Whether the probe found nothing to watch on this host (1).", labels=["probe"]
    )
    duration = GaugeMetricFamily("diag_probe_duration_seconds", "How long the probe's last run took.", labels=["probe"])
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
        if not s.runs:
            continue  # not run yet: its health is unknown, and a 0 would fire alerts at every start
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
    return [success, no_data, duration, last, failures, findings]


def build_info_family() -> Metric:
    info = InfoMetricFamily("diag_build", "diag version and Python runtime.")
    info.add_metric([], {"version": __version__, "python": platform.python_version()})
    return info


class _Families:
    """Adapts a list of families to what prometheus_client's encoder wants (an object with ``collect``)."""

    __slots__ = ("families",)

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def encode(families: Iterable[Metric]) -> bytes:
    """Render families in the Prometheus text format with prometheus_client's encoder."""
    return generate_latest(_Families(families))


class DiagCollector(Collector):
    """Yields the probes' metrics, per-probe health, findings, and build info.

    Converted families are cached per probe run (``generation``). A metric name belongs to the first
    probe that exposed it: a second probe exposing the same name would repeat a family, which makes
    Prometheus reject the whole scrape, so that family is dropped (and logged once) instead.
    """

    def __init__(self, runner: ProbeRunner) -> None:
        self.runner = runner
        self._cache: dict[str, tuple[int, list[Metric]]] = {}
        self._owner: dict[str, str] = {}  # metric name -> probe that exposes it
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.build_info = build_info_family()

    def families(self, state: ProbeState) -> tuple[int, list[Metric]]:
        """The probe's families and the generation they were converted from."""
        with self._lock:
            hit = self._cache.get(state.name)
            generation, metrics = state.generation, state.result.metrics  # read once: a probe may land meanwhile
            if hit is not None and hit[0] == generation:
                return hit
            fams = []
            for fam in to_families(metrics):
                owner = self._owner.setdefault(fam.name, state.name)
                if owner == state.name:
                    fams.append(fam)
                elif (fam.name, state.name) not in self._warned:
                    self._warned.add((fam.name, state.name))
                    log.warning(
                        "probe %s exposes %s, which probe %s already does; dropped", state.name, fam.name, owner
                    )
            hit = (generation, fams)
            self._cache[state.name] = hit
            return hit

    def collect(self) -> Iterator[Metric]:
        states = list(self.runner.states.values())
        for s in states:
            yield from self.families(s)[1]
        yield from health_families(states)
        yield self.build_info


class _Part:
    """A piece of the exposition: its text, and that text as raw deflate blocks once a client asks for gzip."""

    __slots__ = ("_deflated", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._deflated: bytes | None = None

    def deflated(self) -> bytes:
        if self._deflated is None:
            # A raw deflate stream of its own, ended with a sync flush: byte-aligned, not final, no
            # references outside itself, so parts compressed apart can simply be concatenated.
            c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
            self._deflated = c.compress(self.text) + c.flush(zlib.Z_SYNC_FLUSH)
        return self._deflated


#: Level 1 compresses the text ~7x at a third of the CPU of level 6 (which gains another 12 %).
GZIP_LEVEL = 1
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
_FINAL_BLOCK = b"\x03\x00"  # an empty final block with fixed Huffman codes: ends the deflate stream


def gzip_parts(parts: Sequence[_Part]) -> bytes:
    """One standard gzip member from parts whose deflate blocks were cached apart."""
    crc, size = 0, 0
    for p in parts:
        crc = zlib.crc32(p.text, crc)
        size += len(p.text)
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
    return b"".join([_GZIP_HEADER, *(p.deflated() for p in parts), _FINAL_BLOCK, trailer])


class Exposition:
    """Renders ``/metrics``: the probes' text cached per run, the health block per change, process figures per scrape.

    The output is the same text ``generate_latest`` gives for :func:`make_registry` (tests compare them),
    only cheaper: at a 15 s probe interval most scrapes find every probe's text already rendered. When
    the client accepts gzip (Prometheus does), each cached part is also compressed once and the parts'
    deflate blocks are joined into one gzip stream, so a scrape compresses only what changed.
    """

    def __init__(self, runner: ProbeRunner, process: bool = True) -> None:
        self.runner = runner
        self.collector = DiagCollector(runner)
        self._text: dict[str, tuple[int, _Part]] = {}
        self._health: tuple[tuple[int, ...], _Part] = ((), _Part(b""))
        self._build = _Part(encode([self.collector.build_info]))
        self._process = ProcessCollector(registry=None) if process else None
        self._lock = threading.Lock()

    def _probe_part(self, state: ProbeState) -> _Part:
        hit = self._text.get(state.name)
        if hit is not None and hit[0] == state.generation:
            return hit[1]
        generation, fams = self.collector.families(state)
        part = _Part(encode(fams))
        self._text[state.name] = (generation, part)
        return part

    def parts(self) -> list[_Part]:
        with self._lock:  # concurrent scrapes would otherwise render the same parts twice
            states = list(self.runner.states.values())
            parts = [self._probe_part(s) for s in states]
            key = tuple(s.generation for s in states)
            if key != self._health[0] or not self._health[1].text:
                self._health = (key, _Part(encode(health_families(states))))
            parts.append(self._health[1])
            parts.append(self._build)
        if self._process is not None:
            parts.append(_Part(encode(self._process.collect())))
        return [p for p in parts if p.text]

    def render(self, gzip: bool = False) -> bytes:
        """The exposition text, or (``gzip``) the same text as one gzip stream."""
        parts = self.parts()
        if gzip:
            with self._lock:  # parts cache their compressed form; compress each once
                return gzip_parts(parts)
        return b"".join(p.text for p in parts)


def make_registry(runner: ProbeRunner) -> CollectorRegistry:
    """A private registry: diag's collector plus the agent's own process figures (CPU, RSS, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DiagCollector(runner))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
