"""Incidents from real failures in the SSH lab (tests/labs/lab.py): a dead switch, and a full disk vs an unknown fault.

The lab: ``sw1`` is a lab host whose namespace routes for three hosts behind it (``hA``, ``hB``, ``hC``, each on a
veth into sw1's namespace); the inventory says ``parents: [sw1]`` for them. The playbooks run over SSH exactly as
``diag check`` runs them, and each run is observed by the engine (diag/incidents/sources.py).

- Topology: sw1's uplink goes down inside its namespace (no traffic leaves the lab: the root side just loses
  carrier). All four hosts stop answering; the result is ONE incident and ONE ticket, on sw1, with hA, hB, hC
  listed as impact. The link comes back; the re-check confirms it and the ticket is closed.
- Classification: a tmpfs of hA filled to 100% is "disk full", typical, line 1, with the knowledge base's
  instructions on the ticket. A write that fails with ENOSPC on it, seen by a check the knowledge base does not
  know, is atypical, line 2, with ranked hypotheses that say which symptoms matched and which did not.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag import inventory
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.incidents.sources import host_findings, observe_report
from diag.model import Finding
from diag.remote import playbook
from diag.remote.runner import run_check
from diag.remote.ssh import SSHPool
from tests.conftest import wait_for
from tests.labs.lab import LAB_USER, Lab, port_open

pytestmark = pytest.mark.integration

ALIVE = """\
name: alive
description: is the host there (a trivial command over SSH)
applies_to: {device_types: [linux]}
steps:
  - id: uptime
    description: seconds since boot
    run: cat /proc/uptime
"""

SPOOL = """\
name: spool-write
description: can the application write its spool file
applies_to: {device_types: [linux]}
vars:
  path: {default: /tmp, description: spool directory}
steps:
  - id: write
    description: write a small spool file
    run: dd if=/dev/zero of={{ path }}/spool.tmp bs=1k count=64
    checks:
      - check: spool_write_failed
        if: exit != 0
        severity: critical
        subject: "{{ path }}"
        summary: "the application cannot write its spool in {{ path }}: {{ strip(stderr) }}"
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab(1)  # h01 plays the switch
    try:
        lab.start()
        sw = lab.host("h01")
        subprocess.run(["ip", "netns", "exec", sw.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        for name in ("hA", "hB", "hC"):
            h = lab.add_host(name, behind="h01")
            # reach the host through the switch's namespace (not by an SSH jump): a real routed path
            subprocess.run(["ip", "route", "replace", f"{h.address}/32", "via", sw.address], check=True)
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def inv(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> inventory.Inventory:
    d = tmp_path_factory.mktemp("dgi-inc")
    lines = [
        "defaults:",
        f"  user: {LAB_USER}",
        f"  ssh_key: {lab.client_key}",
        "  connect_timeout: 3",
        "  command_timeout: 10",
        "hosts:",
        f"  sw1: {{address: {lab.host('h01').address}}}",
    ]
    lines += [f"  {n}: {{address: {lab.host(n).address}, parents: [sw1]}}" for n in ("hA", "hB", "hC")]
    path = d / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return inventory.load(str(path))


def books(tmp: Path) -> dict[str, playbook.Playbook]:
    (tmp / "alive.yaml").write_text(ALIVE)
    (tmp / "spool-write.yaml").write_text(SPOOL)
    return {
        "alive": playbook.load(tmp / "alive.yaml"),
        "spool": playbook.load(tmp / "spool-write.yaml"),
        "disk": playbook.load(playbook.find("disk-full")),
    }


class Runner:
    """Runs a playbook over SSH on inventory hosts with a fresh pool each time (no connection survives a failure)."""

    def __init__(self, lab: Lab, inv: inventory.Inventory) -> None:
        self.lab, self.inv = lab, inv

    def run(self, names: list[str], pb: playbook.Playbook, variables: dict[str, Any] | None = None) -> Any:
        pool = SSHPool(known_hosts=[self.lab.known_hosts], hosts=self.inv.hosts)
        try:
            return run_check([self.inv.hosts[n] for n in names], pb, pool, variables)
        finally:
            pool.close_all()

    def recheck(self, pb: playbook.Playbook, variables: dict[str, Any] | None = None) -> Any:
        def again(host: str) -> list[Finding]:
            report = self.run([host], pb, variables)
            return [f for r in report.results for f in host_findings(r)]

        return again


def service(tmp: Path, inv: inventory.Inventory) -> IncidentService:
    settings = from_mapping({"open_after": 0, "close_after": 0}, tmp)
    return IncidentService(settings, inv.hosts)


def test_a_dead_switch_is_one_incident_with_the_hosts_behind_it_as_impact(
    lab: Lab, inv: inventory.Inventory, tmp_path: Path
) -> None:
    pbs = books(tmp_path)
    runner = Runner(lab, inv)
    svc = service(tmp_path, inv)
    all4 = ["sw1", "hA", "hB", "hC"]
    sw = lab.host("h01")
    try:
        report = runner.run(all4, pbs["alive"])
        assert [r.status for r in report.results] == ["ok"] * 4
        assert observe_report(svc.engine, report, runner.recheck(pbs["alive"])) == []

        subprocess.run(["ip", "-n", sw.netns, "link", "set", "eth0", "down"], check=True)  # the switch dies
        try:
            report = runner.run(all4, pbs["alive"])
            assert {r.status for r in report.results} <= {"unreachable", "timeout"}
            out = observe_report(svc.engine, report, runner.recheck(pbs["alive"]))
            assert sorted(o.action for o in out) == ["impact", "impact", "impact", "opened"]
            svc.outbox.drain(10)
            (ticket,) = svc.backend.tickets()  # type: ignore[attr-defined]
            assert ticket["host"] == "sw1" and "host_unreachable" in ticket["description"]
            assert "3 host(s) behind sw1 cannot be reached" in ticket["description"]
            assert "hA, hB, hC" in ticket["description"]
            live = {i.host: i for i in svc.store.query()}
            assert live["sw1"].state == "open" and sorted(live["sw1"].doc["impact"]) == ["hA", "hB", "hC"]
            assert {live[h].state for h in ("hA", "hB", "hC")} == {"impact"}
            assert {live[h].parent_id for h in ("hA", "hB", "hC")} == {live["sw1"].id}
            # the next failed cycle adds nothing: still one incident, one ticket
            observe_report(svc.engine, runner.run(all4, pbs["alive"]), runner.recheck(pbs["alive"]))
            assert len(svc.backend.tickets()) == 1  # type: ignore[attr-defined]
        finally:
            subprocess.run(["ip", "-n", sw.netns, "link", "set", "eth0", "up"], check=True)
            subprocess.run(["ip", "-n", sw.netns, "route", "replace", "default", "via", sw.gateway], check=True)
            # neighbour entries that failed during the outage would answer "no route" for a while yet
            subprocess.run(["ip", "neigh", "flush", "dev", sw.veth], check=False)
        for addr in [lab.host(n).address for n in ("h01", "hA", "hB", "hC")]:
            wait_for(lambda a=addr: port_open(a, 22), 30, what=f"{addr} reachable again")

        report = runner.run(all4, pbs["alive"])
        assert [r.status for r in report.results] == ["ok"] * 4
        out = observe_report(svc.engine, report, runner.recheck(pbs["alive"]))
        assert "resolved" in [o.action for o in out]
        svc.outbox.drain(10)
        (ticket,) = svc.backend.tickets()  # type: ignore[attr-defined]
        assert ticket["status"] == "closed"
        close = svc.backend.ticket(ticket["id"])["notes"][-1]  # type: ignore[attr-defined]
        assert close["kind"] == "close" and "re-check (playbook:alive@sw1)" in close["text"]
        assert svc.store.query(("open", "impact", "pending", "clearing")) == []
    finally:
        svc.close()


def test_full_disk_is_typical_and_an_unknown_enospc_fault_is_atypical_with_hypotheses(
    lab: Lab, inv: inventory.Inventory, tmp_path: Path
) -> None:
    pbs = books(tmp_path)
    runner = Runner(lab, inv)
    svc = service(tmp_path, inv)
    try:
        mnt = lab.mount_tmpfs("hA", "2M")
        lab.exec("hA", ["chmod", "1777", str(mnt)])  # the "application" (the login user) may write there
        lab.fill("hA", mnt, 100)
        disk = runner.run(["hA"], pbs["disk"], {"path": str(mnt)})
        assert any(f.check == "disk_full" for r in disk.results for f in r.findings)
        observe_report(svc.engine, disk)
        spool = runner.run(["hA"], pbs["spool"], {"path": str(mnt)})
        assert [f.check for r in spool.results for f in r.findings] == ["spool_write_failed"]
        observe_report(svc.engine, spool)

        by_check = {i.check_id: i for i in svc.store.query()}
        known, unknown = by_check["disk_full"], by_check["spool_write_failed"]
        assert (known.classification, known.line, known.doc["kb"]["id"]) == ("typical", "L1", "disk-full")
        assert (unknown.classification, unknown.line, unknown.doc["kb"]) == ("atypical", "L2", None)
        hyps = unknown.doc["hypotheses"]
        assert [h["kb_id"] for h in hyps[:2]] == ["disk-full", "inodes-exhausted"]
        for rank, h in enumerate(hyps[:2], 1):
            assert h["why"].startswith(f"rank {rank}: 1 of 2 symptoms matched (evidence /")
            assert "not matched: check " in h["why"] and h["score"] == 0.5

        svc.outbox.drain(10)
        tickets = {t["fingerprint"]: t for t in svc.backend.tickets()}  # type: ignore[attr-defined]
        t_known, t_unknown = tickets[known.ticket_key], tickets[unknown.ticket_key]
        assert t_known["line"] == "L1" and "Standard instructions (knowledge base)" in t_known["description"]
        assert "Find what grew" in t_known["description"] and f"{mnt}" in t_known["description"]
        assert t_unknown["line"] == "L2" and "Likely root causes, most likely first" in t_unknown["description"]
        assert "No space left on device" in t_unknown["description"]
        full = svc.backend.ticket(t_known["id"])  # type: ignore[attr-defined]
        assert full["attachments"][0]["filename"] == f"evidence-{known.ticket_key}.json"
    finally:
        svc.close()
