"""Parsing shared by the Cisco-like platforms (IOS, NX-OS, IOS-XR, Arista EOS, Eltex): the same column layouts."""

from __future__ import annotations

from typing import Any

from diag.network.devices.getters import bgp_row, num, ospf_state, prefix, severity

#: ``show running-config`` lines that change with no configuration change (IOS, NX-OS, XR, EOS, Eltex). Samples:
#:   Building configuration...
#:   Current configuration : 4212 bytes
#:   ! Last configuration change at 09:12:44 UTC Mon Nov 23 2026 by netops
#:   ! NVRAM config last updated at 09:12:50 UTC Mon Nov 23 2026 by netops
#:   !Command: show running-config                          (NX-OS)
#:   !Running configuration last done at: Mon Nov 23 09:12:44 2026   (NX-OS)
#:   !Time: Mon Nov 23 09:13:01 2026                        (NX-OS)
#:   Mon Nov 23 09:13:01.123 UTC                            (IOS-XR prints the time before every output)
#:   !! Last configuration change at Mon Nov 23 09:12:44 2026 by netops   (IOS-XR)
#:   ! Time: Mon Nov 23 09:13:01 2026                       (Arista EOS)
#:   ntp clock-period 17179860                             (IOS: rewritten by the clock discipline)
CISCO_VOLATILE = (
    r"^Building configuration\.\.\.\s*$",
    r"^Current configuration\s*:.*$",
    r"^!+ ?Last configuration change at .*$",
    r"^! NVRAM config last updated at .*$",
    r"^!Command: show running-config.*$",
    r"^!Running configuration last done at: .*$",
    r"^! ?Time: .*$",
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d+ [\d:.]+ \S+$",
    r"^ntp clock-period \d+$",
)


def cisco_bgp(rows: list[dict[str, Any]], neigh: str, asn: str, state: str) -> list[dict[str, Any]]:
    return [bgp_row(r[neigh], r[asn], r[state], r.get("vrf") or "default") for r in rows]


def cisco_ospf(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        state, role = ospf_state(r["state"].replace(" ", ""))
        out.append(
            {
                "neighbor_id": r["neighbor_id"],
                "state": state,
                "role": role,
                "interface": r.get("interface", ""),
                "address": r.get("ip_address", ""),
            }
        )
    return out


def cisco_routes(
    rows: list[dict[str, Any]], net: str = "network", length: str = "prefix_length"
) -> list[dict[str, Any]]:
    """Route rows; a prefix with several next hops is one route (selected: the table shows only best paths)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        if (r.get("vrf") or "default") != "default":  # the global table only (NX-OS lists every VRF's)
            continue
        p = prefix(r[net], r.get(length))
        seen.setdefault(p, {"prefix": p, "protocol": r.get("protocol", ""), "selected": True, "installed": None})
    return list(seen.values())


def neighbors(rows: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    return [
        {
            "local_interface": r.get("local_interface", ""),
            "neighbor": _name(r.get("neighbor_name", "")),
            "neighbor_interface": r.get("neighbor_interface", ""),
            "protocol": protocol,
        }
        for r in rows
    ]


def _name(n: str) -> str:
    """CDP names carry the serial in brackets on NX-OS (``sw1(FOC213230KP)``): the system name is before it."""
    return n.split("(", 1)[0].strip()


def cisco_logs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``%FACILITY-SEVERITY-MNEMONIC: text`` syslog lines (IOS, NX-OS, XR, EOS all write this form)."""
    out = []
    for r in rows:
        msg = r.get("message", "")
        text = " ".join(msg) if isinstance(msg, list) else str(msg)
        when = " ".join(str(r.get(k, "")) for k in ("month", "day", "time") if r.get(k))
        out.append(
            {
                "time": when,
                "severity": severity(r.get("severity")),
                "facility": r.get("facility", ""),
                "text": f"%{r.get('facility', '')}-{r.get('severity', '')}-{r.get('mnemonic', '')}: {text}",
            }
        )
    return out


def percent(used: Any, total_: Any) -> float | None:
    u, t = num(used), num(total_)
    return round(100.0 * u / t, 1) if u is not None and t else None
