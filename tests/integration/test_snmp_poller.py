"""Scheduled polling of inventory devices against a real snmpd, with one device that never answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from diag import inventory
from diag.agent.snmp_route import register_routes
from diag.exporters.exposition import encode_metrics
from diag.network.snmp.poller import SnmpPoller
from diag.wsgi import App
from tests.labs.snmplab import COMMUNITY, SnmpLab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[SnmpLab]:
    with SnmpLab(20) as lab:
        yield lab


def test_poll_inventory_devices(lab: SnmpLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGN_POLL_COMMUNITY", COMMUNITY)
    dead = f"10.232.{lab.lab_id}.9"  # in the lab's subnet, nobody there: no answer
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "defaults:\n"
        "  snmp: {community: 'env:DGN_POLL_COMMUNITY', timeout: 0.3, retries: 0}\n"
        "hosts:\n"
        f"  sw1: {{address: {lab.address}, snmp: {{profiles: [system, if_mib]}}}}\n"
        f"  sw2: {{address: {dead}, snmp: {{profiles: [system]}}}}\n"
        f"  sw3: {{address: {lab.address}, snmp: {{profiles: [nope]}}}}\n"
        "  server1: {address: 10.232.0.77}\n"
    )
    poller = SnmpPoller(inventory.load(str(path)))
    assert [h.name for h in poller.hosts] == ["sw1", "sw2", "sw3"]  # server1 has no SNMP profiles
    results = poller.poll_once()
    assert set(results) == {"sw1", "sw2", "sw3"}
    assert [f.check for f in results["sw2"].findings] == ["snmp_not_answering"]
    assert [(f.check, f.host) for f in results["sw3"].findings] == [("snmp_poll_failed", "sw3")]
    assert "unknown SNMP profile 'nope'" in results["sw3"].findings[0].summary
    text = encode_metrics(poller.metrics()).decode()
    assert re.search(r'^diag_snmp_up\{profile="system",target="sw1"\} 1\.0$', text, re.M)
    assert re.search(r'^diag_snmp_up\{profile="system",target="sw2"\} 0\.0$', text, re.M)
    rows = re.findall(r'^diag_snmp_if_hc_in_octets_total\{[^}]*target="sw1"\}', text, re.M)
    assert len(rows) == 20
    # the same text on the agent's route
    app = App()
    register_routes(app, None, poller=poller)
    body = b"".join(app({"PATH_INFO": "/snmp/inventory", "REQUEST_METHOD": "GET"}, lambda *a: None))
    assert b'target="sw1"' in body
    # started and stopped as a thread: a second cycle keeps the state (no reboot found)
    poller.interval = 0.2
    poller.start()
    poller.stop()
    assert not [f for f in poller.findings() if f.check == "snmp_device_rebooted"]
