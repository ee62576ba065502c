"""Bench: from an Alertmanager webhook received to the ticket created in a real Redmine, with a 5-command diagnosis.

Everything real: a lab host with OpenSSH sshd (tests/labs/lab.py), Redmine 5.0 on SQLite (tests/labs/redminelab.py), and
diag's own receiver, incident engine, outbox and Redmine backend, wired as ``diag agent`` wires them, in this
process so that each stage can be timed. Each run posts one webhook (version 4, bearer token) for a new alert on
the lab host; the receiver answers 202, runs bench/fanout-playbook.yaml (the same 5 commands as
bench/ssh_fanout.py) over SSH, hands the finding to the engine, and the outbox creates the Redmine issue
(search by fingerprint, upload of the evidence attachment, create, read back). A run ends when the backend's
``create`` has returned, i.e. Redmine answered 201 and the fingerprint was verified.

In the same run, Redmine's own cost is measured with plain REST calls: ``POST /issues.json`` of an issue of the
same kind, and a note (``PUT``), so the ratio says how much diag adds on top of the ticket system itself. Goal
(issue 4): p95 <= 2 s. Run as root (network namespaces)::

    .venv/bin/python bench/alert_to_ticket.py [--runs 40] [--warmup 3]

Prints everything; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORTS = range(20350, 20360)  # the receiver's HTTP server
REDMINE_PORTS = range(20395, 20400)
PLAYBOOK = ROOT / "bench" / "fanout-playbook.yaml"
TOKEN = "bench-alertmanager-token-0c7d1e"


@dataclass
class Timings:
    post: list[float] = field(default_factory=list)  # webhook POST -> 202
    diagnosis: list[float] = field(default_factory=list)  # playbook run on the host
    to_outbox: list[float] = field(default_factory=list)  # 202 -> the backend's create called
    create: list[float] = field(default_factory=list)  # the backend's create (search + upload + create + check)
    total: list[float] = field(default_factory=list)  # webhook sent -> create returned


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class TimedBackend:
    """Wraps the real Redmine backend and notes when each ``create`` starts and returns (bench instrumentation)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.created: list[tuple[float, float, str]] = []  # (started, returned, ticket id)
        self.cond = threading.Condition()

    def find(self, fingerprint: str) -> Any:
        return self.inner.find(fingerprint)

    def create(self, draft: Any) -> Any:
        t0 = time.perf_counter()
        ref = self.inner.create(draft)
        t1 = time.perf_counter()
        with self.cond:
            self.created.append((t0, t1, str(ref.id)))
            self.cond.notify_all()
        return ref

    def add_note(self, ref: Any, text: str, attachments: Any = ()) -> None:
        self.inner.add_note(ref, text, attachments)

    def close(self, ref: Any, note: str) -> None:
        self.inner.close(ref, note)

    def reopen(self, ref: Any, note: str) -> None:
        self.inner.reopen(ref, note)

    def wait_for(self, n: int, timeout: float = 60.0) -> tuple[float, float, str]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.created) >= n, timeout):
                raise RuntimeError(f"no ticket {n} after {timeout:g} s")
            return self.created[n - 1]


def webhook(address: str, run: int) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    labels = {"alertname": "BenchAlert", "instance": f"{address}:9847", "job": "diag", "run": str(run),
              "severity": "critical"}  # fmt: skip
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": f"bench alert {run}"},
             "startsAt": now, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://127.0.0.1:1/graph",
             "fingerprint": f"bench{run:06d}"}  # fmt: skip
    return json.dumps(
        {"version": "4", "groupKey": f"{{}}:{{run=\"{run}\"}}", "truncatedAlerts": 0, "status": "firing",
         "receiver": "diag", "groupLabels": {"run": str(run)}, "commonLabels": labels, "commonAnnotations": {},
         "externalURL": "http://127.0.0.1:9093", "alerts": [alert]},
    ).encode()  # fmt: skip


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(r.status)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    import diag.exporters.tickets.redmine  # noqa: F401 - registers the backend
    from diag.agent import daemon as agent_mod
    from diag.alertmanager import PATH, mount
    from diag.exporters.tickets.base import BACKENDS
    from diag.httpserver import BoundedServer as Server
    from diag.incidents.service import IncidentService
    from diag.wsgi import App
    from tests.conftest import free_port
    from tests.labs.lab import Lab
    from tests.labs.redminelab import RedmineLab

    with tempfile.TemporaryDirectory(prefix="dgm-bench-") as tmp_s, Lab(1) as lab, RedmineLab(REDMINE_PORTS) as rm:
        tmp = Path(tmp_s)
        (tmp / "token").write_text(TOKEN)
        inv = tmp / "inventory.yaml"
        inv.write_text(
            lab.inventory.read_text()
            + "agent:\n"
            + "  alertmanager:\n"
            + f"    auth: {{bearer_token: 'file:{tmp / 'token'}'}}\n"
            + f"    known_hosts: ['{lab.known_hosts}']\n"
            + f"    playbooks: {{BenchAlert: {{playbook: '{PLAYBOOK}'}}}}\n"
            + "  incidents:\n"
            + "    open_after: 0\n"
            + "    close_after: 0\n"
        )
        cfg, inventory = agent_mod.load_config(str(inv), data=str(tmp / "data"))
        assert inventory is not None
        backend = TimedBackend(BACKENDS.get("redmine")(rm.backend_config()))
        service = IncidentService(cfg.incidents, inventory.hosts, backend=backend)
        service.start()
        app = App()
        receiver = mount(app, cfg, inventory, sink=service.engine)
        assert receiver is not None
        diag_times: list[float] = []
        inner_diagnose = receiver.diagnose

        def timed_diagnose(*a: Any, **kw: Any) -> Any:
            d = inner_diagnose(*a, **kw)
            diag_times.append(d.duration_s)
            return d

        receiver.diagnose = timed_diagnose  # type: ignore[method-assign]
        server = Server(app, "127.0.0.1", free_port(PORTS))
        server.start()
        url = f"http://127.0.0.1:{server.port}{PATH}"
        address = lab.host("h01").address
        t = Timings()
        try:
            for i in range(args.warmup + args.runs):
                body = webhook(address, i)
                t0 = time.perf_counter()
                status = post(url, body)
                t_202 = time.perf_counter()
                if status != 202:
                    raise RuntimeError(f"receiver answered {status}")
                started, returned, _ = backend.wait_for(i + 1)
                if i < args.warmup:
                    continue
                t.post.append(t_202 - t0)
                t.diagnosis.append(diag_times[-1])
                t.to_outbox.append(started - t_202)
                t.create.append(returned - started)
                t.total.append(returned - t0)
            receiver.wait_idle(30)

            # Redmine on its own, same run: create an issue of the same kind, then add a note to it.
            project = rm.facts["project_id"]
            rm_create: list[float] = []
            rm_note: list[float] = []
            description = "x" * 2000
            for i in range(args.warmup + args.runs):
                issue = {"project_id": project, "subject": f"redmine alone {i}", "description": description,
                         "custom_fields": [{"id": rm.fingerprint_field_id, "value": f"alone{i:06d}"}]}  # fmt: skip
                t0 = time.perf_counter()
                status, created = rm.api("POST", "/issues.json", {"issue": issue})
                t1 = time.perf_counter()
                status2, _ = rm.api("PUT", f"/issues/{created['issue']['id']}.json", {"issue": {"notes": "a note"}})
                t2 = time.perf_counter()
                if status != 201 or status2 not in (200, 204):
                    raise RuntimeError(f"Redmine answered {status}/{status2}")
                if i >= args.warmup:
                    rm_create.append(t1 - t0)
                    rm_note.append(t2 - t1)
        finally:
            server.stop()
            receiver.close()
            service.close()

    ms = 1000.0
    print(f"alert -> diagnosis (5 commands over SSH) -> Redmine issue: {args.runs} runs after {args.warmup} warm-up")
    print(f"{'stage':52} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    rows = [
        ("webhook POST -> 202 Accepted", t.post),
        ("diagnosis: 5 commands on the lab host over SSH", t.diagnosis),
        ("202 -> the outbox calls create (diagnosis included)", t.to_outbox),
        ("backend create: search + upload + create + check", t.create),
        ("TOTAL webhook sent -> ticket created in Redmine", t.total),
        ("Redmine alone: POST /issues.json", rm_create),
        ("Redmine alone: PUT a note", rm_note),
    ]
    for name, values in rows:
        print(f"{name:52} {pct(values, 50) * ms:9.1f} {pct(values, 95) * ms:9.1f} {max(values) * ms:9.1f}")
    p95 = pct(t.total, 95)
    print(f"total / Redmine's own create, p50: {pct(t.total, 50) / pct(rm_create, 50):.1f}x; "
          f"p95: {p95 / pct(rm_create, 95):.1f}x")  # fmt: skip
    print(f"goal p95 <= 2000 ms: {p95 * ms:.0f} ms -> {'met' if p95 <= 2.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
