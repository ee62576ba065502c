"""Arista EOS (device_type ``arista_eos``), on netmiko's ``arista_eos`` class."""

from __future__ import annotations

from typing import Any, ClassVar

from diag.network.devices._cisco import CISCO_VOLATILE, cisco_bgp, cisco_logs, cisco_ospf, cisco_routes, neighbors
from diag.network.devices.base import Driver
from diag.network.devices.getters import Getter, Outputs, by_name, health, interface, ntc, own, status_ok, up
from diag.network.devices.registry import DRIVERS

P = "arista_eos"


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # `show interfaces`: "Ethernet1 is up, line protocol is up (connected)"; "is administratively down" when shut;
    # "line protocol is notpresent / lowerlayerdown" for a port without optic / a LAG without members;
    # "N link status changes since last clear" (the flap counter). Own template (ntc's has no counters).
    return by_name(
        interface(
            r["interface"],
            "admin" not in r["link_status"].lower(),
            up(r["protocol_status"]),
            description=r["description"],
            in_errors=r["input_errors"],
            out_errors=r["output_errors"],
            in_discards=r["input_discards"],
            out_discards=r["output_discards"],
            duplex_=r["duplex"],
            speed=r["speed"],
            flaps=r["link_status_change"] or None,
        )
        for r in own("arista_eos_show_interfaces", out["show interfaces"])
    )


def _health(out: Outputs) -> dict[str, Any]:
    top = own("arista_eos_show_processes_top_once", out["show processes top once"])
    cool = ntc(P, "show environment cooling", out["show environment cooling"])
    # Temperature and power supplies are not read yet: ntc-templates' arista_eos_show_environment_temperature
    # fails on EOS 4.28 output ("LINE NOT FOUND" on the dashed header), and no recorded `show environment power`
    # was at hand to write a template against.
    cpu = mem = None
    if top:
        cpu = 100 - float(top[0]["cpu_idle"])
        mem = round(100.0 * float(top[0]["mem_used"]) / float(top[0]["mem_total"]), 1)
    return health(
        cpu,
        mem,
        [],
        [{"name": c["fan"], "status": c["status"], "ok": status_ok(c["status"])} for c in cool],
        [],
    )


@DRIVERS.register("arista_eos")
class AristaEos(Driver):
    """EOS: ``leaf-1>`` then ``enable`` gives ``leaf-1#``. Errors are one line: ``% Invalid input``."""

    device_type = "arista_eos"
    netmiko_device_type = "arista_eos"
    enable_command = "enable"
    error_pattern: ClassVar[str] = (
        r"^\s*% ?(Invalid input|Incomplete command|Ambiguous command|Unavailable command|BGP inactive|"
        r"OSPF instance .* does not exist).*$"
    )
    volatile_config = CISCO_VOLATILE
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("show interfaces",), _interfaces),
        "neighbors": Getter(
            ("show lldp neighbors",),
            lambda o: neighbors(ntc(P, "show lldp neighbors", o["show lldp neighbors"]), "lldp"),
        ),
        "bgp": Getter(("show ip bgp summary",), lambda o: _bgp(o)),
        "ospf": Getter(
            ("show ip ospf neighbor",),
            lambda o: cisco_ospf(ntc(P, "show ip ospf neighbor", o["show ip ospf neighbor"])),
        ),
        "routes": Getter(("show ip route",), lambda o: cisco_routes(ntc(P, "show ip route", o["show ip route"]))),
        "health": Getter(
            ("show processes top once", "show environment cooling"), _health, frozenset({"show environment cooling"})
        ),
        "logs": Getter(
            ("show logging last 200",), lambda o: cisco_logs(own("cisco_syslog", o["show logging last 200"]))
        ),
    }


def _bgp(o: Outputs) -> list[dict[str, Any]]:
    # EOS splits state and prefix count: State "Estab" with PfxRcd, or "Active"/"Idle"/"Connect" and no count.
    rows = ntc(P, "show ip bgp summary", o["show ip bgp summary"])
    return cisco_bgp(
        [{**r, "pfx": r["state_pfxrcd"] if r["state"].lower().startswith("estab") else r["state"]} for r in rows],
        "bgp_neigh",
        "neigh_as",
        "pfx",
    )
