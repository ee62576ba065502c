"""What a received SNMP notification means: a :class:`TrapEvent`, and the findings made from it.

Standard traps (RFC 3418/2863: coldStart, warmStart, linkDown, linkUp, authenticationFailure) are
recognised by their numeric snmpTrapOID; anything else is an "unknown" trap whose OID is the subject.
Link and restart traps use the same check ids as the SNMP poller's rules (``snmp_interface_down``,
``snmp_device_rebooted``) with the same subject, so a trap and a poll of the same condition share a
fingerprint and the incident engine sees one condition, not two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from diag.model import Evidence, Finding, Severity

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"
SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
SNMP_TRAPS = "1.3.6.1.6.3.1.1.5"  # snmpTraps: .1 coldStart ... .6 egpNeighborLoss

#: snmpTrapOID value -> name.
STANDARD_TRAPS: dict[str, str] = {
    f"{SNMP_TRAPS}.1": "coldStart",
    f"{SNMP_TRAPS}.2": "warmStart",
    f"{SNMP_TRAPS}.3": "linkDown",
    f"{SNMP_TRAPS}.4": "linkUp",
    f"{SNMP_TRAPS}.5": "authenticationFailure",
    f"{SNMP_TRAPS}.6": "egpNeighborLoss",
}
UNKNOWN = "unknown"

IF_INDEX = "1.3.6.1.2.1.2.2.1.1."
IF_DESCR = "1.3.6.1.2.1.2.2.1.2."
IF_ADMIN_STATUS = "1.3.6.1.2.1.2.2.1.7."
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8."
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1."

#: name -> (check, default severity). Unknown traps: ``snmp_trap``, info.
KINDS: dict[str, tuple[str, Severity]] = {
    "linkDown": ("snmp_interface_down", "warning"),
    "linkUp": ("snmp_interface_up", "info"),
    "coldStart": ("snmp_device_rebooted", "warning"),
    "warmStart": ("snmp_device_rebooted", "warning"),
    "authenticationFailure": ("snmp_auth_failure", "warning"),
    "egpNeighborLoss": ("snmp_egp_neighbor_loss", "warning"),
    UNKNOWN: ("snmp_trap", "info"),
}

#: One varbind as shown: (numeric OID, type name, value as text).
ShownVar = tuple[str, str, str]


def v1_trap_oid(enterprise: str, generic: int, specific: int) -> str:
    """RFC 3584 3.1: the snmpTrapOID of a v1 trap."""
    if 0 <= generic < 6:
        return f"{SNMP_TRAPS}.{generic + 1}"
    return f"{enterprise}.0.{specific}"


@dataclass(slots=True)
class TrapEvent:
    """One notification as received (v1 traps already in their v2 form, RFC 3584)."""

    source: str
    port: int
    version: str  # "1", "2c", "3"
    kind: str  # "trap" or "inform"
    trap_oid: str
    varbinds: list[ShownVar]
    host: str = ""  # the inventory host it came from, else the source address
    uptime: int | None = None  # sysUpTime.0 in hundredths of a second
    user: str = ""  # v3 user (never a community: that is a secret)
    context: str = ""
    engine_id: str = ""  # hex
    agent_address: str = ""  # v1 agent-addr or snmpTrapAddress.0
    received_at: float = field(default_factory=time.time)

    @property
    def trap(self) -> str:
        return STANDARD_TRAPS.get(self.trap_oid, UNKNOWN)

    def value(self, prefix: str) -> tuple[str, str] | None:
        """(index suffix, value) of the first varbind under ``prefix`` (a column OID ending in a dot)."""
        for oid, _, text in self.varbinds:
            if oid.startswith(prefix):
                return oid[len(prefix) :], text
        return None

    def interface(self) -> tuple[str, str]:
        """(subject, description) of a link trap: ifName if sent, else the ifIndex (as the poller names rows)."""
        name = self.value(IF_NAME)
        index = self.value(IF_INDEX)
        descr = self.value(IF_DESCR)
        idx = index[1] if index else (name or descr or self.value(IF_OPER_STATUS) or ("", ""))[0]
        subject = name[1] if name and name[1] else idx
        parts = [f"ifIndex {idx}" if idx else ""] + ([descr[1]] if descr and descr[1] != subject else [])
        return subject or "?", ", ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "received_at": self.received_at,
            "source": self.source,
            "port": self.port,
            "host": self.host,
            "version": self.version,
            "kind": self.kind,
            "trap": self.trap,
            "trap_oid": self.trap_oid,
            "uptime": self.uptime,
            "user": self.user,
            "context": self.context,
            "engine_id": self.engine_id,
            "agent_address": self.agent_address,
            "varbinds": [{"oid": o, "type": t, "value": v} for o, t, v in self.varbinds],
        }

    def evidence(self) -> Evidence:
        lines = [f".{o} = {t}: {v}" for o, t, v in self.varbinds]
        who = f"user {self.user}" if self.user else f"v{self.version}"
        title = f"SNMP {self.kind} {self.trap} ({self.trap_oid}) from {self.source}:{self.port}, {who}"
        data = {k: v for k, v in self.to_dict().items() if k != "varbinds" and v not in ("", None)}
        data["varbinds"] = [list(v) for v in self.varbinds]
        return Evidence("text", title, "\n".join(lines), data)

    def findings(self, severities: dict[str, Severity] | None = None) -> list[Finding]:
        """The findings this event makes: one per trap (severity overridable by trap OID or name)."""
        name = self.trap
        check, severity = KINDS.get(name, KINDS[UNKNOWN])
        override = (severities or {}).get(self.trap_oid) or (severities or {}).get(name)
        who = self.host or self.source
        subject = ""
        labels = {"source": "snmp_trap", "trap": name, "trap_oid": self.trap_oid}
        if name in ("linkDown", "linkUp"):
            subject, descr = self.interface()
            admin = self.value(IF_ADMIN_STATUS)
            oper = self.value(IF_OPER_STATUS)
            states = []
            if oper:
                states.append(f"oper {_status(oper[1])}")
            if admin:
                states.append(f"admin {_status(admin[1])}")
            detail = f" ({', '.join([descr, *states] if descr else states)})" if descr or states else ""
            if name == "linkDown":
                summary = f"{who}: interface {subject} went down{detail}"
                if admin and admin[1] == "2":  # shut down on purpose: worth knowing, not worth waking anyone
                    severity = "info"
                    summary = f"{who}: interface {subject} was shut down (admin down){detail}"
            else:
                summary = f"{who}: interface {subject} came up{detail}"
                labels["resolves"] = "snmp_interface_down"
        elif name in ("coldStart", "warmStart"):
            summary = f"{who}: device restarted ({name} trap)"
        elif name == "authenticationFailure":
            summary = f"{who}: the device refused an SNMP request with wrong credentials (authenticationFailure trap)"
        elif name == UNKNOWN:
            subject = self.trap_oid
            summary = f"{who}: trap {self.trap_oid} ({len(self.varbinds) - 2} varbinds)"
        else:
            summary = f"{who}: {name} trap"
        f = Finding(check, override or severity, summary, subject, evidence=[self.evidence()], host=who, labels=labels)
        f.observed_at = self.received_at
        return [f]


def _status(value: str) -> str:
    return {"1": "up", "2": "down", "3": "testing", "5": "dormant", "6": "notPresent", "7": "lowerLayerDown"}.get(
        value, value
    )
