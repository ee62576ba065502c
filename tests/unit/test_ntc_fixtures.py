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
    getter = driver_class(platform).getters[kind]
    outputs = dict.fromkeys(getter.commands, "")  # the other commands of the getter: nothing shown
    outputs[cmd] = text
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
    state = str(row.get("state") or row.get("state_or_prefixes_received") or "")
    established = state.isdigit() or state.lower().startswith("estab")
    return str(neighbor), _asn(str(asn)), established


@pytest.mark.parametrize("raw", CASES, ids=lambda p: str(p.relative_to(ROOT).with_suffix("")))
def test_getter_matches_the_fixtures_expected_parse(raw: Path) -> None:
    platform, folder = raw.parent.parent.name, raw.parent.name
    want = yaml.safe_load(raw.with_suffix(".yml").read_text())
    rows = want.get("parsed_sample", [])
    kind, got = _parse(platform, folder, raw.read_text())
    if kind == "bgp":
        assert [(r["neighbor"], r["remote_as"], r["established"]) for r in got] == [_expected_bgp(r) for r in rows]
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
    elif kind == "interfaces":  # RouterOS flags: X disabled, R running
        assert {n: (r["admin_up"], r["oper_up"], r["flaps"]) for n, r in got.items()} == {
            w["name"]: (w["status"] != "X", w["status"] == "R", int(w["link_downs"])) for w in rows
        }
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
