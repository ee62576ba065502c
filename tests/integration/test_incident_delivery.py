"""Delivery that loses nothing: SIGKILL a real ``diag incidents deliver`` at every step, and a real Redmine outage.

1. Incidents are committed with their outbox intents by the engine in this process. A separate ``diag`` process
   delivers them to the embedded ticket store with its duplicate guard switched off (``guard_duplicates:
   false``), so only the outbox's search-before-create can keep tickets unique. With failpoints on
   (``DIAG_FAILPOINTS=1``, diag/incidents/failpoints.py) the process stops at each named step of delivery and
   the test SIGKILLs it exactly there: before an open, after the search, after the ticket was created but
   before that was committed, after the commit; the same for notes and the close. It is restarted each time.
   In the end there is exactly one ticket per incident, every incident has its ticket, nothing is pending.
2. The real Redmine of tests/labs/redminelab.py is stopped; incidents keep coming; the outbox backs off; Redmine is
   started again and everything queued is delivered, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from diag.incidents.engine import Verdict
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.model import Evidence, Finding

pytestmark = pytest.mark.integration

TARGETS = [
    "before_open",
    "after_find",
    "after_create",
    "after_commit_open",
    "before_note",
    "after_note",
    "after_commit_note",
    "before_close",
    "after_close",
    "after_commit_close",
]


def finding(host: str, check: str = "disk_full") -> Finding:
    ev = Evidence("command", "df -Pk /", f"/dev/vda1 1000 990 10 99% / on {host}")
    return Finding(check, "critical", f"/ on {host} is 99% full", "/", evidence=[ev], host=host)


def write_inventory(tmp: Path, tickets: dict[str, Any]) -> Path:
    inv = tmp / "inventory.yaml"
    incidents = {"open_after": 0, "close_after": 0, "tickets": tickets, "delivery": {"backoff_initial": 0.05}}
    inv.write_text(f"agent:\n  data: {json.dumps(str(tmp / 'data'))}\n  incidents: {json.dumps(incidents)}\n")
    return inv


def deliver(inv: Path, kill_at: str | None) -> tuple[str | None, list[str]]:
    """Run ``diag incidents deliver``; SIGKILL it at the first failpoint ``kill_at``. Returns (killed at, seen)."""
    env = {**os.environ, "DIAG_FAILPOINTS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "diag.cli", "incidents", "deliver", "--inventory", str(inv), "--timeout", "30"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    seen: list[str] = []
    killed = None
    try:
        for line in proc.stdout:
            if not line.startswith("failpoint "):
                continue
            name = line.split()[1]
            seen.append(name)
            if name == kill_at:
                os.kill(proc.pid, signal.SIGKILL)  # the process stands exactly at this step
                killed = name
                break
            proc.stdin.write("\n")
            proc.stdin.flush()
    finally:
        proc.wait(30)
        proc.stdout.close()
        proc.stdin.close()
        if proc.stderr:
            err = proc.stderr.read()
            proc.stderr.close()
            if killed is None:
                assert proc.returncode == 0, err
    return killed, seen


def test_sigkill_at_every_step_of_delivery_yields_one_ticket_per_incident(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, {"backend": "local", "guard_duplicates": False})
    settings = from_mapping({"open_after": 0, "close_after": 0}, tmp_path / "data")
    settings.tickets = {"backend": "local", "guard_duplicates": False}
    svc = IncidentService(settings)
    hosts = [f"web-{i}" for i in range(6)]
    svc.engine.ingest("trap", [finding(h) for h in hosts])  # 6 incidents, 6 "open" intents
    svc.engine.ingest("trap", [finding("web-0"), finding("web-1")])  # repeats: 2 "note" intents
    fp2 = finding("web-2").fingerprint
    assert svc.engine.resolve("trap", fp2, lambda: Verdict(True, "re-check: 40% full")).action == "resolved"
    assert svc.store.outbox_depth() == {"pending": 9}
    svc.close()  # nothing was delivered by this process

    killed: list[str] = []
    for target in TARGETS:
        at, seen = deliver(inv, target)
        assert at == target, f"failpoint {target} never reached; the run passed {seen}"
        killed.append(at)
        # After every crash: never two tickets for one key.
        svc = IncidentService(settings)
        counts = Counter(t["fingerprint"] for t in svc.backend.tickets())  # type: ignore[attr-defined]
        assert all(n == 1 for n in counts.values()), counts
        svc.close()
    at, _ = deliver(inv, None)  # the last run goes to the end
    assert at is None and killed == TARGETS

    svc = IncidentService(settings)
    try:
        tickets = svc.backend.tickets()  # type: ignore[attr-defined]
        incidents = svc.store.query(None)
        assert sorted(t["host"] for t in tickets) == hosts  # one ticket per incident, none lost
        assert Counter(t["fingerprint"] for t in tickets) == Counter(i.ticket_key for i in incidents)
        by_key = {t["fingerprint"]: t for t in tickets}
        for inc in incidents:
            assert inc.ticket_id == str(by_key[inc.ticket_key]["id"])
        assert svc.store.outbox_depth() == {}
        assert by_key[fp2]["status"] == "closed"
        # The note killed after the store took it and before the commit is sent again: at least once, never lost.
        notes = [
            n
            for t in tickets
            for n in svc.backend.ticket(t["id"])["notes"]  # type: ignore[attr-defined]
            if n["kind"] == "note"
        ]
        assert 2 <= len(notes) <= 3
        events = [e.kind for i in incidents for e in svc.store.events(i.id)]
        assert events.count("ticket") == 6
    finally:
        svc.close()

    # diag incidents list|show --json (the contract in DESIGN.md) on what the killed processes left behind
    def cli(*argv: str) -> Any:
        p = subprocess.run(
            [sys.executable, "-m", "diag.cli", "incidents", *argv, "--inventory", str(inv), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    listed = cli("list")["incidents"]
    assert sorted(i["host"] for i in listed) == [h for h in hosts if h != "web-2"]  # web-2 was resolved
    shown = cli("show", str(listed[0]["id"]))
    assert shown["incident"]["id"] == listed[0]["id"] and shown["ticket"]["fingerprint"] == listed[0]["ticket_key"]
    assert [e["kind"] for e in shown["events"]][:2] == ["registered", "opened"]
    assert all(o["state"] == "done" for o in shown["outbox"])


def test_ticket_system_down_then_up_delivers_everything_queued(tmp_path: Path, redmine_lab: Any) -> None:
    settings = from_mapping(
        {
            "open_after": 0,
            "close_after": 0,
            "tickets": {"backend": "redmine", **redmine_lab.backend_config(timeout=3)},
            "delivery": {"backoff_initial": 0.2, "backoff_max": 1},
        },
        tmp_path,
    )
    svc = IncidentService(settings)
    tag = tmp_path.name[-8:].replace("_", "-")
    try:
        redmine_lab.stop_server()
        try:
            hosts = [f"db{i}-{tag}" for i in range(3)]
            svc.engine.ingest("trap", [finding(h) for h in hosts])
            svc.outbox.run_once()
            assert svc.outbox.failures == 1 and svc.store.outbox_depth() == {"pending": 3}
            time.sleep(0.3)
            svc.outbox.run_once()  # still down: still queued, nothing lost, backoff grows
            assert svc.outbox.failures == 2 and svc.store.outbox_depth() == {"pending": 3}
            svc.engine.ingest("trap", [finding(hosts[0])])  # a repeat while down: a note, queued behind its open
        finally:
            redmine_lab.start_server()
        assert svc.outbox.drain(60), svc.outbox.last_error
        status, body = redmine_lab.api("GET", "/issues.json?status_id=*&sort=id:desc&limit=100")
        assert status == 200
        new = [i for i in body["issues"] if tag in i["subject"]]
        assert sorted(i["subject"].split(": ")[0].split()[-1] for i in new) == sorted(hosts)  # one issue each
        first = next(i for i in new if hosts[0] in i["subject"])
        journals = redmine_lab.issue(first["id"])["journals"]
        assert any("Seen again" in (j.get("notes") or "") for j in journals)
        assert svc.store.outbox_depth() == {}
        text = svc.render().decode()
        assert 'diag_incidents_delivery_failures_total{reason="unavailable"} 2.0' in text
        assert 'diag_incidents_deliveries_total{action="open"} 3.0' in text
    finally:
        svc.close()
