"""A run that could not look never clears an incident: real sshd and snmpd stopped mid-way, then started again.

- SSH (tests/labs/lab.py): a playbook finds a condition on a lab host through the "run a check" use case
  (``diag.services.check.run`` with its findings observer, as ``diag check`` and the API's jobs do). The host's
  sshd is stopped: the run reports the host unreachable (its own incident) and the condition's incident stays
  open, "not checked" in its history, although the condition was fixed meanwhile. sshd back, a run that looks
  no longer finds it; the verifying re-check first meets a stopped sshd again (stopped mid-way, between the run
  and its re-check) and holds it; the next re-check looks and resolves it.
- SNMP (tests/labs/snmplab.py): an interface that is down (oper down, admin up) is an incident. snmpd stopped
  (refused) or frozen (the poll times out): the poll has no interface rows, which used to read as "no interface
  is down" and resolved it at once (close_after 0). Now it stays open, one "not checked" line per reason. snmpd
  back and the interface up: the poll and its re-poll confirm, and it resolves.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag import config, inventory
from diag.agent.incidents import AgentFeed
from diag.agent.network import NetworkParts
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.incidents.sources import observe_report, recheck_findings
from diag.model import Finding, RunReport
from diag.network.snmp.poller import SnmpPoller
from diag.probes.runner import ProbeRunner
from diag.remote import playbook
from diag.services import check as svc_check
from diag.services.backends import LocalBackend, ssh_pool
from diag.wsgi import App
from tests.conftest import wait_for
from tests.labs.lab import LAB_USER, Lab
from tests.labs.snmplab import COMMUNITY, SnmpLab

pytestmark = pytest.mark.integration

FLAG = """\
name: service-flag
description: the service writes 'broken' to its state file when it fails
applies_to: {device_types: [linux]}
vars:
  path: {description: the state file}
steps:
  - id: state
    description: read the state file
    run: cat {{ path }}
    checks:
      - check: service_broken
        if: strip(stdout) == 'broken'
        severity: critical
        subject: "{{ path }}"
        summary: "the service reports itself broken in {{ path }}"
"""


def kinds(svc: IncidentService, inc_id: int) -> list[str]:
    return [e.kind for e in svc.store.events(inc_id)]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(1) as lab:
        yield lab


def test_a_stopped_sshd_never_resolves_an_incident_and_a_run_that_looks_does(lab: Lab, tmp_path: Path) -> None:
    h = lab.host("h01")
    state = h.dir / "state"
    state.write_text("broken\n")
    state.chmod(0o644)
    (tmp_path / "flag.yaml").write_text(FLAG)
    pb = playbook.load(tmp_path / "flag.yaml")
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(
        f"defaults: {{user: {LAB_USER}, ssh_key: {lab.client_key}, connect_timeout: 3, command_timeout: 10}}\n"
        f"hosts:\n  web1: {{address: {h.address}}}\n"
    )
    inv = inventory.load(str(inv_path))
    host = inv.hosts["web1"]
    variables = {"path": str(state)}
    svc = IncidentService(from_mapping({"open_after": 0, "close_after": 0}, tmp_path / "data"), inv.hosts)
    stop_before_recheck = {"once": False}

    def check() -> RunReport:
        backend = LocalBackend.over(ssh_pool(tmp_path / "data", inv.hosts, [lab.known_hosts], 1), [host])
        try:
            return svc_check.run(svc_check.CheckRequest(pb, [host], variables, actor="test"), backend)
        finally:
            backend.close()

    def recheck(name: str) -> list[Finding]:
        if stop_before_recheck["once"]:  # sshd stops between the run and its verifying re-check
            stop_before_recheck["once"] = False
            lab.stop_sshd("h01")
        return recheck_findings(check().results[0])

    def feed(report: RunReport, actor: str, vs: dict[str, Any]) -> None:
        observe_report(svc.engine, report, recheck, source="test", variables=vs)

    def run_observed() -> RunReport:
        backend = LocalBackend.over(ssh_pool(tmp_path / "data", inv.hosts, [lab.known_hosts], 1), [host])
        try:
            req = svc_check.CheckRequest(pb, [host], variables, actor="test")
            return svc_check.run(req, backend, [svc_check.FindingsObserver(feed)])
        finally:
            backend.close()

    try:
        assert run_observed().results[0].status == "findings"
        (inc,) = svc.store.query()
        assert (inc.check_id, inc.state) == ("service_broken", "open")

        lab.stop_sshd("h01")
        state.write_text("ok\n")  # fixed while nobody could look: diag must not claim it saw that
        for _ in range(2):
            assert run_observed().results[0].status == "unreachable"
            assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        held = [e.text for e in svc.store.events(inc.id) if e.kind == "not_checked"]
        assert len(held) == 1 and held[0].startswith("not checked: web1 was not checked (unreachable: ")
        (down,) = [i for i in svc.store.query() if i.check_id == "host_unreachable"]
        assert down.state == "open"

        lab.start_sshd("h01")
        stop_before_recheck["once"] = True
        run_observed()  # looks, does not find it: clearing; its re-check meets a stopped sshd: held
        assert svc.store.get(inc.id).state == "clearing"  # type: ignore[union-attr]
        assert "resolved" not in kinds(svc, inc.id)
        assert any("could not run" in e.text for e in svc.store.events(inc.id) if e.kind == "not_checked")

        lab.start_sshd("h01")
        svc.engine.tick()  # the clock re-checks a clearing incident (the re-check can look now): resolved
        assert svc.store.get(inc.id).state == "resolved"  # type: ignore[union-attr]
        assert svc.store.get(down.id).state == "resolved"  # type: ignore[union-attr]
    finally:
        svc.close()


@pytest.fixture
def snmp_lab() -> Iterator[SnmpLab]:
    with SnmpLab(12) as lab:  # p9 stays admin down, so its peer p8 is oper down
        yield lab


def test_a_stopped_snmpd_never_resolves_an_interface_incident(
    snmp_lab: SnmpLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGG_POLL_COMMUNITY", COMMUNITY)
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "defaults:\n"
        "  snmp: {community: 'env:DGG_POLL_COMMUNITY', timeout: 0.3, retries: 0}\n"
        "hosts:\n"
        f"  sw1: {{address: {snmp_lab.address}, snmp: {{profiles: [if_mib]}}}}\n"
    )
    inv = inventory.load(str(path))
    poller = SnmpPoller(inv)
    svc = IncidentService(from_mapping({"open_after": 0, "close_after": 0}, tmp_path / "data"), inv.hosts)
    runner = ProbeRunner(config.build(None, {}), only=[])
    AgentFeed(svc, runner, poller)
    parts = NetworkParts(config.build(None, {}), inv, runner, App())
    link_up = Finding("snmp_link_up", "info", "linkUp p8", "p8", host="sw1")
    try:
        poller.poll_once()
        (inc,) = [i for i in svc.store.query() if i.check_id == "snmp_interface_down"]
        assert inc.subject == "p8" and inc.state == "open"

        snmp_lab.stop_snmpd()  # refused (ICMP port unreachable): snmp_poll_failed, the profile not looked at
        poller.poll_once()
        poller.poll_once()
        assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        snmp_lab.start_snmpd()
        snmp_lab.freeze()  # a hung device: the poll times out (snmp_not_answering), nothing further looked at
        try:
            poller.poll_once()
            poller.poll_once()
            # a linkUp trap's re-check polls the device too: a poll that timed out is not "the interface is up"
            verdict = parts.recheck_link(link_up)
            assert not verdict.cleared and "p8 not checked: SNMP: " in verdict.note, verdict.note
        finally:
            snmp_lab.thaw()
        assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        held = [e.text for e in svc.store.events(inc.id) if e.kind == "not_checked"]
        assert len(held) == 2 and "SNMP profile if_mib: " in held[0] and "SNMP: " in held[1], held
        failed = [i for i in svc.store.query() if i.check_id in ("snmp_poll_failed", "snmp_not_answering")]
        assert len(failed) == 2

        poller.poll_once()  # answers again, p8 still down: the incident stays open, the device's failures resolve
        assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        assert [svc.store.get(i.id).state for i in failed] == ["resolved", "resolved"]  # type: ignore[union-attr]

        subprocess.run(["ip", "-n", snmp_lab.netns, "link", "set", "p9", "up"], check=True)

        def resolved() -> bool:  # snmpd caches its ifTable for a few seconds: poll until it shows p8 up
            poller.poll_once()  # looked at, p8 up, and the re-poll agrees
            return svc.store.get(inc.id).state == "resolved"  # type: ignore[union-attr]

        wait_for(resolved, timeout=60, interval=0.5, what="p8 up and its incident resolved")
        assert parts.recheck_link(link_up).cleared  # answering, p8 up: the linkUp is confirmed
        assert "not_checked" not in kinds(svc, inc.id)[-2:]
    finally:
        svc.close()
