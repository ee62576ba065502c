"""Slow clients cannot starve the agent: 2,000 slowloris connections against a real ``diag agent``.

The flood (bench/slowloris.py) opens 2,000 connections at 100 per second from 40 loopback addresses, each
sending a request line and then a header line every 2 s, never finishing. Meanwhile a scraper fetches
``/metrics`` every 0.2 s from 127.0.0.1 and the agent's RSS is sampled. The issue's figures are behaviour
here (issue 15): every /metrics scrape is answered (its p95, under 1 s, is printed, not asserted), no scheduled
probe run is missed, RSS stays <= 60 MiB and goes back under 45 MiB, and the log gets at most one line per
minute about the flood. Bounded: 2,000 connections, ~25 s of flood.
"""

from __future__ import annotations

import re
import time

import pytest

from bench.slowloris import Flood, Sampler, Scraper, metric, run_all
from tests.conftest import StartAgent, wait_for

pytestmark = pytest.mark.integration

INVENTORY = """\
hosts: {}
agent:
  probes:
    load: {interval: 2}
"""


def test_a_slowloris_flood_does_not_starve_metrics_probes_or_memory(
    start_agent: StartAgent, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = start_agent(INVENTORY)
    time.sleep(3)  # first probe runs, start-up settled
    sampler = Sampler(agent.proc.pid)
    rss_before, _ = sampler.sample()
    flood = Flood(agent.port, connections=2000, rate=100, sources=40, trickle=2.0, duration=25)
    scraper = Scraper(agent.port, every=0.2)
    runs: set[float] = set()

    class RunWatcher(Scraper):
        """The probe's last-run timestamps seen during the flood: one per scheduled run."""

        def run(self) -> None:
            while not self._stop.is_set():
                body = scraper.last_body
                m = re.search(rb'^diag_probe_last_run_timestamp_seconds\{probe="load"\} (\S+)$', body, re.M)
                if m:
                    runs.add(float(m.group(1)))
                self._stop.wait(0.2)

    t0 = time.monotonic()
    run_all(flood, scraper, sampler, RunWatcher(agent.port), until=flood)
    flood_s = time.monotonic() - t0
    body = agent.metrics().encode()
    refused = metric(body, "diag_http_connections_refused_total")
    timed_out = metric(body, "diag_http_connections_timed_out_total")

    def settled() -> bool:
        return sampler.sample()[0] < 45.0

    rss_max = max(sampler.rss)
    settle_t0 = time.monotonic()
    wait_for(settled, timeout=60, interval=1, what="the agent's RSS back under 45 MiB")
    rss_after, threads_after = sampler.sample()
    p50, p95 = scraper.p(0.5), scraper.p(0.95)
    log = agent.stderr()
    flood_lines = [ln for ln in log.splitlines() if "diag.httpserver" in ln]
    with capsys.disabled():
        print(
            f"\nslowloris: {flood.opened} connections ({flood.connect_failed} failed to connect) in {flood_s:.1f} s;"
            f" closed by the agent while trickling {flood.closed_by_server}; refused {refused:.0f},"
            f" timed out/evicted {timed_out:.0f}\n"
            f"/metrics: {len(scraper.latencies)} scrapes, p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms,"
            f" max {max(scraper.latencies) * 1000:.1f} ms, {scraper.failures} failed\n"
            f"RSS: before {rss_before:.1f} MiB, max {rss_max:.1f}, after {rss_after:.1f}"
            f" ({time.monotonic() - settle_t0:.0f} s after); threads max {max(sampler.threads)},"
            f" after {threads_after}\n"
            f"probe runs seen during the flood: {len(runs)}; log lines about it: {len(flood_lines)}"
        )
    assert flood.opened + flood.connect_failed == 2000
    assert flood.opened >= 1900, "the agent accepts connections and closes them itself"
    assert refused + timed_out >= 1000, "the caps and the deadline closed the flood's connections"
    # Starved, a scrape would wait behind the slow clients' 10 s read deadline and fail (the scraper's timeout is
    # 10 s): that is asserted. Its latency (p95 under 1 s, issue 15) is a figure printed above and measured by
    # bench/slowloris.py, not asserted: on a loaded 2-core machine it depends on the other suites.
    assert scraper.failures == 0
    assert rss_max <= 60.0
    assert rss_after < 45.0
    assert max(sampler.threads) < 40, "a fixed pool: threads do not grow with connections"
    # no scheduled run missed: APScheduler warns of a missed or skipped run; the probe kept running
    assert "was missed" not in log and "maximum number of running instances" not in log
    assert len(runs) >= flood_s / 2 / 2
    # one summary line per minute at most, and never a traceback per client
    assert 1 <= len(flood_lines) <= 1 + int(flood_s // 60) + 1, flood_lines
    assert "Traceback" not in log
