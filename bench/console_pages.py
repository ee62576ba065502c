"""Bench: how long the console takes to answer each page with realistic data (50 hosts, 30 open incidents).

A real ``diag agent`` (subprocess, its probes on) serves a data directory written by tests/labs/consoledata.py:
50 inventory hosts, 30 open incidents of different ages (one with 60 reassignments in its history), a week of
resolved ones, the last check of every server, facts, approvals. A logged-in client (the console's session
cookie, as a browser sends it) asks for every page ``--runs`` times, one after the other, and the live pages'
self-refresh (the ``X-Diag-Live`` fetch) the same way. Goal (issue 20): p95 < 100 ms per page.

In the same run, for scale: the agent's own ``/healthz`` (the HTTP server with no page to render), and a real
Alertmanager (Debian's prometheus-alertmanager) holding 30 alerts, asked for them (``GET /api/v2/alerts``), the
list a NOC would otherwise keep open. Ratios are printed against both. Assumes nothing about the machine's load
and asserts nothing::

    .venv/bin/python bench/console_pages.py [--runs 200]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORTS = range(20660, 20670)
AM_PORTS = range(20670, 20675)
DEAD_PORTS = range(20675, 20680)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def timed(client: httpx.Client, path: str, runs: int, headers: dict[str, str] | None = None) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(path, headers=headers or {})
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:300]}")
    return out


def main() -> None:
    from tests.conftest import DIAG, free_port, stop_process, wait_for
    from tests.labs.alerting import Alertmanager
    from tests.labs.consoledata import seed

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dgc-bench-"))
    s = seed(base, free_port(DEAD_PORTS))
    port = free_port(PORTS)
    url = f"http://127.0.0.1:{port}"
    log = (base / "agent.log").open("wb")
    argv = [DIAG, "agent", "--inventory", str(s.inventory), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=base)
    am = Alertmanager(free_port(AM_PORTS))
    try:
        def up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, what="the agent")
        am.start("route: {receiver: none}\nreceivers: [{name: none}]\n")
        am.post_alerts(
            [
                {"labels": {"alertname": f"Alert{i % 7}", "instance": f"web-{i:02d}", "severity": "critical"},
                 "annotations": {"summary": f"something on web-{i:02d}"}, "startsAt": "2026-01-01T00:00:00Z"}
                for i in range(30)
            ]
        )  # fmt: skip
        c = httpx.Client(base_url=url, timeout=30)
        page = c.get("/ui/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = c.post("/ui/login", data={"csrf": csrf, "token": s.tokens["admin"]}, follow_redirects=False)
        assert r.status_code == 303, r.text
        incidents = c.get("/api/v1/incidents", headers={"Authorization": f"Bearer {s.tokens['admin']}"}).json()
        busy = incidents[0]["id"]
        pages = [
            "/ui/", "/ui/incidents", f"/ui/incidents/{busy}", "/ui/hosts/web-03", "/ui/hosts/sw-02", "/ui/wall",
            "/ui/checks", "/ui/approvals", "/ui/kb", "/ui/journal", "/ui/reports",
        ]  # fmt: skip
        for p in pages:  # warm-up: templates compiled, imports done
            timed(c, p, 3)
        rows = []
        for p in pages:
            ms = timed(c, p, args.runs)
            rows.append((p, statistics.median(ms), pct(ms, 0.95), max(ms), len(c.get(p).content)))
        live = timed(c, "/ui/incidents", args.runs, {"X-Diag-Live": "1"})
        health = timed(httpx.Client(base_url=url), "/healthz", args.runs)
        amc = httpx.Client(base_url=am.url)
        amt = timed(amc, "/api/v2/alerts", args.runs)
        hp95, ap95 = pct(health, 0.95), pct(amt, 0.95)
        print("AM: a real Alertmanager holding 30 alerts, asked for them")
        print(f"console pages, {s.hosts} hosts, {len(incidents)} open incidents, {args.runs} requests each (ms)")
        print(f"{'page':28} {'p50':>7} {'p95':>7} {'max':>7} {'bytes':>8} {'p95/healthz':>12} {'p95/AM':>8}")
        for p, p50, p95, mx, size in rows:
            print(f"{p:28} {p50:7.1f} {p95:7.1f} {mx:7.1f} {size:8d} {p95 / hp95:12.1f} {p95 / ap95:8.2f}")
        for name, ms in (("/ui/incidents (live fetch)", live), ("agent /healthz", health), ("AM /api/v2/alerts", amt)):
            print(f"{name:28} {statistics.median(ms):7.1f} {pct(ms, 0.95):7.1f} {max(ms):7.1f}")
        worst = max(rows, key=lambda x: x[2])
        print(f"worst p95: {worst[0]} {worst[2]:.1f} ms (goal < 100 ms: {'met' if worst[2] < 100 else 'NOT met'})")
    finally:
        am.remove()
        stop_process(proc)
        log.close()


if __name__ == "__main__":
    main()
