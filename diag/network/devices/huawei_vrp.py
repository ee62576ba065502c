"""Huawei VRP (device_type ``huawei_vrp``), on netmiko's ``huawei`` class."""

from __future__ import annotations

from typing import Any, ClassVar

from diag.network.devices.base import Driver
from diag.network.devices.getters import (
    Getter,
    Outputs,
    bgp_row,
    by_name,
    health,
    interface,
    ntc,
    num,
    ospf_state,
    own,
    prefix,
    severity,
    status_ok,
    up,
)
from diag.network.devices.registry import DRIVERS

P = "huawei_vrp"


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # `display interface`: "GigabitEthernet0/0/1 current state : Administratively DOWN" / "Line protocol current
    # state : DOWN". A routed port without an address ("Route Port", "Internet protocol processing : disabled")
    # shows its line protocol DOWN by design: its state is the physical one, not an outage. Counters from diag's
    # own template over the same output (ntc's reads none).
    text = out["display interface"]
    counters = {r["interface"]: r for r in own("huawei_vrp_display_interface_errors", text)}
    recs = []
    for r in ntc(P, "display interface", text):
        c = counters.get(r["interface"], {})
        no_ip = r.get("port_type", "").lower() == "route" and r.get("ip_status") == "disabled"
        recs.append(
            interface(
                r["interface"],
                "admin" not in r["link_status"].lower(),
                up(r["link_status"] if no_ip else r["protocol_status"]),
                description=r.get("interface_description") or r.get("description", ""),
                in_errors=c.get("input_errors"),
                out_errors=c.get("output_errors"),
                in_discards=c.get("input_discards"),
                out_discards=c.get("output_discards"),
                duplex_=r.get("duplex"),
                speed=r.get("speed"),
            )
        )
    return by_name(recs)


def _bgp(out: Outputs) -> list[dict[str, Any]]:
    return [
        bgp_row(r["peer"], r["asn"], r["pref_rcvd"] if r["state"].lower() == "established" else r["state"])
        for r in ntc(P, "display bgp peer", out["display bgp peer"])
    ]


def _ospf(out: Outputs) -> list[dict[str, Any]]:
    recs = []
    for r in own("huawei_vrp_display_ospf_peer_brief", out["display ospf peer brief"]):
        state, _ = ospf_state(r["state"])
        recs.append(
            {"neighbor_id": r["neighbor_id"], "state": state, "role": "-", "interface": r["interface"], "address": ""}
        )
    return recs


def _routes(out: Outputs) -> list[dict[str, Any]]:
    return [
        {"prefix": prefix(r["prefix"]), "protocol": r["proto"], "selected": True, "installed": None}
        for r in own("huawei_vrp_display_ip_routing-table", out["display ip routing-table"])
    ]


def _health(out: Outputs) -> dict[str, Any]:
    cpu = own("huawei_vrp_display_cpu-usage", out["display cpu-usage"])
    mem = own("huawei_vrp_display_memory-usage", out["display memory-usage"])
    temp = ntc(P, "display temperature", out["display temperature"])
    # Fans and power supplies (`display device`, `display fan`, `display power`) are not read yet: no recorded
    # output of them was at hand to write a template against.
    return health(
        cpu[0]["cpu"] if cpu else None,
        mem[0]["memory"] if mem else None,
        [
            {"sensor": f"{t['slotid']} {t['pcb']}", "celsius": num(t["temperature"]), "ok": status_ok(t["status"])}
            for t in temp
        ],
        [],
        [],
    )


def _logs(out: Outputs) -> list[dict[str, Any]]:
    # "Nov 23 2026 09:12:44 ce-1 %%01IFNET/4/LINK_STATE(l)[12]:The line protocol IP on the interface ..." : the
    # number after the module is the severity (4 warning, 3 error, 2 critical).
    return [
        {
            "time": r["time"],
            "severity": severity(r["severity"]),
            "facility": r["module"],
            "text": f"{r['module']}/{r['severity']}/{r['brief']}: {r['message']}",
        }
        for r in own("huawei_vrp_display_logbuffer", out["display logbuffer"])
    ]


@DRIVERS.register("huawei_vrp")
class HuaweiVrp(Driver):
    """VRP user view ``<ce-1>``; system view ``[ce-1]``. Paging: ``screen-length 0 temporary``. Errors::

    <ce-1>display bogus
                  ^
    Error: Unrecognized command found at '^' position.
    """

    device_type = "huawei_vrp"
    netmiko_device_type = "huawei"
    paging_command = "screen-length 0 temporary"
    logout_command = "quit"
    running_config_command = "display current-configuration"
    prompt_start = r"[<\[]?"
    prompt_end = r"[>\]#]"
    error_pattern: ClassVar[str] = (
        r"^\s*Error: ?(Unrecognized command|Wrong parameter|Incomplete command"
        r"|Too many parameters|.*not enabled|.*does not exist).*$"
    )
    # "!Software Version V800R021C00SPC100" and "!Last configuration was updated at 2026-11-23 09:12:44+00:00"
    # head display current-configuration; "!Last configuration was saved at ..." changes on every save.
    volatile_config = (r"^!Last configuration was (updated|saved) at .*$", r"^!Time: .*$")
    # local-user admin password irreversible-cipher $1c$...$; snmp-agent community read cipher %^%#...%^%#;
    # ospf authentication-mode md5 1 cipher %^%#...; peer 10.0.0.1 password cipher %^%#...%^%#
    mask_patterns = (
        r"(?i)(?<![\w-])(?:password|authentication-mode\s+\S+(?:\s+\d+)?)\s+"
        r"(?:irreversible-cipher|cipher|simple|plain)\s+(?P<s>\S+)",
        r"(?i)(?<![\w-])community\s+(?:read|write)\s+(?:cipher\s+|simple\s+)?(?P<s>\S+)",
        r"(?i)(?<![\w-])(?:pre-shared-key|shared-key|authentication-key)\s+(?:cipher\s+|simple\s+)?(?P<s>\S+)",
    )
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("display interface",), _interfaces),
        "neighbors": Getter(
            ("display lldp neighbor",),
            lambda o: [
                {
                    "local_interface": r["local_interface"],
                    "neighbor": r["neighbor_name"],
                    # "Port ID" (the neighbour's own name for its port); ntc's neighbor_interface is "Port
                    # description", an admin's text or empty (an S5735 beside an H3C: "abcxyz" for its Te1/0/23)
                    "neighbor_interface": r["neighbor_port_id"] or r["neighbor_interface"],
                    "protocol": "lldp",
                }
                for r in ntc(P, "display lldp neighbor", o["display lldp neighbor"])
            ],
        ),
        "bgp": Getter(("display bgp peer",), _bgp),
        "ospf": Getter(("display ospf peer brief",), _ospf),
        "routes": Getter(("display ip routing-table",), _routes),
        "health": Getter(
            ("display cpu-usage", "display memory-usage", "display temperature"),
            _health,
            frozenset({"display temperature"}),
        ),
        "logs": Getter(("display logbuffer",), _logs),
    }

    def prepare_session(self, session: Any) -> None:
        """netmiko's Huawei preparation (ANSI cursor codes stripped, base prompt without ``<>``, paging off)."""
        session._test_channel_read(pattern=r"[>\]]")
        self.netmiko_preparation(session)
