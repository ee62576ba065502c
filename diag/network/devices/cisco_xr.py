"""Cisco IOS-XR (device_type ``cisco_xr``), on netmiko's ``cisco_xr`` class."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from diag.network.devices._cisco import CISCO_VOLATILE, cisco_bgp, cisco_logs, cisco_ospf, cisco_routes, neighbors
from diag.network.devices.base import Driver
from diag.network.devices.getters import Getter, Outputs, by_name, health, interface, ntc, own, status_ok, up
from diag.network.devices.registry import DRIVERS

P = "cisco_xr"
# XR prints the time before the output of every command ("Mon Nov 23 09:13:01.123 UTC"); it is not output.
_STAMP = re.compile(r"\A\s*(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} +\d+ [\d:.]+ \S+\s*\n")


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    return by_name(
        interface(
            r["interface"],
            # "is administratively down" when shut; "is down, line protocol is down" when the link is gone
            "admin" not in r["link_status"].lower(),
            up(r["link_status"]),
            description=r.get("description", ""),
            in_errors=r.get("input_errors"),
            out_errors=r.get("output_errors"),
            in_discards=r.get("input_drops") or None,
            out_discards=r.get("output_drops") or None,
            duplex_=r.get("duplex"),
            speed=r.get("speed"),
            flaps=r.get("carrier_transitions") or None,
        )
        for r in ntc(P, "show interfaces", out["show interfaces"])
    )


def _health(out: Outputs) -> dict[str, Any]:
    cpu = ntc(P, "show processes cpu", out["show processes cpu"])
    mem = own("cisco_xr_show_memory_summary", out["show memory summary"])
    fans = [
        {
            "name": r["module"],
            "status": "ok" if any(s not in ("0", "") for s in r["fan_speed"]) else "stopped",
            "ok": any(s not in ("0", "") for s in r["fan_speed"]),
        }
        for r in ntc(P, "admin show environment fan", out["admin show environment fan"])
    ]
    psus = [
        {"name": r["power_module"], "status": r["status"], "ok": status_ok(r["status"])}
        for r in ntc(P, "admin show environment power", out["admin show environment power"])
    ]
    memp = None
    if mem:
        phys, avail = float(mem[0]["physical"]), float(mem[0]["available"])
        memp = round(100.0 * (phys - avail) / phys, 1) if phys else None
    return health(cpu[0]["cpu_1_min"] if cpu else None, memp, (), fans, psus)


@DRIVERS.register("cisco_xr")
class CiscoXr(Driver):
    """IOS-XR: ``RP/0/RP0/CPU0:pe-1#``; every output starts with a timestamp line, removed by clean_output::

    RP/0/RP0/CPU0:pe-1#show ip bgp summary
    Mon Nov 23 09:13:01.123 UTC
    BGP router identifier 10.0.0.1, local AS number 65000
    """

    device_type = "cisco_xr"
    netmiko_device_type = "cisco_xr"
    enable_command = "enable"
    error_pattern: ClassVar[str] = (
        r"^\s*% ?(Invalid input detected|Incomplete command|Ambiguous command"
        r"|BGP instance .* not active|This command is not supported).*$"
    )
    volatile_config = CISCO_VOLATILE
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("show interfaces",), _interfaces),
        "neighbors": Getter(
            ("show lldp neighbors",),
            lambda o: neighbors(ntc(P, "show lldp neighbors", o["show lldp neighbors"]), "lldp"),
        ),
        "bgp": Getter(
            ("show ip bgp summary",),
            lambda o: cisco_bgp(
                ntc(P, "show ip bgp summary", o["show ip bgp summary"]), "bgp_neigh", "neigh_as", "state_pfxrcd"
            ),
        ),
        "ospf": Getter(
            ("show ospf neighbor",), lambda o: cisco_ospf(ntc(P, "show ospf neighbor", o["show ospf neighbor"]))
        ),
        "routes": Getter(("show ip route",), lambda o: cisco_routes(ntc(P, "show ip route", o["show ip route"]))),
        "health": Getter(
            ("show processes cpu", "show memory summary", "admin show environment fan", "admin show environment power"),
            _health,
            frozenset({"admin show environment fan", "admin show environment power"}),
        ),
        "logs": Getter(
            ("show logging last 200",), lambda o: cisco_logs(own("cisco_syslog", o["show logging last 200"]))
        ),
    }

    def clean_output(self, command: str, output: str) -> str:
        return _STAMP.sub("", output, count=1)
