"""The agent's SNMP polls feed the incident engine: a real snmpd that hangs is one incident, and its recovery closes it.

tests/labs/snmplab.py's snmpd is frozen with SIGSTOP (it keeps its socket and answers nothing, like a hung device): the
poller's ``snmp_not_answering`` finding opens an incident through :class:`diag.agent.incidents.AgentFeed`, the
same wiring ``diag agent`` uses. Thawed, the next poll no longer finds it, the re-check (a poll of that device
again) confirms it, and the ticket is closed. A poll cycle that still fails adds an occurrence, not a ticket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from diag import config, inventory
from diag.agent.incidents import AgentFeed
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.network.snmp.poller import SnmpPoller
from diag.probes.runner import ProbeRunner
from tests.labs.snmplab import COMMUNITY, SnmpLab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[SnmpLab]:
    with SnmpLab(2) as lab:
        yield lab


def test_a_hung_snmp_device_is_one_incident_until_a_poll_confirms_it_answers(
    lab: SnmpLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGI_POLL_COMMUNITY", COMMUNITY)
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "defaults:\n"
        "  snmp: {community: 'env:DGI_POLL_COMMUNITY', timeout: 0.3, retries: 0}\n"
        "hosts:\n"
        f"  sw1: {{address: {lab.address}, snmp: {{profiles: [system]}}}}\n"
    )
    inv = inventory.load(str(path))
    poller = SnmpPoller(inv)
    svc = IncidentService(from_mapping({"open_after": 0, "close_after": 0}, tmp_path), inv.hosts)
    AgentFeed(svc, ProbeRunner(config.build(None, {}), only=[]), poller)
    try:
        poller.poll_once()
        assert svc.store.query() == []

        lab.freeze()
        try:
            poller.poll_once()
            poller.poll_once()
        finally:
            lab.thaw()
        (inc,) = svc.store.query()
        assert (inc.host, inc.check_id, inc.state, inc.occurrences) == ("sw1", "snmp_not_answering", "open", 2)
        assert inc.doc["kb"]["id"] == "snmp-device-silent" and inc.line == "L2"
        svc.outbox.drain(10)
        (t,) = svc.backend.tickets()  # type: ignore[attr-defined]
        assert t["host"] == "sw1" and t["status"] == "open"

        poller.poll_once()  # answers again: gone, re-checked with another poll, resolved
        inc = svc.store.get(inc.id)  # type: ignore[assignment]
        assert inc is not None and inc.state == "resolved"
        svc.outbox.drain(10)
        (t,) = svc.backend.tickets()  # type: ignore[attr-defined]
        assert t["status"] == "closed"
        note = svc.backend.ticket(t["id"])["notes"][-1]["text"]  # type: ignore[attr-defined]
        assert "the re-check (snmp:sw1)" in note
    finally:
        svc.close()
