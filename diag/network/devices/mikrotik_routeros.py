"""MikroTik RouterOS (device_type ``mikrotik_routeros``), on netmiko's ``mikrotik_routeros`` class."""

from __future__ import annotations

from typing import Any, ClassVar

from diag.network.devices.base import Driver
from diag.network.devices.getters import Getter, Outputs, bgp_row, by_name, health, interface, ntc, num, own, prefix
from diag.network.devices.registry import DRIVERS

P = "mikrotik_routeros"


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # Flags: X disabled, R running, S slave (bridge/bond port), D dynamic; "X S" for a disabled port (own template:
    # ntc-templates' fails on that line, see the template). A slave runs when R is shown like any other interface.
    recs = []
    for r in own("mikrotik_routeros_interface_print_terse", out["interface print terse without-paging"]):
        flags = r["flags"]
        disabled = "X" in flags
        recs.append(
            interface(
                r["name"].strip('"'),
                not disabled,
                False if disabled else "R" in flags,
                description=r["comment"],
                flaps=r["link_downs"] or None,
            )
        )
    return by_name(recs)


def _bgp(out: Outputs) -> list[dict[str, Any]]:
    return [
        bgp_row(
            r["remote_address"],
            r["remote_as"],
            r["prefix_count"] if r["state"] == "established" else r["state"].capitalize(),
        )
        for r in ntc(
            P, "routing bgp peer print status without-paging", out["routing bgp peer print status without-paging"]
        )
    ]


def _ospf(out: Outputs) -> list[dict[str, Any]]:
    from diag.network.devices.getters import ospf_state

    recs = []
    for r in ntc(
        P, "routing ospf neighbor print terse without-paging", out["routing ospf neighbor print terse without-paging"]
    ):
        state, _ = ospf_state(r["state"])
        recs.append(
            {
                "neighbor_id": r["router_id"],
                "state": state,
                "role": "-",
                "interface": r["interface"],
                "address": r["address"],
            }
        )
    return recs


def _routes(out: Outputs) -> list[dict[str, Any]]:
    # Flags: A active (selected and installed), D dynamic, S static, C connect, o ospf, b bgp, X disabled.
    return [
        {
            "prefix": prefix(r["dst_address"]),
            "protocol": r["flags"],
            "selected": "A" in r["flags"],
            "installed": "A" in r["flags"],
        }
        for r in own("mikrotik_routeros_ip_route_print_terse", out["ip route print terse without-paging"])
    ]


def _health(out: Outputs) -> dict[str, Any]:
    res = own("mikrotik_routeros_system_resource_print", out["system resource print"])
    cpu = mem = None
    if res:
        cpu = res[0]["cpu_load"]
        free, total_ = _bytes(res[0]["free_memory"]), _bytes(res[0]["total_memory"])
        mem = round(100.0 * (total_ - free) / total_, 1) if free is not None and total_ else None
    # `system health print` (temperature, fans, PSU on RouterBOARDs that have sensors) is not read yet.
    return health(cpu, mem)


def _bytes(v: str) -> float | None:
    n = num(v)
    if n is None:
        return None
    unit = v.strip().lstrip("0123456789.").strip()[:1].upper()
    return float(n) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(unit, 1)


def _logs(out: Outputs) -> list[dict[str, Any]]:
    # RouterOS log lines carry topics, not a syslog severity: "system,error,critical login failure for user ...".
    recs = []
    for r in ntc(P, "log print detail without-paging", out["log print detail without-paging"]):
        topics = r["topic"].split(",")
        sev = 2 if "critical" in topics else 3 if "error" in topics else 4 if "warning" in topics else 6
        recs.append({"time": r["datetime"], "severity": sev, "facility": r["topic"], "text": r["message"].strip()})
    return recs


@DRIVERS.register("mikrotik_routeros")
class MikrotikRouterOs(Driver):
    """RouterOS: ``[netops@rtr-1] >``. There is no paging command: the login name carries terminal options
    (``netops+ct511w4098h``: no colours, no terminal detection, 511 columns, 4098 rows), and commands that would
    page take ``without-paging``. Errors::

        [netops@rtr-1] > bogus
        bad command name bogus (line 1 column 1)
    """

    device_type = "mikrotik_routeros"
    netmiko_device_type = "mikrotik_routeros"
    paging_command = None
    login_suffix = "+ct511w4098h"
    logout_command = "/quit"
    running_config_command = "export"
    prompt_start = r"\[?"
    prompt_end = r"[>#\]]"
    error_pattern: ClassVar[str] = (
        r"^\s*(bad command name .*|syntax error .*|expected end of command .*|no such item.*|failure: .*"
        r"|input does not match any value .*)$"
    )
    # `export` begins with "# nov/23/2026 09:12:44 by RouterOS 7.12" (the time of the export, every time).
    volatile_config = (r"^# \S+ \S+ by RouterOS .*$",)
    # /ppp secret add name=u password=p; /user add name=x password=...; wpa2-pre-shared-key=; /snmp community
    # set [ find default=yes ] name=public; authentication-password=, encryption-password=; /interface
    # wireguard private-key="..."; secret= (RADIUS, IPsec)
    mask_patterns = (
        r"(?i)(?<![\w-])(?:password|secret|[\w-]*-key|key|authentication-password|encryption-password"
        r"|passphrase)=(?P<s>\"[^\"\n]*\"|\S+)",
        # SNMP communities are names: `name=` matters only in the /snmp community section, whose lines follow
        # its header in an export. Each pass masks the next unmasked one (a tag is skipped), so the pattern is
        # listed once per community a router plausibly has.
        *(
            [
                r"(?m)^/snmp community(?: (?:add|set)\b[^\n]*)?\n(?:(?:add|set)\b[^\n]*\bname=<masked:[0-9a-f]{8}>"
                r"[^\n]*\n)*(?:add|set)\b[^\n]*?\bname=(?P<s>[^\s<]\S*)"
            ]
            * 8
        ),
        r"(?m)^/snmp community (?:add|set)\b[^\n]*?\bname=(?P<s>[^\s<]\S*)",
    )
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(
            ("interface print terse without-paging",),
            _interfaces,
        ),
        "neighbors": Getter(
            ("ip neighbor print terse without-paging",),
            lambda o: [
                {
                    "local_interface": r["interface"],
                    "neighbor": r["identity"],
                    "neighbor_interface": r["interface_name"],
                    "protocol": "lldp",
                }
                for r in own("mikrotik_routeros_ip_neighbor_print_terse", o["ip neighbor print terse without-paging"])
            ],
        ),
        "bgp": Getter(("routing bgp peer print status without-paging",), _bgp),
        "ospf": Getter(("routing ospf neighbor print terse without-paging",), _ospf),
        "routes": Getter(("ip route print terse without-paging",), _routes),
        "health": Getter(("system resource print",), _health),
        "logs": Getter(("log print detail without-paging",), _logs),
    }

    def prepare_session(self, session: Any) -> None:
        """Wait for ``] >`` and learn the prompt; no paging command exists (see the class docstring)."""
        session._test_channel_read(pattern=r"[>\]]")
        session.set_base_prompt()
