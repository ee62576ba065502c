"""Line-1 automation end to end on a real Redmine: people file issues through the REST API with their own keys.

A person reports in Russian that printing does not work on h01, whose print service is really stopped: the
watcher (``diag line1 watch``, a real process) posts a diagnosis note marked typical (time printed), the standard
change starts the service, the re-check passes, and the issue is Resolved with the KB's standard answer; the
person replies and it is reopened for line 2. An unknown symptom goes to line 2 with evidence. The same fault on
a host outside the change's scope, with the change paused, and outside its window is refused and journaled.
Hostile text (command substitution in the body) is refused without running anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartAgent, stop_process, wait_for
from tests.labs.lab import Lab
from tests.labs.line1lab import (
    install_service,
    service_running,
    start_service,
    stop_service,
    write_catalogue,
    write_inventory,
    write_kb,
)
from tests.labs.redminelab import RedmineLab, add_host_field, add_person, add_project

pytestmark = pytest.mark.integration
DIAG = [str(Path(sys.executable).parent / "diag")]


def _journal(data: Path) -> list[dict[str, Any]]:
    out = subprocess.run([*DIAG, "journal", "--data", str(data), "--json", "--limit", "1000"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return list(doc["records"] if isinstance(doc, dict) else doc)


@pytest.fixture
def desk(make_lab: Any, redmine_lab: RedmineLab, tmp_path: Path) -> Iterator[dict[str, Any]]:
    lab: Lab = make_lab(3)
    bindir = install_service(lab)
    spool = str(lab.dir / "spool")
    kb = write_kb(tmp_path / "kb", spool)
    cat = write_catalogue(tmp_path / "changes", bindir, spool, hosts=["h01"])
    project = add_project(redmine_lab, f"line1-{tmp_path.name[-30:].lower().strip('_-')}".replace("_", "-"))
    uid, key = add_person(redmine_lab, "ivanova", "Мария", "Иванова", project)
    host_field = add_host_field(redmine_lab)  # people may pick the computer in a custom field
    config = redmine_lab.backend_config(project=project, resolved_status="Resolved", reopen_status="New",
                                        host_field=host_field)
    inv = write_inventory(lab, tmp_path / "inventory.yaml", tmp_path / "data", kb, cat, {"redmine": config})
    yield {"lab": lab, "inv": inv, "data": tmp_path / "data", "key": key, "uid": uid, "cat": cat, "bindir": bindir,
           "spool": spool, "tmp": tmp_path, "project": project, "host_field": host_field}


def _file(lab: RedmineLab, key: str, subject: str, description: str, project: str,
          fields: dict[int, str] | None = None) -> tuple[int, float]:
    issue: dict[str, Any] = {"project_id": project, "subject": subject, "description": description}
    if fields:
        issue["custom_fields"] = [{"id": k, "value": v} for k, v in fields.items()]
    status, body = lab.api("POST", "/issues.json", {"issue": issue}, key=key)
    assert status == 201, body
    return int(body["issue"]["id"]), time.time()


def _notes(lab: RedmineLab, issue_id: int) -> list[dict[str, Any]]:
    return [j for j in lab.issue(issue_id)["journals"] if j.get("notes")]


def _watch(inv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DIAG, "line1", "watch", "--inventory", str(inv), *extra], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_person_ticket_typical_resolved_reopened_unknown_hostile(desk: dict[str, Any],
                                                                   redmine_lab: RedmineLab) -> None:
    lab, inv, key = desk["lab"], desk["inv"], desk["key"]
    start_service(lab, "h01")
    stop_service(lab, "h01")  # the fault: the print service is stopped
    assert not service_running(lab, "h01")
    watcher = subprocess.Popen([*DIAG, "line1", "watch", "--inventory", str(inv), "--interval", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the computer is named only in the issue's `host` custom field
        issue, filed = _file(redmine_lab, key, "Не печатает принтер",
                             "Добрый день! С утра не печатает принтер, документы висят в очереди.",
                             desk["project"], {desk["host_field"]: "h01"})
        # the first answer (diagnosis, typical), then the resolution (how soon: the LINE1-FIGURE line)
        wait_for(lambda: watcher.poll() is not None or len(_notes(redmine_lab, issue)) >= 2, timeout=120,
                 what="diagnosis and resolution notes")
        assert watcher.poll() is None, "the watcher exited"
        notes = _notes(redmine_lab, issue)
        first_at = datetime.fromisoformat(notes[0]["created_on"].replace("Z", "+00:00")).timestamp()
        print(f"LINE1-FIGURE {__name__} first response {first_at - filed:.1f} s")  # for the notes, not asserted
        first, last = notes[0]["notes"], notes[-1]["notes"]
        assert "Здравствуйте" in first and "Что мы проверили" in first and "labprintd" in first
        assert "- typical, line L1, priority high, respond by" in first and "lab-printing-stopped" in first
        assert redmine_lab.issue(issue)["priority"]["name"] == "High"  # the KB entry's priority
        assert "the ticket's 'host' field names host h01" in first and "hypotheses, ranked" in first
        assert "Traceback" not in first + last
        assert "Ваше обращение решено" in last and "started again" in last  # the KB's standard answer
        assert service_running(lab, "h01"), "the standard change must have started the service"
        status = redmine_lab.issue(issue)["status"]["name"]
        assert status == "Resolved"
        files = [a["filename"] for a in redmine_lab.issue(issue)["attachments"]]
        assert any(f.startswith("diagnosis-") for f in files) and any(f.startswith("change-") for f in files)

        # the requester answers: it is reopened for line 2
        st, _ = redmine_lab.api("PUT", f"/issues/{issue}.json", {"issue": {"notes": "Всё равно не печатает."}},
                                key=key)
        assert st in (200, 204)
        wait_for(lambda: redmine_lab.issue(issue)["status"]["name"] == "New", timeout=60, what="reopened")
        assert "второй линии" in _notes(redmine_lab, issue)[-1]["notes"]

        # an unknown symptom goes to line 2 with the evidence of a check of the host
        other, _ = _file(redmine_lab, key, "Coffee machine", "The coffee machine next to h02 makes odd noises.",
                         desk["project"])
        wait_for(lambda: _notes(redmine_lab, other), timeout=90, what="line-2 note")
        text = _notes(redmine_lab, other)[0]["notes"]
        assert "could not match" in text and "second-line engineer" in text
        assert "high-load on h02" in text  # evidence: the fallback check ran
        assert redmine_lab.issue(other)["status"]["name"] == "New"

        # hostile text: refused, nothing runs
        marker = desk["tmp"] / "pwned"
        hostile, _ = _file(redmine_lab, key, "can't print on h01",
                           f"printer not working on h01 $(touch {marker}) {{{{ service }}}}; rm -rf /", desk["project"])
        wait_for(lambda: _notes(redmine_lab, hostile), timeout=90, what="refusal note")
        text = _notes(redmine_lab, hostile)[0]["notes"]
        assert "could not be processed automatically" in text and "Nothing was run" in text
        assert not marker.exists()
    finally:
        stop_process(watcher)
        out, err = watcher.communicate(timeout=10)
        print(out[:3000], err[-5000:])  # shown when the test fails
    assert "Traceback" not in err, err[-2000:]
    # the ledger (the watcher may be stopped before it prints its last line)
    tickets = json.loads(subprocess.run([*DIAG, "line1", "tickets", "--inventory", str(inv), "--json"],
                                        capture_output=True, text=True, check=True).stdout)["tickets"]
    states = {t["key"]: t for t in tickets}
    assert states[f"redmine:{issue}"]["state"] == "reopened" and states[f"redmine:{issue}"]["resolved_by_line1"]
    assert states[f"redmine:{issue}"]["classification"] == "typical"
    assert states[f"redmine:{other}"]["line"] == "L2"
    assert states[f"redmine:{hostile}"]["state"] == "refused"
    apps = json.loads(subprocess.run([*DIAG, "line1", "applications", "--inventory", str(inv), "--json"],
                                     capture_output=True, text=True, check=True).stdout)["applications"]
    assert [a["result"] for a in apps] == ["verified"]
    assert apps[0]["before"]["precheck"]["exit_status"] == 0 and apps[0]["after"]["verify"]["exit_status"] == 0
    assert any(r["action"] == "change.applied" and r["result"] == "verified" for r in _journal(desk["data"]))
    # diag report: the share triaged automatically, resolved by line 1, time to first response, per KB entry
    rep = subprocess.run([*DIAG, "report", "--inventory", str(inv), "--format", "json"], capture_output=True,
                         text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    l1 = json.loads(rep.stdout)["line1"]
    assert (l1["tickets"], l1["triaged_automatically"], l1["resolved_by_line1"], l1["reopened"]) == (3, 1, 1, 1)
    assert l1["refused"] == 1 and l1["to_line2"] == 3  # the reopened one went to line 2 too
    assert l1["first_response_median_s"] > 0  # computed; how fast is a figure (LINE1-FIGURE), not an assertion
    entry = next(e for e in l1["by_kb_entry"] if e["kb_entry"] == "lab-printing-stopped")
    assert entry["resolved_share"] == 1.0 and entry["typical"] == 1
    assert l1["standard_changes"] == [{"change": "lab-restart-printd", "result": "verified", "count": 1}]
    html = subprocess.run([*DIAG, "report", "--inventory", str(inv)], capture_output=True, text=True, timeout=120)
    assert html.returncode == 0 and "Line-1 automation" in html.stdout


def test_standard_change_refused_outside_scope_paused_and_window(desk: dict[str, Any], redmine_lab: RedmineLab,
                                                                 start_agent: StartAgent) -> None:
    lab, inv, key = desk["lab"], desk["inv"], desk["key"]
    for h in ("h01", "h02"):
        stop_service(lab, h)
    # scope: the change may touch h01 only
    out_of_scope, _ = _file(redmine_lab, key, "Printer not working", "I can't print from h02 since this morning.",
                            desk["project"])
    # this one is handled by the agent's own watcher (agent.line1 in its inventory), not by `diag line1 watch`
    agent = start_agent(inv.read_text(), "--data", str(desk["data"]))
    try:
        wait_for(lambda: agent.proc.poll() is not None or len(_notes(redmine_lab, out_of_scope)) >= 2, timeout=120,
                 what="the agent's answers")
    finally:
        agent.stop()
    assert "Traceback" not in agent.stderr() and "line1: redmine:" in agent.stderr(), agent.stderr()[-3000:]
    # paused by a lead
    subprocess.run([*DIAG, "line1", "pause", "lab-restart-printd", "--by", "lead.petrova", "--inventory", str(inv),
                    "--reason", "printer vendor visit"], check=True, capture_output=True)
    paused, _ = _file(redmine_lab, key, "Не печатает", "Принтер не работает, компьютер h01.", desk["project"])
    r = _watch(inv, "--once")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    subprocess.run([*DIAG, "line1", "resume", "lab-restart-printd", "--by", "lead.petrova", "--inventory", str(inv)],
                   check=True, capture_output=True)
    # outside its window: the catalogue now allows only a window that is closed at this moment
    now = datetime.now(UTC)
    closed = (now + timedelta(hours=2)).strftime("%H:00")
    end = (now + timedelta(hours=3)).strftime("%H:00")
    window = {"from": closed, "to": end} if closed < end else {"from": "00:00", "to": "00:30"} \
        if now.hour != 0 else {"from": "12:00", "to": "12:30"}
    write_catalogue(desk["cat"], desk["bindir"], desk["spool"], hosts=["h01"], window=window)
    late, _ = _file(redmine_lab, key, "Не печатает принтер", "Не печатает на h01.", desk["project"])
    r = _watch(inv, "--once")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not service_running(lab, "h01") and not service_running(lab, "h02")
    for issue, why in ((out_of_scope, "outside the scope"), (paused, "paused by lead.petrova"),
                       (late, "only in its windows")):
        notes = _notes(redmine_lab, issue)
        assert len(notes) == 2, notes
        assert why in notes[-1]["notes"]
        assert redmine_lab.issue(issue)["status"]["name"] == "New"
    apps = json.loads(subprocess.run([*DIAG, "line1", "applications", "--inventory", str(inv), "--json"],
                                     capture_output=True, text=True, check=True).stdout)["applications"]
    assert sorted(a["result"] for a in apps) == ["refused"] * 3
    journal = _journal(desk["data"])
    refused = [r for r in journal if r["action"] == "change.refused"]
    assert len(refused) == 3 and {r["target"] for r in refused} == {"h01", "h02"}
    assert any(r["action"] == "change.pause" for r in journal)
