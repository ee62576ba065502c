"""HPE Comware (H3C; device_type ``hp_comware``), on netmiko's ``hp_comware`` class."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from diag.network.devices._cisco import cisco_routes
from diag.network.devices.base import Driver
from diag.network.devices.getters import (
    Getter,
    Outputs,
    bgp_row,
    by_name,
    health,
    interface,
    ntc,
    ospf_state,
    own,
    severity,
    up,
)
from diag.network.devices.registry import DRIVERS

P = "hp_comware"


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # Counters from diag's own template over the same output (ntc's reads none); "Unknown-speed mode,
    # unknown-duplex mode" on a port without transceiver gives None for both.
    text = out["display interface"]
    counters = {r["interface"]: r for r in own("hp_comware_display_interface_errors", text)}
    recs = []
    for r in ntc(P, "display interface", text):
        c = counters.get(r["interface"], {})
        recs.append(
            interface(
                r["interface"],
                "admin" not in r["line_status"].lower(),
                up(r["protocol_status"]),
                description=r.get("description", ""),
                in_errors=c.get("input_errors") or r.get("input_errors") or None,
                out_errors=c.get("output_errors") or r.get("output_errors") or None,
                duplex_=r.get("duplex"),
                speed=r.get("speed"),
            )
        )
    return by_name(recs)


def _lldp(out: Outputs) -> list[dict[str, Any]]:
    """`display lldp neighbor-information list`: a System Name longer than its 20-character column wraps onto the
    next line, which ntc's template skips (the name was cut to 20 characters)::

        System Name          Local Interface Chassis ID      Port ID
        SEP0000000000A0.exam GE1/0/24        10.1.2.3        AABBCCDDEEFF:P1
        ple.com
    """
    lines: list[str] = []
    for line in out["display lldp neighbor-information list"].splitlines():
        if lines and re.fullmatch(r"\S+", line) and len(lines[-1].split()) >= 4 and not lines[-1].startswith("System"):
            first, rest = lines[-1].split(None, 1)
            lines[-1] = f"{first}{line} {rest}"
            continue
        lines.append(line)
    return [
        {
            "local_interface": r["local_interface"],
            "neighbor": r["neighbor_name"],
            "neighbor_interface": r["neighbor_interface"],
            "protocol": "lldp",
        }
        for r in ntc(P, "display lldp neighbor-information list", "\n".join(lines) + "\n")
    ]


def _ospf(out: Outputs) -> list[dict[str, Any]]:
    recs = []
    for r in own("hp_comware_display_ospf_peer", out["display ospf peer"]):
        state, role = ospf_state(r["state"])
        recs.append(
            {
                "neighbor_id": r["neighbor_id"],
                "state": state,
                "role": role,
                "interface": r["interface"],
                "address": r["address"],
            }
        )
    return recs


def _health(out: Outputs) -> dict[str, Any]:
    cpu = own("hp_comware_display_cpu-usage", out["display cpu-usage"])
    mem = own("hp_comware_display_memory", out["display memory"])
    # Temperature, fans and power supplies (`display environment`, `display fan`, `display power`) are not read
    # yet: no recorded output of them was at hand to write templates against.
    return health(
        cpu[0]["cpu_5min"] if cpu else None,
        100 - float(mem[0]["free_ratio"]) if mem else None,
    )


@DRIVERS.register("hp_comware")
class HpComware(Driver):
    """Comware user view ``<sw-1>``; ``screen-length disable`` turns paging off. Errors::

    <sw-1>display bogus
                  ^
     % Unrecognized command found at '^' position.
    """

    device_type = "hp_comware"
    netmiko_device_type = "hp_comware"
    paging_command = "screen-length disable"
    logout_command = "quit"
    running_config_command = "display current-configuration"
    prompt_start = r"[<\[]?"
    prompt_end = r"[>\]#]"
    error_pattern: ClassVar[str] = (
        r"^\s*% ?(Unrecognized command|Incomplete command|Wrong parameter|Too many parameters"
        r"|Ambiguous command).*$|^\s*Info: .*not (enabled|configured|exist).*$"
    )
    volatile_config = (r"^ ?#?\s*(Last configuration|Time): .*$",)
    # local-user admin / password hash $h$6$...; snmp-agent community read simple public;
    # snmp-agent usm-user v3 u g authentication-mode sha cipher $c$3$... privacy-mode aes128 cipher $c$3$...
    mask_patterns = (
        r"(?i)(?<![\w-])password\s+(?:hash|cipher|simple)\s+(?P<s>\S+)",
        r"(?i)(?<![\w-])community\s+(?:read|write)\s+(?:cipher\s+|simple\s+)?(?P<s>\S+)",
        r"(?i)(?<![\w-])(?:authentication-mode|privacy-mode)\s+\S+(?:\s+\d+)?\s+(?:cipher|simple)\s+(?P<s>\S+)",
        r"(?i)(?<![\w-])(?:key|pre-shared-key)\s+(?:authentication\s+)?(?:cipher|simple)\s+(?P<s>\S+)",
    )
    getters: ClassVar[dict[str, Getter]] = {
        "interfaces": Getter(("display interface",), _interfaces),
        "neighbors": Getter(("display lldp neighbor-information list",), _lldp),
        "bgp": Getter(
            ("display bgp peer ipv4",),
            lambda o: [
                bgp_row(
                    r["peer"],
                    r["remote_asn"],
                    r["prefixes_received"] if r["state"].lower() == "established" else r["state"],
                )
                for r in ntc(P, "display bgp peer ipv4", o["display bgp peer ipv4"])
            ],
        ),
        "ospf": Getter(("display ospf peer",), _ospf),
        "routes": Getter(
            ("display ip routing-table",),
            lambda o: [r for r in cisco_routes(ntc(P, "display ip routing-table", o["display ip routing-table"]))],
        ),
        "health": Getter(
            ("display cpu-usage", "display memory"),
            _health,
        ),
        "logs": Getter(
            ("display logbuffer",),
            lambda o: [
                {
                    "time": r["time"],
                    "severity": severity(r["severity"]),
                    "facility": r["module"],
                    "text": f"{r['module']}/{r['severity']}/{r['brief']}: {r['message']}",
                }
                for r in own("huawei_vrp_display_logbuffer", o["display logbuffer"])
            ],
        ),
    }

    def prepare_session(self, session: Any) -> None:
        """netmiko's Comware preparation ("Press Y or ENTER to continue" banner, base prompt, paging off)."""
        self.netmiko_preparation(session)
