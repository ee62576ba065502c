"""Keeps docs/probes.md true to the code: every metric name it lists exists, and every probe has a section.

A name counts as existing when a live run of all probes with the default configuration exposes it on
this machine, or, for metrics that only appear under conditions (md arrays, SMART, chrony, a second
run), when it is written literally in the probe sources. A metric renamed in the code without the
documentation following therefore fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diag import config
from diag.probes.runner import ProbeRunner

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "probes.md"
# the health block (diag_probe_*, diag_finding) is the exporter's, and probes.md refers to it
SOURCES = [*sorted((ROOT / "diag" / "probes").glob("*.py")), ROOT / "diag" / "exporters" / "prometheus.py"]

# a whole backticked span that is a metric name; templates such as `diag_vmstat_<field>_total` are left out
NAME = re.compile(r"`(diag_[a-z0-9_]+)`")


def documented_names() -> set[str]:
    return set(NAME.findall(DOC.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def live_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Metric names a real run of every default-enabled probe exposes here (state kept in a temp dir)."""
    data = tmp_path_factory.mktemp("data")
    cfg = config.build(None, {"data": str(data)})
    runner = ProbeRunner(cfg)
    states = runner.run_all()
    return {m.name for s in states.values() for m in s.result.metrics}


def test_doc_lists_many_metric_names() -> None:
    # guards the parser itself: a change of the doc's quoting style must not make the next test vacuous
    assert len(documented_names()) > 150


def test_every_documented_metric_exists(live_names: set[str]) -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    missing = sorted(n for n in documented_names() if n not in live_names and f'"{n}"' not in source)
    assert not missing, f"docs/probes.md names metrics the code does not expose: {missing}"


def test_live_run_exposes_documented_core_metrics(live_names: set[str]) -> None:
    # the probes every Linux host has must really run here, or the check above would lean on sources only
    for name in ("diag_cpu_seconds_total", "diag_memory_total_bytes", "diag_load5", "diag_network_receive_bytes_total"):
        assert name in live_names


def test_every_probe_has_a_section_and_a_table_row() -> None:
    config.build(None, None)  # loads every probe module into the registry
    from diag.probes import probes

    text = DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (\w+)$", text, re.M))
    rows = set(re.findall(r"^\| \[(\w+)\]\(#\w+\) \|", text, re.M))
    names = set(probes.names())
    assert names == headings, f"sections differ from the registered probes: {sorted(names ^ headings)}"
    assert names == rows, f"summary table differs from the registered probes: {sorted(names ^ rows)}"
