"""A real Prometheus server scrapes a running ``diag agent``: ``up == 1``, the diag series arrive, promtool is happy.

Prometheus (Debian package ``prometheus``) runs on loopback with a temp config and TSDB, scraping every
second; the test reads its HTTP API the way Grafana would.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag import config
from tests.conftest import (
    AGENT_PORTS,
    AgentProcess,
    StartAgent,
    free_port,
    http_get,
    owns_port,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


class Prometheus:
    """A Prometheus server on 127.0.0.1 and a small client for its query API."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200, body
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return list(doc["data"]["result"])


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Factory: start Prometheus scraping ``target`` (HOST:PORT) as job ``diag`` every second."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> Prometheus:
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: diag\n    scrape_timeout: 1s\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        port = free_port(AGENT_PORTS[::-1])  # from the top of the range, away from the agents
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        procs.append(proc)
        prom = Prometheus(proc, port, log)

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return http_get(f"http://127.0.0.1:{port}/-/ready", timeout=2)[0] == 200

        wait_for(ready, timeout=60, what="Prometheus to be ready")
        assert owns_port(proc.pid, port), f"port {port}: the Prometheus answering is not ours"
        return prom

    yield start
    for proc in procs:
        stop_process(proc)


def enabled_probes() -> set[str]:
    """The probes a default configuration runs (what the agent under test runs)."""
    return {name for name, opts in config.build(None, {}).probes.items() if opts.enabled}


def test_prometheus_scrapes_the_agent(start_agent: StartAgent, prometheus_for: Any) -> None:
    agent: AgentProcess = start_agent("hosts: {}\n")
    prom: Prometheus = prometheus_for(f"127.0.0.1:{agent.port}")

    up = wait_for(lambda: [r for r in prom.query('up{job="diag"}') if r["value"][1] == "1"], what="up == 1")
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{agent.port}"

    # Every enabled probe reports its health; wait until each has run at least once.
    def all_probes() -> dict[str, str]:
        got = {r["metric"]["probe"]: r["value"][1] for r in prom.query('diag_probe_success{job="diag"}')}
        return got if set(got) >= enabled_probes() else {}

    success = wait_for(all_probes, what="diag_probe_success for every probe")
    assert success["cpu"] == "1" and success["memory"] == "1", success

    for name in (
        "diag_cpu_seconds_total",
        "diag_memory_total_bytes",
        "diag_build_info",
        "diag_probe_duration_seconds",
        "diag_probe_no_data",
        "process_resident_memory_bytes",
    ):
        wait_for(functools.partial(prom.query, f'{name}{{job="diag"}}'), what=name)
    idle = prom.query('diag_cpu_seconds_total{job="diag",cpu="0",mode="idle"}')
    assert float(idle[0]["value"][1]) > 0
    build = prom.query('diag_build_info{job="diag"}')[0]["metric"]
    assert build["version"] and build["python"]
    memory = float(prom.query('diag_memory_total_bytes{job="diag"}')[0]["value"][1])
    assert memory == pytest.approx(_meminfo_total(), rel=0.01)
    # Prometheus found no problem with what it parsed.
    assert prom.query('scrape_samples_scraped{job="diag"}')[0]["value"][1] != "0"


def _meminfo_total() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return float(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def test_promtool_finds_nothing_to_complain_about(start_agent: StartAgent) -> None:
    agent = start_agent("hosts: {}\n")
    # Wait until every probe has run once, so the check sees every family the agent exposes.
    wait_for(lambda: _last_runs(agent.metrics()).keys() >= enabled_probes(), what="every probe to have run")
    text = agent.metrics()
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")
    assert "# HELP diag_probe_success " in text and "diag_build_info{" in text


def _last_runs(text: str) -> dict[str, float]:
    """Probes that have run at least once -> when, from the agent's exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith("diag_probe_last_run_timestamp_seconds{"):
            probe = line.split('probe="', 1)[1].split('"', 1)[0]
            if float(line.rsplit(" ", 1)[1]) > 0:
                out[probe] = float(line.rsplit(" ", 1)[1])
    return out
