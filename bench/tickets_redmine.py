"""Benchmark: open an issue and add a note in a real Redmine through diag's backend, raw httpx and curl.

One real Redmine 5.0 (tests/labs/redminelab.py). Each round, alternating, every contender opens one issue carrying
a fresh fingerprint in the custom field and then adds one note to it:

- curl: one ``curl`` process per request (POST /issues.json, PUT /issues/N.json): Redmine's own time plus a
  process start, the figure the issue quotes (~54 ms create, ~53 ms note).
- httpx: the same two requests from this process on a keep-alive connection: the floor for any Python client.
- backend: ``RedmineBackend.create`` (dedup search, POST, check the fingerprint was kept) and ``add_note``
  (read the latest note to avoid a double, PUT). Names were resolved once before timing.

Usage: .venv/bin/python bench/tickets_redmine.py [--runs 30]
Prints medians, p95 and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag.exporters.tickets import build  # noqa: E402
from diag.exporters.tickets.base import TicketDraft  # noqa: E402
from diag.exporters.tickets.redmine import RedmineBackend  # noqa: E402
from tests.labs.redminelab import PROJECT, RedmineLab  # noqa: E402

PORTS = range(20300, 20310)


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    with RedmineLab(PORTS) as lab, tempfile.TemporaryDirectory(prefix="dgk-bench-") as tmp:
        fid = lab.fingerprint_field_id
        header = Path(tmp) / "headers"
        header.write_text(f"X-Redmine-API-Key: {lab.api_key}\nContent-Type: application/json\n")
        client = httpx.Client(base_url=lab.url, headers={"X-Redmine-API-Key": lab.api_key}, timeout=10)
        backend = build("redmine", lab.backend_config())
        assert isinstance(backend, RedmineBackend)
        backend.find("warm-up")  # resolves statuses, priorities, tracker once, as a running agent has

        def issue_body(fp: str) -> dict[str, object]:
            return {"issue": {"project_id": PROJECT, "subject": f"bench {fp}", "description": "bench",
                              "custom_fields": [{"id": fid, "value": fp}]}}

        def curl(method: str, path: str, body: object) -> bytes:
            r = subprocess.run(["curl", "-s", "-f", "-X", method, "-H", f"@{header}", "--data-binary", "@-",
                                lab.url + path], input=json.dumps(body).encode(), capture_output=True, check=True)
            return r.stdout

        def by_curl(fp: str) -> tuple[float, float]:
            t0 = time.perf_counter()
            issue_id = json.loads(curl("POST", "/issues.json", issue_body(fp)))["issue"]["id"]
            t1 = time.perf_counter()
            curl("PUT", f"/issues/{issue_id}.json", {"issue": {"notes": "seen again"}})
            return t1 - t0, time.perf_counter() - t1

        def by_httpx(fp: str) -> tuple[float, float]:
            t0 = time.perf_counter()
            r = client.post("/issues.json", json=issue_body(fp))
            r.raise_for_status()
            t1 = time.perf_counter()
            client.put(f"/issues/{r.json()['issue']['id']}.json",
                       json={"issue": {"notes": "seen again"}}).raise_for_status()
            return t1 - t0, time.perf_counter() - t1

        def by_backend(fp: str) -> tuple[float, float]:
            draft = TicketDraft(fp, f"bench {fp}", "bench", "web1", "warning")
            t0 = time.perf_counter()
            ref = backend.create(draft)
            t1 = time.perf_counter()
            backend.add_note(ref, "seen again")
            return t1 - t0, time.perf_counter() - t1

        contenders: dict[str, Callable[[str], tuple[float, float]]] = {
            "curl": by_curl, "httpx": by_httpx, "backend": by_backend}
        times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in contenders}
        for name, fn in contenders.items():  # one warm-up each
            fn("warm-" + name + uuid.uuid4().hex[:8])
        for _ in range(args.runs):
            for name, fn in contenders.items():
                c, n = fn(uuid.uuid4().hex[:16])
                times[name][0].append(c)
                times[name][1].append(n)
        client.close()
        backend.shutdown()

    print(f"Redmine 5.0 (Debian, sqlite, webrick) on loopback; {args.runs} rounds, alternating; ms")
    print(f"{'':10} {'create median':>14} {'p95':>7} {'note median':>12} {'p95':>7}")
    med = {}
    for name, (c, n) in times.items():
        med[name] = (statistics.median(c) * 1000, statistics.median(n) * 1000)
        print(f"{name:10} {med[name][0]:14.1f} {p95(c) * 1000:7.1f} {med[name][1]:12.1f} {p95(n) * 1000:7.1f}")
    for ref in ("curl", "httpx"):
        create, note = med["backend"][0] / med[ref][0], med["backend"][1] / med[ref][1]
        print(f"backend / {ref}: create {create:.2f}x, note {note:.2f}x")


if __name__ == "__main__":
    main()
