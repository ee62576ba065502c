"""Cisco IOS and IOS-XE (device_type ``cisco_ios``), on netmiko's ``cisco_ios`` class."""

from __future__ import annotations

from typing import Any, ClassVar

from diag.network.devices._cisco import (
    CISCO_VOLATILE,
    cisco_bgp,
    cisco_logs,
    cisco_ospf,
    cisco_routes,
    neighbors,
    percent,
)
from diag.network.devices.base import Driver
from diag.network.devices.getters import Getter, Outputs, by_name, health, interface, ntc, num, own, status_ok, up
from diag.network.devices.registry import DRIVERS

P = "cisco_ios"


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # `show interfaces`: "GigabitEthernet1/0/1 is administratively down, line protocol is down"; the drops are in
    # "Input queue: 0/75/12/0 (size/max/drops/flushes); Total output drops: 3"; flaps are not counted by IOS.
    return by_name(
        interface(
            r["interface"],
            "admin" not in r["link_status"].lower(),
            up(r["protocol_status"]),
            description=r.get("description", ""),
            in_errors=r.get("input_errors"),
            out_errors=r.get("output_errors"),
            in_discards=r.get("queue_drops"),
            out_discards=r.get("queue_output_drops"),
            duplex_=r.get("duplex"),
            speed=r.get("speed"),
        )
        for r in ntc(P, "show interfaces", out["show interfaces"])
    )


def _neighbors(out: Outputs) -> list[dict[str, Any]]:
    return neighbors(ntc(P, "show cdp neighbors", out["show cdp neighbors"]), "cdp") + neighbors(
        ntc(P, "show lldp neighbors", out["show lldp neighbors"]), "lldp"
    )


def _health(out: Outputs) -> dict[str, Any]:
    cpu = ntc(P, "show processes cpu", out["show processes cpu"])
    mem = ntc(P, "show processes memory sorted", out["show processes memory sorted"])
    env = own("cisco_ios_show_environment_all", out["show environment all"])
    temps = [
        {"sensor": e["temp_name"], "celsius": num(e["temp_value"]), "ok": status_ok(e["temp_status"])}
        for e in env
        if e["temp_name"]
    ]
    fans = [
        {"name": e["fan_name"], "status": e["fan_status"], "ok": status_ok(e["fan_status"])}
        for e in env
        if e["fan_name"] and "NOT PRESENT" not in e["fan_status"].upper()
    ]
    psus = [
        {"name": e["psu_name"], "status": e["psu_status"], "ok": status_ok(e["psu_status"])}
        for e in env
        if e["psu_name"]
    ]
    return health(
        cpu[0]["cpu_usage_5_min"] if cpu else None,
        percent(mem[0]["memory_used"], mem[0]["memory_total"]) if mem else None,
        temps,
        fans,
        psus,
    )


@DRIVERS.register("cisco_ios")
class CiscoIos(Driver):
    """IOS/IOS-XE. A login below privilege 15 lands at ``sw-1>``: ``enable`` is sent (show running-config needs it).

    Errors look like this (the caret line comes first, then the message)::

        sw-1#show interfaces bogus
                                 ^
        % Invalid input detected at '^' marker.
    """

    device_type = "cisco_ios"
    netmiko_device_type = "cisco_ios"
    enable_command = "enable"
    error_pattern: ClassVar[str] = (
        r"^\s*% ?(Invalid input detected|Incomplete command|Ambiguous command|Unknown command|"
        r"Invalid command|BGP not active|CDP is not enabled|LLDP is not enabled).*$"
    )
    volatile_config = CISCO_VOLATILE
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("show interfaces",), _interfaces),
        # CDP and LLDP both: a Cisco shop runs CDP, a mixed one LLDP; a disabled one answers "% CDP is not enabled".
        "neighbors": Getter(
            ("show cdp neighbors", "show lldp neighbors"),
            _neighbors,
            frozenset({"show cdp neighbors", "show lldp neighbors"}),
        ),
        "bgp": Getter(
            ("show ip bgp summary",),
            lambda o: cisco_bgp(
                ntc(P, "show ip bgp summary", o["show ip bgp summary"]),
                "bgp_neighbor",
                "neighbor_as",
                "state_or_prefixes_received",
            ),
        ),
        "ospf": Getter(
            ("show ip ospf neighbor",),
            lambda o: cisco_ospf(ntc(P, "show ip ospf neighbor", o["show ip ospf neighbor"])),
        ),
        "routes": Getter(("show ip route",), lambda o: cisco_routes(ntc(P, "show ip route", o["show ip route"]))),
        "health": Getter(
            ("show processes cpu", "show processes memory sorted", "show environment all"),
            _health,
            frozenset({"show environment all"}),
        ),
        "logs": Getter(("show logging",), lambda o: cisco_logs(ntc(P, "show logging", o["show logging"]))),
    }
