"""Standard changes on a real SSH lab host: a failed verification rolls back, a pre-check that finds nothing to do
changes nothing, and every command the change sent is in the event journal with who asked for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from diag import inventory
from diag.journal import open_journal
from diag.line1.catalogue import Catalogue
from diag.line1.ledger import Ledger
from diag.services.backends import LocalBackend, ssh_pool
from diag.services.standard_change import StandardChanges
from tests.labs.lab import Lab
from tests.labs.line1lab import PORT, SERVICE, install_service, service_running, start_service, stop_service

pytestmark = pytest.mark.integration


def _catalogue(path: Path, bindir: Path, verify_port: int) -> Catalogue:
    listening = "ss -Hltn sport = :{{ port }} | grep -q ."
    start = f"exec {bindir}/{SERVICE} -m http.server {PORT} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null"
    change = {
        "id": "lab-start", "title": "start the lab service", "description": "starts it; stops it again on failure",
        "hosts": ["h01"], "params": {"port": {"allowed": [PORT]}},
        "precheck": {"run": f"! {listening}"},
        "action": {"run": f"setsid -f sh -c '{start}'; sleep 1"},
        # the verification looks at another port on purpose in the failing case
        "verify": {"run": f"for i in 1 2 3 4 5 6; do ss -Hltn sport = :{verify_port} | grep -q . && exit 0; "
                          "sleep 0.5; done; exit 1"},
        "rollback": {"run": "for p in $(ss -Hltnp sport = :{{ port }} | grep -o 'pid=[0-9]*' | cut -d= -f2); "
                            "do kill $p; done; true"},
        "windows": [{"from": "00:00", "to": "24:00"}], "rate_limit": {"max": 5, "per": "1h"},
    }
    path.write_text(yaml.safe_dump({"changes": [change]}))
    return Catalogue.load([path], shipped=False)


def test_failed_verification_rolls_back_and_precheck_guards(make_lab: Any, tmp_path: Path) -> None:
    lab: Lab = make_lab(1)
    bindir = install_service(lab)
    inv = inventory.load(str(lab.inventory))
    host = inv.hosts["h01"]
    backend = LocalBackend.over(ssh_pool(tmp_path, inv.hosts, [lab.known_hosts]), inv.hosts.values())
    ledger = Ledger(tmp_path)
    try:
        bad = StandardChanges(_catalogue(tmp_path / "bad.yaml", bindir, PORT + 1), ledger, backend, tmp_path)
        app = bad.apply("lab-start", host, {"port": PORT}, kb_entry="lab-printing-stopped", ticket_key="rt:1")
        assert app.result == "rolled_back", app
        assert "verifying check failed" in app.reason and "rolled back" in app.reason
        assert app.after["action"]["exit_status"] == 0 and app.after["verify"]["exit_status"] == 1
        assert app.after["rollback"]["exit_status"] == 0
        assert not service_running(lab, "h01"), "the rollback must have stopped what the action started"

        # the condition is not there (the service runs): the pre-check stops the change, nothing runs
        start_service(lab, "h01")
        good = StandardChanges(_catalogue(tmp_path / "good.yaml", bindir, PORT), ledger, backend, tmp_path)
        app = good.apply("lab-start", host, {"port": PORT}, kb_entry="lab-printing-stopped")
        assert app.result == "precheck_failed" and "nothing was changed" in app.reason and not app.after
        stop_service(lab, "h01")
        assert good.apply("lab-start", host, {"port": PORT}).result == "verified"
        assert service_running(lab, "h01")
    finally:
        backend.close()
        stop_service(lab, "h01")
    recs = open_journal(tmp_path).query(limit=1000)
    sent = [r for r in recs if r.actor == "line1:lab-printing-stopped/lab-start" and r.action == "command.sent"]
    steps = [r.details.get("step") for r in sent]
    assert {"precheck", "action", "verify", "rollback"} <= set(steps), steps
    results = [r.result for r in recs if r.action == "change.applied"]
    assert results == ["rolled_back", "verified"]
    assert [r.result for r in recs if r.action == "change.refused"] == ["precheck_failed"]
    assert [a["result"] for a in ledger.applications()] == ["verified", "precheck_failed", "rolled_back"]
