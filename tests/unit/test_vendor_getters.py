"""Every vendor driver's getters on its recorded outputs (tests/fixtures/devices/<platform>/, from the fakenos
emulator's recordings of real devices and from diag's own samples in the platform's format): each parses, and
the records carry the fields the playbooks check."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.network.devices import driver_class
from tests.labs.fakenoslab import slug

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "devices"
PLATFORMS = ("cisco_ios", "cisco_nxos", "cisco_xr", "juniper_junos", "arista_eos", "huawei_vrp",
             "mikrotik_routeros", "hp_comware", "eltex")  # fmt: skip


def outputs(platform: str, commands: tuple[str, ...]) -> dict[str, str]:
    return {c: (FIXTURES / platform / slug(c)).read_text() if (FIXTURES / platform / slug(c)).exists() else ""
            for c in commands}  # fmt: skip


@pytest.mark.parametrize("platform", PLATFORMS)
def test_getters_parse_recorded_outputs(platform: str) -> None:
    cls = driver_class(platform)
    got = {name: g.parse(outputs(platform, g.commands)) for name, g in cls.getters.items()}
    ifs = got["interfaces"]
    assert ifs and all({"admin_up", "oper_up", "errors", "duplex", "flaps"} <= set(r) for r in ifs.values())
    assert any(r["oper_up"] for r in ifs.values())
    assert got["bgp"] and all(isinstance(r["established"], bool) for r in got["bgp"])
    assert got["ospf"] and all(r["state"] in ("Full", "2-Way", "Init", "ExStart", "Exchange", "Loading", "Down")
                               for r in got["ospf"])  # fmt: skip
    assert got["routes"] and all("/" in r["prefix"] for r in got["routes"])
    assert got["neighbors"] and all(r["neighbor"] for r in got["neighbors"])
    assert got["health"]["cpu_percent"] is not None
    assert got["logs"] and all(r["severity"] is None or 0 <= r["severity"] <= 7 for r in got["logs"])


def test_a_fault_in_the_output_changes_the_record() -> None:
    eltex = driver_class("eltex")
    text = (FIXTURES / "eltex" / "show_ip_bgp_summary.txt").read_text()
    [up] = eltex.getters["bgp"].parse({"show ip bgp summary": text})
    [down] = eltex.getters["bgp"].parse({"show ip bgp summary": text.replace("3w1d            6", "3w1d       Active")})
    assert up["established"] and (down["state"], down["established"]) == ("Active", False)
    ios = driver_class("cisco_ios")
    routes = (FIXTURES / "cisco_ios" / "show_ip_route.txt").read_text()
    got = ios.getters["routes"].parse({"show ip route": routes.replace("S*    0.0.0.0/0 [1/0] via 10.0.1.1\n", "")})
    assert "0.0.0.0/0" not in {r["prefix"] for r in got}
