"""FRRouting's vtysh as the login shell of an SSH user (device_type ``frr``).

netmiko has no FRR device type. vtysh is Cisco-like (``show running-config``, ``configure terminal``,
``terminal length 0``, ``write memory``, ``end``), so the session underneath is netmiko's ``cisco_ios`` class with
the differences below overridden. Tested against Debian 12's frr 8.4.4 (tests/labs/frrlab.py).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from netmiko import BaseConnection

from diag.network.devices.base import Driver
from diag.network.devices.getters import Getter, Outputs, bgp_row, by_name, interface, num, ospf_state, own, prefix
from diag.network.devices.registry import DRIVERS

# `show running-config` starts with two lines that are not configuration:
#
#   Building configuration...
#
#   Current configuration:
#   !
#   frr version 8.4.4
#   frr defaults traditional
#   hostname r1
_CONFIG_PREAMBLE = re.compile(r"\A\s*Building configuration\.\.\.\s*\n(\s*\n)*\s*Current configuration:\s*\n")


def _interfaces(out: Outputs) -> dict[str, dict[str, Any]]:
    # zebra prints no error counters on Linux; "Link downs" is the flap counter. "Interface X is down" with no
    # line protocol part is admin down (templates/frr_show_interface.textfsm has the sample).
    rows = own("frr_show_interface", out["show interface"])
    return by_name(
        interface(
            r["interface"],
            r["admin_state"] == "up",
            r["link_state"] == "up" if r["admin_state"] == "up" else False,
            description=r["description"],
            speed=num(r["speed"]),
            flaps=r["link_downs"],
            protodown=r["protodown"] == "on",
        )
        for r in rows
    )


def _bgp(out: Outputs) -> list[dict[str, Any]]:
    rows = own("frr_show_bgp_summary", out["show bgp summary"])
    return [{**bgp_row(r["neighbor"], r["remote_as"], r["state_pfxrcd"], r["vrf"]), "afi": r["afi"]} for r in rows]


def _ospf(out: Outputs) -> list[dict[str, Any]]:
    recs = []
    for r in own("frr_show_ip_ospf_neighbor", out["show ip ospf neighbor"]):
        state, _ = ospf_state(r["state"])
        recs.append(
            {
                "neighbor_id": r["neighbor_id"],
                "state": state,
                "role": r["role"],
                "interface": r["interface"],
                "address": r["address"],
            }
        )
    return recs


def _routes(out: Outputs) -> list[dict[str, Any]]:
    return [
        {
            "prefix": prefix(r["prefix"]),
            "protocol": r["protocol"],
            "selected": r["selected"] == ">",
            "installed": r["fib"] == "*",
        }
        for r in own("frr_show_ip_route", out["show ip route"])
    ]


@DRIVERS.register("frr")
class FrrVtysh(Driver):
    """vtysh over SSH. A member of the ``frrvty`` group gets the privileged prompt (``r1#``) at once."""

    device_type = "frr"
    netmiko_device_type = "cisco_ios"
    # vtysh answers a command it does not know, or one for a daemon that is not running, like this:
    #
    #   r1# show foo
    #   % Unknown command: show foo
    #   r1# show ip
    #   % Command incomplete: show ip
    #   r1# show ip ospf neighbor
    #   ospfd is not running
    #
    # The last one has no "%": a playbook step for OSPF on a router without ospfd is a failed step, not an
    # empty table (which would read as "no neighbours" and hide that OSPF is not running at all).
    error_pattern: ClassVar[str] = (
        r"^(% ?(Unknown command|Command incomplete|Ambiguous command|No such|Can't|Invalid|There is no).*"
        r"|\S+d is not running)$"
    )
    # vtysh has no CDP/LLDP (lldpd is a separate daemon), no CPU/fan/PSU view and no log buffer: those getters
    # are absent and their playbook steps say "not checked" rather than "fine".
    getters = {
        "interfaces": Getter(("show interface",), _interfaces),
        "bgp": Getter(("show bgp summary",), _bgp),
        "ospf": Getter(("show ip ospf neighbor",), _ospf),
        "routes": Getter(("show ip route",), _routes),
    }

    def prepare_session(self, session: BaseConnection) -> None:
        """vtysh greets before the first prompt, and knows no ``terminal width``.

        After login vtysh prints a banner, then the prompt (hostname + ``#``)::

            Hello, this is FRRouting (version 8.4.4).
            Copyright 1996-2005 Kunihiro Ishiguro, et al.

            r1#

        netmiko's IOS preparation sends ``terminal width 511`` first, which vtysh rejects
        (``% Unknown command: terminal width 511``) while netmiko waits for its echo pattern; vtysh output is not
        wrapped anyway, so only the prompt is learned and paging turned off (``terminal length 0``).
        """
        session._test_channel_read(pattern=r"[>#]\s*$")
        session.set_base_prompt()
        if self.paging_command:
            session.disable_paging(command=self.paging_command)

    def clean_config(self, text: str) -> str:
        """Drop the ``Building configuration...`` / ``Current configuration:`` preamble (not configuration)."""
        return _CONFIG_PREAMBLE.sub("", text, count=1).strip("\n") + "\n"
