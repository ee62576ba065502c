"""Eltex MES switches (device_type ``eltex``), on netmiko's ``eltex`` class."""

from __future__ import annotations

from typing import Any, ClassVar

from diag.network.devices._cisco import CISCO_VOLATILE, cisco_bgp, cisco_ospf, cisco_routes
from diag.network.devices.base import Driver
from diag.network.devices.getters import (
    Getter,
    Outputs,
    by_name,
    health,
    interface,
    ntc,
    num,
    own,
    status_ok,
    up,
)
from diag.network.devices.registry import DRIVERS

P = "eltex"
_LETTER_SEVERITY = {"F": 0, "A": 1, "C": 2, "E": 3, "W": 4, "N": 5, "I": 6, "D": 7}


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # `show interface`: "gigabitethernet1/0/5 is down (not connected)" / "... is down (Admin)" when shut;
    # "N input errors" style counters; ntc-templates reads it (the carrier counter is the flap signal).
    return by_name(
        interface(
            r["interface"],
            "admin" not in r["status"].lower(),
            up(r["status"]),
            description=r.get("description", ""),
            in_errors=r.get("input_err_num"),
            out_errors=r.get("output_err_num"),
            duplex_=r.get("duplex_type"),
            speed=r.get("speed"),
        )
        for r in ntc(P, "show interface", out["show interface"])
    )


def _health(out: Outputs) -> dict[str, Any]:
    cpu = own("eltex_show_cpu_utilization", out["show cpu utilization"])
    sysr = ntc(P, "show system", out["show system"])
    temps: list[dict[str, Any]] = []
    fans: list[dict[str, Any]] = []
    psus: list[dict[str, Any]] = []
    if sysr:
        s = sysr[0]
        temps = [
            {"sensor": i, "celsius": num(t), "ok": status_ok(st)}
            for i, t, st in zip(s["sensor_id"], s["sensor_temp"], s["sensor_status"], strict=False)
        ]
        fans = [
            {"name": i, "status": st, "ok": status_ok(st)} for i, st in zip(s["fan_id"], s["fans_status"], strict=False)
        ]
        psus = [
            {"name": n, "status": s[k], "ok": status_ok(s[k])}
            for n, k in (("main", "main_power_supply_status"), ("redundant", "redundant_power_supply_status"))
            if s.get(k) and s[k].lower() != "not present"
        ]
    return health(cpu[0]["five_minutes"] if cpu else None, None, temps, fans, psus)


@DRIVERS.register("eltex")
class EltexMes(Driver):
    """Eltex MES (Cisco-like CLI): ``mes-1>``, ``enable`` -> ``mes-1#``; ``terminal datadump`` turns paging off.

    Errors::

        mes-1# show bogus
        % Unrecognized command
    """

    device_type = "eltex"
    netmiko_device_type = "eltex"
    enable_command = "enable"
    paging_command = "terminal datadump"
    error_pattern: ClassVar[str] = (
        r"^\s*% ?(Unrecognized command|Incomplete command|Wrong number of parameters|bad parameter value"
        r"|Invalid input).*$"
    )
    volatile_config = CISCO_VOLATILE
    # username admin password encrypted 4f3b...; enable password level 15 encrypted 6b1c...
    mask_patterns = (r"(?i)(?<![\w-])password\s+level\s+\d+\s+(?:encrypted\s+)?(?P<s>\S+)",)
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("show interface",), _interfaces),
        "neighbors": Getter(
            ("show lldp neighbors",),
            lambda o: [
                {
                    "local_interface": r["port"],
                    "neighbor": r["system_name"],
                    "neighbor_interface": r["port_id"],
                    "protocol": "lldp",
                }
                for r in own("eltex_show_lldp_neighbors", o["show lldp neighbors"])
            ],
        ),
        "bgp": Getter(
            ("show ip bgp summary",),
            lambda o: cisco_bgp(
                ntc("cisco_ios", "show ip bgp summary", o["show ip bgp summary"]),
                "bgp_neighbor",
                "neighbor_as",
                "state_or_prefixes_received",
            ),
        ),
        "ospf": Getter(
            ("show ip ospf neighbor",),
            lambda o: cisco_ospf(ntc("cisco_ios", "show ip ospf neighbor", o["show ip ospf neighbor"])),
        ),
        "routes": Getter(
            ("show ip route",), lambda o: cisco_routes(ntc("cisco_ios", "show ip route", o["show ip route"]))
        ),
        "health": Getter(("show cpu utilization", "show system"), _health, frozenset({"show system"})),
        "logs": Getter(
            ("show logging",),
            lambda o: [
                {
                    "time": r["time"],
                    "severity": _LETTER_SEVERITY.get(r["severity"]),
                    "facility": r["facility"],
                    "text": f"%{r['facility']}-{r['severity']}-{r['mnemonic']}: {r['message']}",
                }
                for r in own("eltex_show_logging", o["show logging"])
            ],
        ),
    }
