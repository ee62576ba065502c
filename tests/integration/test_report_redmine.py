"""`diag report --role lead` reads who handled each ticket from a real Redmine (tests/labs/redminelab.py).

An incident is opened and delivered to Redmine by the real engine and outbox; an engineer (a Redmine user the test
creates) takes the ticket and writes a note in Redmine, through Redmine's own REST API as that user. The lead's
report then names her with one acknowledged incident; diag's own notes on the ticket never count as a person,
and `--no-tickets` leaves Redmine out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.model import Evidence, Finding
from tests.conftest import json_request
from tests.labs.redminelab import PROJECT, RedmineLab

pytestmark = pytest.mark.integration


def redmine(lab: RedmineLab, method: str, path: str, body: Any = None, as_user: str | None = None) -> tuple[int, Any]:
    headers = {"X-Redmine-API-Key": lab.api_key}
    if as_user:
        headers["X-Redmine-Switch-User"] = as_user  # an admin key may act as another user
    return json_request(method, lab.url + path, body, headers)


def engineer(lab: RedmineLab) -> int:
    """The Redmine user alice, a member of the project (created once per lab)."""
    status, found = redmine(lab, "GET", "/users.json?name=alice")
    assert status == 200, found
    if found["users"]:
        uid = int(found["users"][0]["id"])
    else:
        user = {"login": "alice", "firstname": "Alice", "lastname": "Engineer", "mail": "alice@example.invalid",
                "password": "alice-pass-1234"}  # fmt: skip
        status, made = redmine(lab, "POST", "/users.json", {"user": user})
        assert status == 201, made
        uid = int(made["user"]["id"])
    status, roles = redmine(lab, "GET", "/roles.json")
    role = next(r["id"] for r in roles["roles"] if r["name"] in ("Manager", "Developer"))
    status, _ = redmine(
        lab, "POST", f"/projects/{PROJECT}/memberships.json", {"membership": {"user_id": uid, "role_ids": [role]}}
    )
    assert status in (201, 422)  # 422: already a member
    return uid


def test_lead_report_counts_who_handled_the_ticket_in_redmine(redmine_lab: RedmineLab, tmp_path: Path) -> None:
    data = tmp_path / "data"
    tickets = {"backend": "redmine", **redmine_lab.backend_config()}
    settings = from_mapping({"open_after": 0, "tickets": tickets}, data)
    svc = IncidentService(settings)
    try:
        f = Finding("disk_full", "critical", "/srv is 99% full", "/srv", host="report-redmine-host",
                    evidence=[Evidence("command", "df -Pk /srv", "/dev/sdb1 1000 990 10 99% /srv")])  # fmt: skip
        svc.engine.ingest("probe", [f])
        assert svc.outbox.drain(60)
        (inc,) = svc.store.query()
        assert inc.ticket_backend == "redmine" and inc.ticket_id
        svc.engine.ingest("alertmanager", [f])  # diag's own note on the ticket: not a person handling it
        assert svc.outbox.drain(60)
    finally:
        svc.close()
    uid = engineer(redmine_lab)
    body = {"issue": {"notes": "Looking at it: cleaning /srv/tmp", "assigned_to_id": uid}}
    status, answer = redmine(redmine_lab, "PUT", f"/issues/{inc.ticket_id}.json", body, as_user="alice")
    assert status in (200, 204), answer

    inv = tmp_path / "inventory.yaml"
    incidents = {"open_after": 0, "tickets": tickets}
    inv.write_text(f"hosts: {{}}\nagent:\n  data: {json.dumps(str(data))}\n  incidents: {json.dumps(incidents)}\n")

    def report(*extra: str) -> dict[str, Any]:
        p = subprocess.run(
            [sys.executable, "-m", "diag.cli", "report", "-i", str(inv), "--format", "json", "--days", "1", *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        return dict(json.loads(p.stdout))

    lead = report("--role", "lead")
    by = {e["engineer"]: e for e in lead["engineers"]}
    assert set(by) == {"Alice Engineer"}, by  # diag's API user (admin) wrote notes too: not counted
    assert by["Alice Engineer"]["acknowledged"] == 1
    assert by["Alice Engineer"]["mean_time_to_ack_s"] >= 0
    assert report("--role", "lead", "--no-tickets")["engineers"] == []
    assert "engineers" not in report()  # per-engineer figures are for the lead role only
