"""The Prometheus exporter: the cached exposition equals prometheus_client's own rendering, passes promtool,
escapes odd label values, and never emits a family twice."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from diag import config
from diag.exporters.prometheus import DiagCollector, Exposition
from diag.model import Result
from diag.probes.runner import ProbeRunner, ProbeState

FIXTURES = Path(__file__).parent.parent / "fixtures" / "agent" / "proc"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture
def runner(tmp_path: Path) -> ProbeRunner:
    procfs = tmp_path / "proc"
    shutil.copytree(FIXTURES, procfs)
    r = ProbeRunner(config.build(None, {"paths": {"procfs": str(procfs)}}), only=["cpu", "memory"])
    r.run_all()
    return r


def reference(runner: ProbeRunner) -> bytes:
    """What prometheus_client renders for the plain collector on a registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DiagCollector(runner))
    return generate_latest(registry)


def set_result(state: ProbeState, result: Result) -> None:
    state.result, state.success, state.generation = result, True, state.generation + 1


def promtool(text: bytes) -> tuple[int, str]:
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, check=False)
    return p.returncode, (p.stdout + p.stderr).decode()


def test_cached_rendering_equals_prometheus_client(runner: ProbeRunner) -> None:
    exp = Exposition(runner, process=False)
    assert exp.render() == reference(runner)
    runner.run("cpu")  # a new generation: the cpu text is rendered again, memory's reused
    memory_text = exp._text["memory"][1]
    assert exp.render() == reference(runner)
    assert exp._text["memory"][1] is memory_text
    assert exp._text["cpu"][0] == runner.states["cpu"].generation


def test_output_passes_promtool(runner: ProbeRunner) -> None:
    body = Exposition(runner).render()
    assert promtool(body) == (0, "")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"diag_cpu_seconds", "diag_probe_success", "diag_build_info", "process_resident_memory_bytes"} <= names


def test_health_families_follow_probe_state(runner: ProbeRunner) -> None:
    s = runner.states["memory"]
    s.success, s.no_data, s.generation = True, True, s.generation + 1
    text = Exposition(runner, process=False).render().decode()
    assert 'diag_probe_success{probe="memory"} 1.0' in text
    assert 'diag_probe_no_data{probe="memory"} 1.0' in text
    assert 'diag_probe_no_data{probe="cpu"} 0.0' in text
    assert 'diag_probe_failures_total{probe="cpu"} 0.0' in text


def test_a_name_exposed_by_two_probes_is_kept_once(runner: ProbeRunner) -> None:
    clash = Result()
    clash.metric("diag_cpu_seconds_total", "Clashes with the cpu probe.", "counter", ("cpu", "mode")).add(1, "9", "x")
    clash.metric("diag_memory_extra_bytes", "Does not clash.").add(5)
    set_result(runner.states["memory"], clash)
    body = Exposition(runner, process=False).render()
    assert body == reference(runner)
    text = body.decode()
    assert text.count("# TYPE diag_cpu_seconds_total counter") == 1
    assert 'cpu="9"' not in text and "diag_memory_extra_bytes 5.0" in text
    assert promtool(body) == (0, "")


def test_odd_label_values_and_duplicate_findings_stay_valid(runner: ProbeRunner) -> None:
    r = Result()
    r.metric("diag_test_files", "Odd label values.", labels=("path",)).add(1, 'C:\\dir "quoted"\nnext line')
    r.find("fs_full", "critical", "full", subject="/mnt/a")
    r.find("fs_full", "critical", "full again", subject="/mnt/a")  # same labels: must appear once
    set_result(runner.states["memory"], r)
    body = Exposition(runner).render()
    assert promtool(body) == (0, "")
    text = body.decode()
    assert text.count('diag_finding{check="fs_full",probe="memory",severity="critical",subject="/mnt/a"} 1.0') == 1
    [fam] = [f for f in text_string_to_metric_families(text) if f.name == "diag_test_files"]
    assert fam.samples[0].labels["path"] == 'C:\\dir "quoted"\nnext line'


def test_failed_probe_exposes_health_only(runner: ProbeRunner) -> None:
    s = runner.states["cpu"]
    s.success, s.error, s.result, s.failures = False, "timed out after 1 s", Result(), 1
    s.generation += 1
    text = Exposition(runner, process=False).render().decode()
    assert 'diag_probe_success{probe="cpu"} 0.0' in text
    assert 'diag_probe_failures_total{probe="cpu"} 1.0' in text
    assert "diag_cpu_seconds_total" not in text
    assert "diag_memory_total_bytes" in text


def test_probe_that_has_not_run_has_no_health_samples(tmp_path: Path) -> None:
    fresh = ProbeRunner(config.build(None, {"paths": {"procfs": str(tmp_path)}}), only=["cpu"])
    text = Exposition(fresh, process=False).render().decode()
    assert "# TYPE diag_probe_success gauge" in text
    assert 'diag_probe_success{probe="cpu"}' not in text  # unknown, not failed
    fresh.run("cpu")  # tmp_path has no stat file: no data
    text = Exposition(fresh, process=False).render().decode()
    assert 'diag_probe_success{probe="cpu"} 1.0' in text and 'diag_probe_no_data{probe="cpu"} 1.0' in text


def test_gzip_stream_is_one_valid_member_of_the_same_text(runner: ProbeRunner) -> None:
    exp = Exposition(runner, process=False)
    plain, packed = exp.render(), exp.render(gzip=True)
    d = zlib.decompressobj(wbits=31)  # gzip container: checks the CRC and the length in the trailer
    assert d.decompress(packed) == plain and d.eof and d.unused_data == b""
    # gzip(1) agrees, and so does a second render that reuses the cached deflate blocks of unchanged probes.
    assert subprocess.run(["gzip", "-dc"], input=packed, capture_output=True, check=True).stdout == plain
    runner.run("cpu")
    assert zlib.decompress(exp.render(gzip=True), wbits=31) == exp.render()
    assert len(packed) < len(plain) / 2


def test_direct_encoder_matches_prometheus_client_on_every_kind(runner: ProbeRunner) -> None:
    r = Result()
    r.metric("diag_t_events", "A counter named without _total.", "counter").add(3)
    r.metric("diag_t_total", "A counter named with it.", "counter", ("z", "a")).add(1e21, "1", "2").add(0.1, "3", "4")
    r.metric("diag_t_values", "Odd values\\ and a\nnewline in help.", labels=("v",)).add(float("nan"), "nan").add(
        float("inf"), "inf"
    ).add(float("-inf"), "-inf").add(-0.0, "zero").add(123456789.0, "big")
    r.metric("diag_t_kernel_info", "An info metric.", "info", ("release",)).add(1, "6.1.0-13-amd64")
    r.metric("diag_t_values", "Merged with the family above.", labels=("v",)).add(2, 'q"\\\n')
    hist = r.metric("diag_t_latency_seconds", "Passed through.", "histogram")
    hist.raw += [("diag_t_latency_seconds_bucket", {"le": "+Inf"}, 4.0), ("diag_t_latency_seconds_count", {}, 4.0)]
    hist.raw.append(("diag_t_latency_seconds_sum", {}, 1.5))
    r.metric("diag_bad-name", "Not a valid name: dropped.").add(1)
    set_result(runner.states["memory"], r)
    body = Exposition(runner, process=False).render()
    assert body == reference(runner)
    assert b"diag_bad-name" not in body
    assert promtool(body) == (0, "")


def test_gzip_with_per_scrape_process_tail(runner: ProbeRunner) -> None:
    exp = Exposition(runner)
    packed = exp.render(gzip=True)
    d = zlib.decompressobj(wbits=31)
    text = d.decompress(packed)
    assert d.eof and d.unused_data == b""
    body, _, tail = text.partition(b"# HELP process_")
    assert body == Exposition(runner, process=False).render()
    assert b"process_resident_memory_bytes" in tail
    assert promtool(text) == (0, "")
