"""A network device's page in the console shows the agent's last SNMP poll of it, from a real snmpd.

tests/labs/snmplab.py runs net-snmp's snmpd in a network namespace; the agent's poller (the same class
``diag agent`` runs) polls it with the shipped ``system`` and ``if_mib`` profiles, and the console (its Falcon
app over the agent's Service, in this process) renders ``/ui/hosts/sw1``: the interfaces snmpd reports, counted
up and not up, and every metric family of the poll.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from diag import inventory
from diag.network.snmp.poller import SnmpPoller
from tests.labs.snmplab import COMMUNITY, SnmpLab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[SnmpLab]:
    with SnmpLab(1) as lab:
        yield lab


def test_a_devices_page_shows_its_last_snmp_poll(lab: SnmpLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import falcon.testing

    from diag.api import console
    from diag.api.service import Service
    from diag.api.tokens import TokenStore

    monkeypatch.setenv("DGC_POLL_COMMUNITY", COMMUNITY)
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "defaults:\n"
        "  snmp: {community: 'env:DGC_POLL_COMMUNITY', timeout: 1, retries: 1}\n"
        "hosts:\n"
        f"  sw1: {{address: {lab.address}, device_type: cisco_ios, snmp: {{profiles: [system, if_mib]}}}}\n"
    )
    inv = inventory.load(str(path))
    poller = SnmpPoller(inv)
    results = poller.poll_once()
    assert not results["sw1"].findings, results["sw1"].findings
    token = TokenStore(tmp_path / "data").add("noc", "viewer")
    svc = Service(tmp_path / "data", inv)
    svc.poller = poller
    try:
        c = falcon.testing.TestClient(console.build(svc))
        r = c.simulate_get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
        r = c.simulate_post(
            "/ui/login",
            body=f"csrf={csrf}&token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Cookie": f"diag_login_csrf={r.cookies['diag_login_csrf'].value}"},
        )  # fmt: skip
        assert r.status_code == 303, r.text
        page = c.simulate_get("/ui/hosts/sw1", headers={"Cookie": f"diag_session={r.cookies['diag_session'].value}"})
        assert page.status_code == 200, page.text
        assert "SNMP poll" in page.text and "network device" in page.text
        up = re.search(r"(\d+) interfaces up", page.text)
        assert up is not None and int(up.group(1)) >= 1  # snmpd's namespace has lo and its veth up
        names = {m.name for m in results["sw1"].metrics}
        assert any(n.endswith("if_oper_status") for n in names)
        for n in names:
            assert f"<code>{n}</code>" in page.text
    finally:
        svc.close()
