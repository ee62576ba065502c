"""Network-device drivers and playbooks without a network: FRR outputs recorded from tests/labs/frrlab.py.

The recorded outputs (tests/fixtures/devices/frr/) are replayed through tests/unit/fake_ssh.py's FakeConnection (a
fake, named so); the real FRR is exercised by tests/integration/test_frr_devices.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diag import yamlsrc
from diag.errors import ConfigError, RegistryError
from diag.inventory import Host
from diag.model import HostResult
from diag.network.devices import device_types, driver_class, getters, is_device
from diag.network.devices.base import where_device
from diag.network.devices.frr import FrrVtysh
from diag.network.devices.pool import DeviceConnection, cli_quote
from diag.remote import parsers
from diag.remote import playbook as pbmod
from diag.remote.runner import run_check
from tests.unit.fake_ssh import SHIPPED, FakeConnection, FakePool, result

FRR = Path(__file__).resolve().parent.parent / "fixtures" / "devices" / "frr"
TEMPLATES = Path(getters.__file__).parent / "templates"


def fixture(name: str) -> str:
    return (FRR / name).read_text()


def parse(template: str, name: str) -> list[dict[str, object]]:
    out = parsers.prepare(parsers.TextfsmParse(template=template.replace("-", "_")), TEMPLATES)(fixture(name))
    assert isinstance(out, list)
    return out


def router(**kw: object) -> Host:
    return Host(name="r1", address="192.0.2.1", device_type="frr", **kw)  # type: ignore[arg-type]


class QuotingFake(FakeConnection):
    """A FakeConnection that, like DeviceConnection, validates values for a CLI instead of shell-quoting them."""

    quote_value = staticmethod(DeviceConnection.quote_value)

    def get(self, name: str, timeout: float | None = None) -> getters.GetResult:
        """The FRR driver's getters over the recorded outputs (what Driver.get does over a live session)."""
        return getters.collect("r1", "frr", FrrVtysh.getters, name, self.run, timeout)


def run(playbook: str, outputs: dict[str, str], variables: dict[str, str] | None = None) -> HostResult:
    pb = pbmod.load(SHIPPED / f"{playbook}.yaml")
    conn = QuotingFake({cmd: result(cmd, fixture(f)) if f else result(cmd, "", 1, "") for cmd, f in outputs.items()})
    report = run_check([router()], pb, FakePool({"r1": conn}), variables or {})
    return report.results[0]


def test_registry_finds_frr_and_explains_unknown_types() -> None:
    assert "frr" in device_types()
    assert driver_class("frr") is FrrVtysh
    with pytest.raises(RegistryError, match="did you mean 'frr'"):
        driver_class("ffr")
    assert is_device(router()) and not is_device(Host(name="web", address="192.0.2.2"))
    assert where_device(router()) == "192.0.2.1:22 (r1, frr)"
    assert where_device(Host(name="2001:db8::1", address="2001:db8::1", port=2222, device_type="frr")) == (
        "[2001:db8::1]:2222 (frr)"
    )


def test_frr_quirks_config_preamble_and_errors() -> None:
    drv = FrrVtysh.__new__(FrrVtysh)  # the hooks need no session
    drv._error_rx = re.compile(FrrVtysh.error_pattern, re.M)
    raw = "Building configuration...\n\nCurrent configuration:\n!\nfrr version 8.4.4\nhostname r1\n!\nend\n"
    assert drv.clean_config(raw) == "!\nfrr version 8.4.4\nhostname r1\n!\nend\n"
    assert drv.command_error("% Unknown command: show foo") == "% Unknown command: show foo"
    assert drv.command_error("% Command incomplete: show ip") == "% Command incomplete: show ip"
    assert drv.command_error("ospfd is not running") == "ospfd is not running"
    assert drv.command_error(fixture("show_ip_route.txt")) is None
    assert drv.command_error(fixture("show_interface_down.txt")) is None


def test_cli_values_are_validated_not_quoted() -> None:
    assert cli_quote("GigabitEthernet0/1.100") == "GigabitEthernet0/1.100"
    assert cli_quote("2001:db8::/32") == "2001:db8::/32"
    assert cli_quote(["eth1", "eth2"]) == "eth1 eth2"
    assert cli_quote(65001) == "65001"
    for bad in ("eth0\nconfigure terminal", "eth0 | include up", "eth0;reload", "?", "", "a b", "x\x1b"):
        with pytest.raises(ConfigError, match="cannot be sent to a network device CLI"):
            cli_quote(bad)


def test_templates_parse_recorded_frr_outputs() -> None:
    ifs = {r["interface"]: r for r in parse("frr-show-interface.textfsm", "show_interface_down.txt")}
    assert (ifs["eth1"]["admin_state"], ifs["eth1"]["link_state"]) == ("up", "down")
    assert (ifs["eth2"]["admin_state"], ifs["eth2"]["link_state"]) == ("down", "")
    assert ifs["eth2"]["link_downs"] == "1" and ifs["eth0"]["ipv4"] == ["10.239.0.2/30"]
    routes = parse("frr-show-ip-route.textfsm", "show_ip_route.txt")
    selected = {r["prefix"]: r["protocol"] for r in routes if r["selected"] == ">"}
    assert selected == {
        "10.239.0.0/30": "C",
        "10.239.1.0/30": "C",
        "10.239.2.0/30": "C",
        "10.239.255.2/32": "O",
        "198.51.100.0/24": "S",
        "203.0.113.0/24": "B",
    }
    assert len(routes) == 7  # the OSPF route to the connected 10.239.1.0/30 is there, not selected
    [down] = parse("frr-show-bgp-summary.textfsm", "show_bgp_summary_down.txt")
    assert (down["neighbor"], down["state_pfxrcd"], down["afi"], down["vrf"]) == (
        "10.239.1.2",
        "Active",
        "IPv4 Unicast",
        "default",
    )
    [nbr] = parse("frr-show-ip-ospf-neighbor.textfsm", "show_ip_ospf_neighbor.txt")
    assert (nbr["neighbor_id"], nbr["state"], nbr["role"], nbr["interface"]) == ("10.239.255.2", "Full", "-", "eth1")


def test_interfaces_playbook_on_recorded_outputs() -> None:
    assert run("network-interfaces", {"show interface": "show_interface.txt"}).findings == []
    r = run("network-interfaces", {"show interface": "show_interface_down.txt"})
    got = {(f.check, f.severity, f.subject) for f in r.findings}
    assert got == {("interface_down", "critical", "eth1"), ("interface_admin_down", "warning", "eth2")}
    r = run("network-interfaces", {"show interface": "show_interface_down.txt"}, {"ignore_interfaces": "eth1,eth2"})
    assert r.findings == []
    r = run("network-interfaces", {"show interface": "show_interface_down.txt"}, {"flap_threshold": "1"})
    assert {f.subject for f in r.findings if f.check == "interface_flapping"} == {"eth1", "eth2"}


def test_routes_and_neighbours_playbooks_on_recorded_outputs() -> None:
    want = "198.51.100.0/24,203.0.113.0/24,10.0.0.0/8"
    r = run("network-routes", {"show ip route": "show_ip_route.txt"}, {"expected_prefixes": want})
    assert [(f.check, f.subject) for f in r.findings] == [
        ("route_missing", "10.0.0.0/8"),
        ("default_route_missing", "0.0.0.0/0"),
    ]
    r = run(
        "network-routes",
        {"show ip route": "show_ip_route.txt"},
        {"expected_prefixes": "198.51.100.0/24", "require_default_route": "false"},
    )
    assert r.findings == []
    r = run("network-neighbors", {"show bgp summary": "show_bgp_summary_down.txt", "show ip ospf neighbor": ""})
    # ospfd not running is recorded as a failed step (exit 1 from the driver) and said so, not taken as "no neighbours"
    got = {(f.check, f.severity) for f in r.findings}
    assert got == {("bgp_neighbor_down", "critical"), ("ospf_not_checked", "info")}  # FRR shows no CDP/LLDP: no ask
    r = run(
        "network-neighbors",
        {"show bgp summary": "show_bgp_summary.txt", "show ip ospf neighbor": "show_ip_ospf_neighbor.txt"},
        {"expected_ospf_neighbors": "10.239.255.2,10.239.255.9"},
    )
    assert [(f.check, f.subject) for f in r.findings] == [("ospf_neighbor_missing", "10.239.255.9")]


def test_hostile_variable_is_an_error_before_anything_is_typed() -> None:
    text = "name: x\nvars: {ifname: {required: true}}\nsteps:\n  - id: s\n    run: show interface {{ ifname }}\n"
    pb = pbmod.parse(yamlsrc.load_text(text, "x.yaml"))
    conn = QuotingFake({})
    report = run_check([router()], pb, FakePool({"r1": conn}), {"ifname": "eth0\nreload"})
    r = report.results[0]
    assert r.status == "error" and "cannot be sent to a network device CLI" in (r.error or "")
    assert conn.calls == []


def test_get_steps_are_validated_and_need_a_device() -> None:
    bad = (
        "name: x\nsteps:\n  - {id: a, get: interfaces, run: show x}\n  - {id: b, get: vlans}\n"
        "  - {id: c, get: bgp, sudo: true}\n"
    )
    with pytest.raises(ConfigError) as e:
        pbmod.parse(yamlsrc.load_text(bad, "x.yaml"))
    text = "\n".join(e.value.problems)
    assert "x.yaml:3:" in text and "either run:" in text
    assert "x.yaml:4:" in text and "'vlans' is not one of interfaces" in text
    assert "x.yaml:5:" in text and "no parse:, sudo: or changes:" in text
    pb = pbmod.parse(yamlsrc.load_text("name: x\nsteps:\n  - {id: a, get: interfaces}\n", "x.yaml"))
    shell = Host(name="web", address="192.0.2.2")
    report = run_check([shell], pb, FakePool({"web": FakeConnection({})}), {})
    r = report.results[0]
    assert r.status == "error" and "get: interfaces needs a network device driver; linux has none" in (r.error or "")


def test_a_playbook_that_applies_to_no_target_is_a_refusal_exit_3() -> None:
    pb = pbmod.parse(yamlsrc.load_text(
        "name: ios-only\napplies_to: {device_types: [cisco_ios]}\nsteps:\n  - {id: a, get: interfaces}\n", "x.yaml"
    ))  # fmt: skip
    junos = Host(name="mx-1", address="192.0.2.3", device_type="juniper_junos")
    report = run_check([junos], pb, FakePool({}), {})
    assert report.results == [] and report.exit_code() == 3
    assert report.skipped == [
        {"host": "mx-1", "reason": "playbook ios-only is for device types cisco_ios, not juniper_junos"}
    ]
    ios = Host(name="sw-1", address="192.0.2.4", device_type="cisco_ios")
    mixed = run_check([junos, ios], pb, FakePool({"sw-1": FakeConnection(lambda c, t, s: result(c, ""))}), {})
    assert mixed.exit_code() != 3 or mixed.results[0].status != "ok"  # a group with a checked host: skips are skips
