"""Juniper Junos (device_type ``juniper_junos``), on netmiko's ``juniper_junos`` class."""

from __future__ import annotations

import re
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

P = "juniper_junos"
# An EX virtual chassis prints the member role before every output; it is not output:
#   {master:0}
#   netops@ex-1> show interfaces
_VC = re.compile(r"^\{(master|backup|linecard)(:\d+)?\}\s*$\n?", re.M)


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # `show interfaces extensive`: "Physical interface: ge-0/0/1, Enabled, Physical link is Down"; errors,
    # drops and "Carrier transitions" in the "Input errors:"/"Output errors:" blocks (own template: ntc's
    # juniper_junos_show_interfaces reads the brief form without counters).
    return by_name(
        interface(
            r["interface"],
            r["admin_state"].lower() == "enabled",
            up(r["link_state"]),
            description=r["description"],
            in_errors=r["input_errors"],
            out_errors=r["output_errors"],
            in_discards=r["input_drops"],
            out_discards=r["output_drops"],
            duplex_=r["duplex"],
            speed=r["speed"],
            flaps=r["carrier_transitions"],
        )
        for r in own("juniper_junos_show_interfaces_extensive", out["show interfaces extensive"])
    )


def _bgp(out: Outputs) -> list[dict[str, Any]]:
    rows = ntc(P, "show bgp summary", out["show bgp summary"])
    # State column: "Establ" then per-table "inet.0: 3/5/5/0" lines, or the FSM state (Active, Connect, Idle).
    return [
        bgp_row(r["peer_ip"], r["peer_as"], "Established" if r["state"].lower().startswith("establ") else r["state"])
        for r in rows
    ]


def _ospf(out: Outputs) -> list[dict[str, Any]]:
    recs = []
    for r in ntc(P, "show ospf neighbor", out["show ospf neighbor"]):
        state, _ = ospf_state(r["state"])
        recs.append(
            {
                "neighbor_id": r["neighbor_id"],
                "state": state,
                "role": "-",
                "interface": r["interface"],
                "address": r["ip_address"],
            }
        )
    return recs


def _routes(out: Outputs) -> list[dict[str, Any]]:
    return [
        {"prefix": prefix(r["prefix"]), "protocol": r["protocol"], "selected": r["active"] == "*", "installed": None}
        for r in own("juniper_junos_show_route_terse", out["show route terse"])
    ]


def _health(out: Outputs) -> dict[str, Any]:
    re_ = own("juniper_junos_show_chassis_routing-engine", out["show chassis routing-engine"])
    env = own("juniper_junos_show_chassis_environment", out["show chassis environment"])
    cpu = mem = None
    if re_:
        idle = num(re_[0]["cpu_idle"])
        cpu = None if idle is None else 100 - idle
        mem = num(re_[0]["memory_util"])
    by = {"Temp": [], "Fans": [], "Power": []}  # type: dict[str, list[dict[str, Any]]]
    for e in env:
        if e["class"] == "Temp":
            by["Temp"].append({"sensor": e["item"], "celsius": num(e["measurement"]), "ok": status_ok(e["status"])})
        elif e["class"] in by:
            by[e["class"]].append({"name": e["item"], "status": e["status"], "ok": status_ok(e["status"])})
    return health(cpu, mem, by["Temp"], by["Fans"], by["Power"])


def _logs(out: Outputs) -> list[dict[str, Any]]:
    # /var/log/messages: "Nov 23 09:12:44  mx-1 rpd[1234]: BGP_IO_ERROR_CLOSE_SESSION: ...". Junos writes no
    # severity into the file by default; the tag's known error events are taken as errors (own template).
    out_ = []
    for r in own("juniper_junos_show_log_messages", out["show log messages"]):
        tag = r["tag"]
        sev = 3 if re.search(r"(ERROR|FAIL|DOWN|ALARM|CRIT)", tag) else 5 if tag else None
        out_.append(
            {
                "time": r["time"],
                "severity": sev if r["severity"] == "" else severity(r["severity"]),
                "facility": r["process"],
                "text": f"{r['process']}: {tag}: {r['message']}".strip(),
            }
        )
    return out_


@DRIVERS.register("juniper_junos")
class JuniperJunos(Driver):
    """Junos operational mode (``netops@mx-1>``). A root login lands in the FreeBSD shell (``root@mx-1:RE:0%``);
    netmiko's Junos class starts ``cli`` there. Paging is ``set cli screen-length 0``. Errors::

        netops@mx-1> show bogus
                          ^
        syntax error, expecting <command>.
        netops@mx-1> show bgp summary
        error: the routing subsystem is not running
    """

    device_type = "juniper_junos"
    netmiko_device_type = "juniper_junos"
    paging_command = "set cli screen-length 0"
    running_config_command = "show configuration"
    prompt_end = r"[>#%]"
    error_pattern: ClassVar[str] = r"^\s*(unknown command\.|syntax error.*|error: .*|warning: .* not running.*)$"
    # "## Last commit: 2026-11-23 09:12:44 UTC by netops" heads `show configuration`; it changes on every commit
    # even of nothing, and "## Last changed:" inside groups likewise.
    volatile_config = (r"^\s*## Last (commit|changed): .*$",)
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("show interfaces extensive",), _interfaces),
        "neighbors": Getter(
            ("show lldp neighbors",),
            lambda o: [
                {
                    "local_interface": r["local_interface"],
                    "neighbor": r["neighbor_name"],
                    "neighbor_interface": r["neighbor_interface"],
                    "protocol": "lldp",
                }
                for r in ntc(P, "show lldp neighbors", o["show lldp neighbors"])
            ],
        ),
        "bgp": Getter(("show bgp summary",), _bgp),
        "ospf": Getter(("show ospf neighbor",), _ospf),
        "routes": Getter(("show route terse",), _routes),
        "health": Getter(
            ("show chassis routing-engine", "show chassis environment"),
            _health,
            frozenset({"show chassis environment"}),
        ),
        "logs": Getter(("show log messages",), _logs),
    }

    def prepare_session(self, session: Any) -> None:
        """netmiko's Junos preparation: enter the CLI from a shell login, set width, paging and complete-on-space."""
        self.netmiko_preparation(session)

    def clean_output(self, command: str, output: str) -> str:
        return _VC.sub("", output)
