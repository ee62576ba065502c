"""Every driver getter over real device outputs of other models and software versions (ntc-templates' own test
fixtures, tests/fixtures/ntc/README.md): diag's vendor-neutral records must say what the fixture's expected parse
says (names, states, AS numbers, prefixes, counters), not merely parse without an exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from diag.network.devices import driver_class

ROOT = Path(__file__).resolve().parent.parent / "fixtures" / "ntc"
CASES = sorted(ROOT.glob("*/*/*.raw"))


def _getter(platform: str, folder: str) -> tuple[str, str]:
    """(getter name, command) of the platform's driver whose command is the fixture folder's."""
    for name, g in driver_class(platform).getters.items():
        for cmd in g.commands:
            if cmd.replace(" ", "_") == folder:
                return name, cmd
    raise AssertionError(f"{platform} has no getter reading `{folder}`")


def _parse(platform: str, folder: str, text: str) -> tuple[str, Any]:
    kind, cmd = _getter(platform, folder)
    cls = driver_class(platform)
    getter = cls.getters[kind]
    outputs = dict.fromkeys(getter.commands, "")  # the other commands of the getter: nothing shown
    outputs[cmd] = cls.clean_output(cls.__new__(cls), cmd, text)  # as the driver hands it over (XR: no timestamp)
    return kind, getter.parse(outputs)


def _asn(text: str) -> int:
    high, _, low = text.partition(".")
    return int(high) * 65536 + int(low) if low else int(high)


def _expected_bgp(row: dict[str, Any]) -> tuple[str, int, bool]:
    neighbor = (
        row.get("bgp_neighbor")
        or row.get("bgp_neigh")
        or row.get("peer_ip")
        or row.get("peer")
        or row.get("remote_address")
    )
    asn = (
        row.get("neighbor_as")
        or row.get("neigh_as")
        or row.get("peer_as")
        or row.get("asn")
        or row.get("remote_asn")
        or row.get("remote_as")
    )
    state = str(row.get("state_pfxrcd") or row.get("state") or row.get("state_or_prefixes_received") or "")
    established = state[:1].isdigit() or state.lower().startswith("estab")
    return str(neighbor), _asn(str(asn)), established


@pytest.mark.parametrize("raw", CASES, ids=lambda p: str(p.relative_to(ROOT).with_suffix("")))
def test_getter_matches_the_fixtures_expected_parse(raw: Path) -> None:
    platform, folder = raw.parent.parent.name, raw.parent.name
    want = yaml.safe_load(raw.with_suffix(".yml").read_text())
    rows = want.get("parsed_sample", [])
    kind, got = _parse(platform, folder, raw.read_text())
    if kind == "bgp":
        assert [(r["neighbor"], r["remote_as"], r["established"]) for r in got] == [_expected_bgp(r) for r in rows]
        assert [r["vrf"] for r in got] == [w.get("vrf") or "default" for w in rows]
        assert all(r["state"] == "Established" for r in got if r["established"])
        assert all(r["state"] and r["state"] != "Established" for r in got if not r["established"])
    elif kind == "ospf":
        assert [(r["neighbor_id"], r["state"], r["interface"]) for r in got] == [
            (w["neighbor_id"], "Full" if w["state"].upper().startswith("FULL") else w["state"], w["interface"])
            for w in rows
        ]
    elif kind == "neighbors":
        assert [(r["local_interface"], r["neighbor"], r["neighbor_interface"]) for r in got] == [
            (w["local_interface"], w["neighbor_name"], w["neighbor_interface"]) for w in rows
        ]
    elif kind == "interfaces" and platform == "mikrotik_routeros":  # RouterOS flags: X disabled, R running
        assert {n: (r["admin_up"], r["oper_up"], r["flaps"]) for n, r in got.items()} == {
            w["name"]: (w["status"] != "X", w["status"] == "R", int(w["link_downs"])) for w in rows
        }
    elif kind == "interfaces":
        assert list(got) == [w["interface"] for w in rows]
        for w in rows:
            r = got[w["interface"]]
            assert r["admin_up"] == ("admin" not in w["link_status"].lower()), w
            # the line protocol, except where the yml says the physical state counts (VRP route port, no address)
            proto = w.get("oper", w["protocol_status"]).lower()
            assert r["oper_up"] == proto.startswith("up"), w
            extra = {k: w[k] for k in ("flaps", "speed_mbps", "duplex", "errors") if k in w}
            assert {k: r[k] for k in extra} == extra, w
    elif kind == "routes":
        # the fixture is `show ip route vrf TRI` ("Routing Table: TRI"): not the global table diag checks
        assert got == []
        text = raw.read_text().replace("Routing Table: TRI\n", "")
        _, got = _parse(platform, folder, text)
        assert [r["prefix"] for r in got] == want["prefixes"]
        assert all(r["selected"] for r in got)
    elif kind == "health":
        [w] = rows
        assert [(t["sensor"], t["celsius"], t["ok"]) for t in got["temperatures"]] == [
            (i, int(c), s == "OK") for i, c, s in zip(w["sensor_id"], w["sensor_temp"], w["sensor_status"], strict=True)
        ]
        assert [(f["name"], f["ok"]) for f in got["fans"]] == [(i, True) for i in w["fan_id"]]
        assert [p["ok"] for p in got["psus"]] == [True, True]
    elif kind == "logs":
        assert [(r["facility"], r["severity"]) for r in got] == [(w["facility"], int(w["severity"])) for w in rows]
    else:  # pragma: no cover - a new fixture folder needs its comparison here
        raise AssertionError(f"no comparison for {kind}")


def test_every_platform_has_fixtures() -> None:
    """The fixtures cover all nine vendor platforms' getters that ntc-templates has fixtures for."""
    platforms = {p.parent.parent.name for p in CASES}
    assert {"cisco_ios", "arista_eos", "juniper_junos", "huawei_vrp", "hp_comware", "mikrotik_routeros",
            "eltex"} <= platforms  # fmt: skip


def test_own_templates_on_the_other_forms_their_samples_show() -> None:
    """Forms no fetched fixture has, from the templates' own samples: VRP8 counters one per line, an NX-OS LLDP
    neighbour whose long name wraps onto its own line."""
    from diag.network.devices.getters import own

    vrp8 = (
        "10GE1/0/1 current state : UP (ifindex: 12)\nLine protocol current state : UP\n"
        "Input:            1230 packets,         220 bytes\n  Discard:                   3,  Pause:      0\n"
        "  Total Error:              17\nOutput:           99 packets,          10 bytes\n"
        "  Discard:                   0,  Pause:      0\n  Total Error:               1\n"
        "10GE1/0/2 current state : DOWN (ifindex: 13)\nLine protocol current state : DOWN\n"
    )
    assert own("huawei_vrp_display_interface_errors", vrp8) == [
        {"interface": "10GE1/0/1", "input_discards": "3", "input_errors": "17", "output_discards": "0",
         "output_errors": "1"},
        {"interface": "10GE1/0/2", "input_discards": "", "input_errors": "", "output_discards": "",
         "output_errors": ""},
    ]  # fmt: skip
    nxos = (
        "Device ID            Local Intf      Hold-time  Capability  Port ID\n"
        "a-very-long-neighbor-name.example.net\n"
        "                     Eth1/7          120        R           Ethernet1/49\n"
        "phone 7                Eth1/9          120                    Port 1\n"
        "Total entries displayed: 2\n"
    )
    _, got = _parse("cisco_nxos", "show_lldp_neighbors", nxos)
    assert [(r["local_interface"], r["neighbor"], r["neighbor_interface"]) for r in got] == [
        ("Eth1/7", "a-very-long-neighbor-name.example.net", "Ethernet1/49"),
        ("Eth1/9", "phone 7", "Port 1"),
    ]
