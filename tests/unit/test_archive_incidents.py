"""A configuration change shortly before a fault, through the real incident engine: the archive's provider ranks it
first among the hypotheses, with the masked diff as its evidence, in the incident and in the ticket text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag.archive import hypotheses
from diag.archive.store import RUNNING_CONFIG, Archive
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.model import Evidence, Finding

T = 1_800_000_000.0
V1 = "hostname sw-1\npassword <masked:0a1b2c3d>\ninterface eth1\n description uplink\ninterface eth2\n"
V2 = "hostname sw-1\npassword <masked:0a1b2c3d>\ninterface eth1\n description uplink\n shutdown\ninterface eth2\n"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[IncidentService]:
    archive = Archive(tmp_path / "archive")
    archive.put("sw-1", RUNNING_CONFIG, V1, at=T - 7200)
    archive.put("sw-1", RUNNING_CONFIG, V1, at=T - 900)  # still unchanged 15 min before the fault
    archive.put("sw-1", RUNNING_CONFIG, V2, at=T - 300)  # the fetch 5 min before it saw the shutdown
    archive.put("web-1", "/etc/fstab", "a\n", at=T - 90000)
    archive.put("web-1", "/etc/fstab", "b\n", at=T - 86400)  # a day old: outside the window
    hypotheses.register(tmp_path / "archive", 3600)
    s = IncidentService(from_mapping({"open_after": 0}, tmp_path / "incidents"), None, clock=lambda: T)
    try:
        yield s
    finally:
        s.close()
        hypotheses.PROVIDER.root = None  # the registry is global; leave the provider with nothing to say


def finding(host: str, subject: str, check: str = "interface_down") -> Finding:
    ev = Evidence("metric", "ifOperStatus", f"{subject}: down")
    return Finding(check, "critical", f"{subject} is down", subject, evidence=[ev], host=host, observed_at=T)


def test_a_change_before_the_fault_ranks_first_with_its_diff(svc: IncidentService) -> None:
    svc.engine.ingest("snmp", [finding("sw-1", "eth1")])
    (inc,) = svc.store.query()
    hyps: list[dict[str, Any]] = inc.doc["hypotheses"]
    top = hyps[0]
    assert top["source"] == "config_archive" and top["cause"] == "config_change"
    assert top["score"] == pytest.approx(0.95)  # noticed before the fault, and the diff names eth1
    assert "noticed 5 min before the fault" in top["why"] and "mentions eth1" in top["why"]
    (ev,) = top["evidence"]
    assert ev["title"] == "configuration diff sw-1:running-config v1 -> v2"
    assert "+ shutdown" in ev["text"] and ev["data"]["before_fault"] is True
    assert ev["data"]["previous_at"] == T - 900 and ev["data"]["noticed_at"] == T - 300
    svc.outbox.drain(5)
    (ticket,) = svc.backend.tickets()  # type: ignore[attr-defined]
    assert "Configuration change on sw-1 (running-config, v1 -> v2)" in ticket["description"]
    assert "+ shutdown" in ticket["description"]


def test_no_change_in_the_window_no_hypothesis(svc: IncidentService) -> None:
    svc.engine.ingest("probe", [finding("web-1", "/data", "disk_full"), finding("db-9", "eth0")])
    for inc in svc.store.query():
        assert all(h["source"] != "config_archive" for h in inc.doc["hypotheses"]), inc.host


def test_mentions_finds_the_section_of_a_changed_line() -> None:
    diff = "--- a\n+++ b\n@@ -1,4 +1,5 @@\n interface eth1\n  description x\n+ shutdown\n interface eth10\n"
    assert hypotheses.mentions(diff, "eth1")
    assert not hypotheses.mentions(diff, "eth10") and not hypotheses.mentions(diff, "eth")
    assert hypotheses.mentions("@@ -1 +1 @@\n-/dev/sdb1 /data ext4\n+/dev/sdc1 /data ext4\n", "/data")


def test_the_agent_registers_the_provider_and_stays_light(tmp_path: Path) -> None:
    """With agent.incidents and agent.archive, the agent points the provider at DATA/archive with the configured
    window, and imports neither paramiko nor rich for it (fetches run in a child process)."""
    import json
    import subprocess
    import sys

    from tests.conftest import free_port

    inv = tmp_path / "inventory.yaml"
    inv.write_text("hosts: {}\nagent:\n  incidents: {}\n  archive: {change_window: 900}\n")
    port = free_port(range(20230, 20240))
    code = (
        "import json, sys\n"
        "from diag.agent import daemon as agent\n"
        "from diag.archive import hypotheses\n"
        "from diag.incidents.knowledge import PROVIDERS\n"
        f"a = agent.load({str(inv)!r}, '127.0.0.1:{port}', {str(tmp_path / 'd')!r})\n"
        "a.server.stop()\n"
        "print(json.dumps([PROVIDERS.get('config_archive') is hypotheses.PROVIDER, str(hypotheses.PROVIDER.root),\n"
        "                  hypotheses.PROVIDER.window, a.archive_schedule is not None, sorted(sys.modules)]))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    same, root, window, scheduled, modules = json.loads(p.stdout.splitlines()[-1])
    assert same and root == str(tmp_path / "d" / "archive") and window == 900 and scheduled
    assert not {m.split(".")[0] for m in modules} & {"paramiko", "rich", "netmiko"}
