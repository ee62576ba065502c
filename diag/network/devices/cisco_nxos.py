"""Cisco NX-OS (device_type ``cisco_nxos``), on netmiko's ``cisco_nxos`` class."""

from __future__ import annotations

from typing import Any, ClassVar

from diag.network.devices._cisco import CISCO_VOLATILE, cisco_bgp, cisco_logs, cisco_ospf, cisco_routes, neighbors
from diag.network.devices.base import Driver
from diag.network.devices.getters import Getter, Outputs, by_name, health, interface, ntc, num, own, status_ok, up
from diag.network.devices.registry import DRIVERS

P = "cisco_nxos"


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # `show interface`: "Ethernet1/1 is down (Link not connected)" / "admin state is up, Dedicated Interface";
    # an SVI or a port shut in the configuration says "(Administratively down)".
    return by_name(
        interface(
            r["interface"],
            _admin_up(r),
            up(r["link_status"]),
            description=r.get("description", ""),
            in_errors=r.get("input_errors"),
            out_errors=r.get("output_errors"),
            in_discards=r.get("input_discards"),
            out_discards=r.get("output_discards"),
            duplex_=r.get("duplex"),
            speed=r.get("speed"),
            flaps=r.get("link_flaps") or None,
        )
        for r in ntc(P, "show interface", out["show interface"])
    )


def _admin_up(r: dict[str, Any]) -> bool:
    # ntc-templates gives SVIs admin_state "down" whenever they are down; the reason in brackets tells a shut one
    # ("Vlan1 is down (Administratively down)") from one without a link ("Vlan330 is down (Link not connected)").
    status = r["link_status"].lower()
    if "(" in status:
        return "administratively" not in status
    return (r.get("admin_state") or "up").lower() == "up"


def _health(out: Outputs) -> dict[str, Any]:
    res = own("cisco_nxos_show_system_resources", out["show system resources"])
    env = ntc(P, "show environment", out["show environment"])
    temps = [
        {
            "sensor": f"{e['temperature_module']}/{e['temperature_sensor']}",
            "celsius": num(e["temperature_current"]),
            "ok": status_ok(e["temperature_status"]),
        }
        for e in env
        if e.get("temperature_sensor")
    ]
    fans = [
        {"name": e["fan"], "status": e["fan_status"], "ok": status_ok(e["fan_status"])} for e in env if e.get("fan")
    ]
    psus = [
        {"name": e["power_supply"], "status": e["power_supply_status"], "ok": status_ok(e["power_supply_status"])}
        for e in env
        if e.get("power_supply")
    ]
    cpu = mem = None
    if res:
        idle = num(res[0]["cpu_idle"])
        cpu = None if idle is None else 100 - idle
        used, total_ = num(res[0]["mem_used"]), num(res[0]["mem_total"])
        mem = round(100.0 * used / total_, 1) if used is not None and total_ else None
    return health(cpu, mem, temps, fans, psus)


@DRIVERS.register("cisco_nxos")
class CiscoNxos(Driver):
    """NX-OS logs in at ``switch#`` (network-admin); errors::

    switch# show bogus
                 ^
    % Invalid command at '^' marker.
    """

    device_type = "cisco_nxos"
    netmiko_device_type = "cisco_nxos"
    enable_command = "enable"
    error_pattern: ClassVar[str] = (
        r"^\s*% ?(Invalid command|Invalid input|Incomplete command|Ambiguous command|Feature not enabled|"
        r"Invalid number).*$|^\s*(BGP|OSPF|LLDP|CDP)\S* (is )?not (enabled|running).*$"
    )
    volatile_config = CISCO_VOLATILE
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("show interface",), _interfaces),
        "neighbors": Getter(
            ("show cdp neighbors", "show lldp neighbors"),
            lambda o: (
                neighbors(ntc(P, "show cdp neighbors", o["show cdp neighbors"]), "cdp")
                # own template: ntc's drops a neighbour whose name has blanks (see the template)
                + neighbors(own("cisco_nxos_show_lldp_neighbors", o["show lldp neighbors"]), "lldp")
            ),
            frozenset({"show cdp neighbors", "show lldp neighbors"}),
        ),
        "bgp": Getter(
            ("show ip bgp summary",),
            lambda o: cisco_bgp(
                ntc(P, "show ip bgp summary", o["show ip bgp summary"]), "bgp_neigh", "neigh_as", "state_pfxrcd"
            ),
        ),
        "ospf": Getter(
            ("show ip ospf neighbor",),
            lambda o: cisco_ospf(ntc(P, "show ip ospf neighbor", o["show ip ospf neighbor"])),
        ),
        "routes": Getter(("show ip route",), lambda o: cisco_routes(ntc(P, "show ip route", o["show ip route"]))),
        "health": Getter(("show system resources", "show environment"), _health, frozenset({"show environment"})),
        "logs": Getter(
            ("show logging last 200",), lambda o: cisco_logs(own("cisco_syslog", o["show logging last 200"]))
        ),
    }
