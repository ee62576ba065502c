"""Device getters: one vendor-neutral record shape per kind of state, read with each platform's own commands.

A playbook step ``get: interfaces`` asks the device's driver for its interfaces; the driver knows which commands
show them on its platform and how to turn their output into the records below (TextFSM through the
``ntc-templates`` package where it has the template, diag's own templates in ``templates/`` where it has none).
The playbooks then check the same fields with the same check ids on every platform, so incidents, the knowledge
base and reports never need per-vendor code.

Records (``None`` where the platform does not show a value; a check on a missing value does not fire):

- ``interfaces``: a mapping name -> ``{name, admin_up, oper_up, description, in_errors, out_errors, in_discards,
  out_discards, errors, duplex ('full'|'half'|None), speed_mbps, flaps, protodown}``; ``errors`` is the sum of
  the error and discard counters shown, ``flaps`` the link-down / carrier-transition counter.
- ``neighbors``: CDP/LLDP neighbours, a list of ``{local_interface, neighbor, neighbor_interface, protocol}``.
- ``bgp``: a list of ``{neighbor, remote_as, state, established, prefixes, vrf}``.
- ``ospf``: a list of ``{neighbor_id, state, role, interface, address}`` (state: Full, 2-Way, Init, ExStart,
  Exchange, Loading, Attempt, Down; role: DR, BDR, DROther or ``-``).
- ``routes``: a list of ``{prefix, protocol, selected, installed}``.
- ``health``: ``{cpu_percent, memory_percent, temperatures: [{sensor, celsius, ok}], fans: [{name, ok}],
  psus: [{name, ok}]}``.
- ``logs``: the device's recent log lines, a list of ``{time, severity (0-7 or None), facility, text}``.
"""

from __future__ import annotations

import io
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from diag.remote.parsers import ParseError

#: The getter names a playbook may use in ``get:`` (defined with the playbook model, which validates them).
from diag.remote.ssh import CommandResult

TEMPLATES = Path(__file__).resolve().parent / "templates"

Outputs = Mapping[str, str]
Records = Any


@dataclass(frozen=True, slots=True)
class Getter:
    """The commands a platform shows one kind of state with, and the function that turns their outputs into records.

    ``optional`` commands may be rejected by a device (a model without a fan tray, a feature not licensed)
    without failing the getter; their output is then ``""``.
    """

    commands: tuple[str, ...]
    parse: Callable[[Outputs], Records]
    optional: frozenset[str] = field(default_factory=frozenset)


class _Runs(Protocol):
    def __call__(self, command: str, timeout: float | None = None, sudo: bool = False) -> CommandResult: ...


@dataclass(slots=True)
class GetResult:
    """What a ``get:`` step returns to the playbook runner: a command result plus the records."""

    command: str
    exit_status: int | None
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool = False
    timed_out: bool = False
    parsed: Records = None
    #: The device does not know any of the getter's commands (another software version, a model without the
    #: feature): the playbook step is not applicable to this device, rather than failed.
    unsupported: bool = False


def collect(
    where: str,
    device_type: str,
    getters: Mapping[str, Getter],
    name: str,
    run: _Runs,
    timeout: float | None,
    unsupported: re.Pattern[str] | None = None,
) -> GetResult:
    """Run the getter ``name``'s commands through ``run`` and parse them; a failed command fails the step.

    A command the device does not know (its error line matches ``unsupported``: ``% Invalid input detected``
    on an IOS release without it) is read as showing nothing, like an optional one, and the others are still
    parsed (an old IOS without ``show processes memory sorted`` still has its CPU checked); when the device knows
    none of them the result is ``unsupported`` (the step is not applicable to this device). Any other refusal
    (``% BGP not active``, ``ospfd is not running``) fails the step with the device's line.

    The evidence (stdout) is every command's output under a ``### command`` line. ParseError when the output
    does not fit the platform's template (the step becomes ``error`` with that reason).
    """
    getter = getters.get(name)
    if getter is None:
        return GetResult(f"get {name}", 1, "", f"{device_type} shows no {name} (no command for it in its driver)", 0.0)
    shown = "; ".join(getter.commands)
    start = time.monotonic()
    outputs: dict[str, str] = {}
    parts: list[str] = []
    unknown: list[str] = []
    for cmd in getter.commands:
        res = run(cmd, timeout)
        parts.append(f"### {res.command}\n{res.stdout}")
        if res.timed_out:
            return GetResult(shown, None, "\n".join(parts), res.stderr, time.monotonic() - start, timed_out=True)
        if res.exit_status != 0:
            if unsupported is not None and unsupported.search(res.stderr or res.stdout):
                unknown.append(f"`{res.command}`: {res.stderr}")
                outputs[cmd] = ""
                continue
            if cmd in getter.optional:
                outputs[cmd] = ""
                continue
            return GetResult(shown, res.exit_status, "\n".join(parts), res.stderr, time.monotonic() - start)
        outputs[cmd] = res.stdout
    if unknown and len(unknown) == len(getter.commands):
        note = f"{device_type} here does not know " + "; ".join(unknown)
        return GetResult(shown, 1, "\n".join(parts), note, time.monotonic() - start, unsupported=True)
    try:
        parsed = getter.parse(outputs)
    except ParseError as e:
        raise ParseError(f"{where}: get {name}: {e}") from None
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as e:
        # A template that matched but lacks a field the driver reads: output of another software version.
        raise ParseError(f"{where}: get {name}: unexpected output ({type(e).__name__}: {e})") from None
    note = ("not shown by this device: " + "; ".join(unknown)) if unknown else ""
    return GetResult(shown, 0, "\n".join(parts), note, time.monotonic() - start, parsed=parsed)


# ---- parsing helpers shared by the platform modules


def ntc(platform: str, command: str, text: str) -> list[dict[str, Any]]:
    """Rows of ``text`` parsed with the ntc-templates template for (platform, command); ParseError otherwise."""
    if not text.strip():
        return []
    from ntc_templates.parse import parse_output  # type: ignore[import-untyped]

    try:
        rows = parse_output(platform=platform, command=command, data=text)
    except Exception as e:  # textfsm.TextFSMError, or no template in the index: one line for the step
        raise ParseError(f"ntc-templates {platform} `{command}`: {' '.join(str(e).split())[:200]}") from None
    return [{k.lower(): v for k, v in r.items()} for r in rows]


@cache
def _template_source(name: str) -> str:
    return (TEMPLATES / f"{name}.textfsm").read_text()


def own(name: str, text: str) -> list[dict[str, Any]]:
    """Rows of ``text`` parsed with diag's own template ``templates/NAME.textfsm`` (where ntc-templates has none)."""
    import textfsm

    if not text.strip():
        return []
    fsm = textfsm.TextFSM(io.StringIO(_template_source(name)))
    try:
        rows = fsm.ParseText(text)
    except textfsm.TextFSMError as e:
        raise ParseError(f"template {name}: {' '.join(str(e).split())[:200]}") from None
    return [dict(zip([h.lower() for h in fsm.header], r, strict=True)) for r in rows]


def num(value: Any) -> int | None:
    """An integer from a counter cell: "1,234" -> 1234, "" / "-" / "N/A" -> None."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).replace(",", "").strip()
    m = re.match(r"^-?\d+", text)
    return int(m.group(0)) if m else None


def fnum(value: Any) -> float | None:
    """A number from a cell such as "12%", "45.5 C", "" -> None."""
    if value is None:
        return None
    m = re.match(r"^\s*(-?\d+(?:\.\d+)?)", str(value))
    return float(m.group(1)) if m else None


def total(*values: int | None) -> int | None:
    """The sum of the counters that are shown; None when none is."""
    shown = [v for v in values if v is not None]
    return sum(shown) if shown else None


def up(value: Any) -> bool | None:
    """An interface state word as up (True) / down (False) / unknown (None)."""
    if value is None or str(value).strip() == "":
        return None
    v = str(value).strip().lower()
    if v.startswith(("up", "connected", "enabled", "enable", "running")) or v in ("r", "yes", "true"):
        return True
    if "admin" in v and "down" in v:
        return False
    # EOS: "notpresent" (no transceiver), "lowerlayerdown" (a LAG or VLAN whose members are down); "dormant".
    if v.startswith(
        (
            "down",
            "disabled",
            "disable",
            "notconnect",
            "not connect",
            "err",
            "*down",
            "deleted",
            "notpresent",
            "lowerlayerdown",
            "dormant",
        )
    ):
        return False
    return None


def duplex(value: Any) -> str | None:
    v = str(value or "").strip().lower()
    if "half" in v or v in ("h", "a-half"):
        return "half"
    if "full" in v or v in ("f", "a-full"):
        return "full"
    return None


_SPEED = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*(g|m|k)?(?:b(?:it|ps|/s)?)?")


def speed_mbps(value: Any) -> int | None:
    """A speed cell as Mbit/s: "1000Mb/s", "a-1000", "10G", "10Gbps", "100M", "1000000 Kbit" -> 1000..."""
    text = str(value or "").strip().lower().removeprefix("a-")
    if not text or text in ("auto", "unknown", "--", "-"):
        return None
    m = _SPEED.search(text)
    if not m:
        return None
    n = float(m.group(1))
    unit = (m.group(2) or "m").lower()
    return int(n * 1000) if unit == "g" else int(n / 1000) if unit == "k" else int(n)


_OSPF_STATES = {
    "full": "Full",
    "2way": "2-Way",
    "2-way": "2-Way",
    "init": "Init",
    "exstart": "ExStart",
    "exchange": "Exchange",
    "loading": "Loading",
    "attempt": "Attempt",
    "down": "Down",
}


def ospf_state(text: str) -> tuple[str, str]:
    """``"FULL/DR"`` / ``"Full"`` / ``"2WAY/DROTHER"`` -> (canonical state, role)."""
    state, _, role = str(text).strip().partition("/")
    canon = _OSPF_STATES.get(state.strip().lower().replace(" ", ""), state.strip())
    r = role.strip().upper()
    role_out = {"DR": "DR", "BDR": "BDR", "BACKUP": "BDR", "DROTHER": "DROther", "-": "-", "": "-"}.get(r, role.strip())
    return canon, role_out


def prefix(network: str, length: Any = None) -> str:
    """A route's prefix in one spelling: "10.0.0.0", 24 -> "10.0.0.0/24"; "0.0.0.0/0" kept; "default" -> 0/0."""
    net = str(network).strip()
    if net.lower() == "default":
        return "0.0.0.0/0"
    if "/" not in net and length not in (None, ""):
        net = f"{net}/{length}"
    try:
        return str(ipaddress.ip_network(net, strict=False))
    except ValueError:
        return net


def asn(value: Any) -> int | None:
    """An AS number in asplain ("65001", "4259844944") or asdot ("65000.1000" = 65000 * 65536 + 1000) notation.

    IOS prints asdot when ``bgp asnotation dot`` is configured (ntc-templates' fixture ``..._with_dot_peer_as``);
    reading it as a plain counter gave 65000 for every peer of AS 65000.x.
    """
    text = str(value or "").strip()
    high, dot, low = text.partition(".")
    if dot and high.isdigit() and low.isdigit():
        return int(high) * 65536 + int(low)
    return num(text)


def bgp_row(neighbor: str, remote_as: Any, state_or_prefixes: str, vrf: str = "default") -> dict[str, Any]:
    """A BGP record from a summary row whose last column is a prefix count once Established, else the state."""
    s = str(state_or_prefixes).strip()
    # A count ("7", "3/5" on some releases, "1." as one NX-OS printed it) means Established; states are words
    # (Idle, Active, Connect, OpenSent, OpenConfirm, "Idle (Admin)", "Idle(NoIf)").
    established = s[:1].isdigit() or s.lower() == "established"
    return {
        "neighbor": neighbor,
        "remote_as": asn(remote_as),
        "state": "Established" if established else s,
        "established": established,
        "prefixes": num(s.split("/")[0]) if established else None,
        "vrf": vrf or "default",
    }


def by_name(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Interface records keyed by name (what the interface checks index into between two samples)."""
    return {r["name"]: r for r in rows}


def interface(
    name: str,
    admin_up: bool | None,
    oper_up: bool | None,
    *,
    description: str = "",
    in_errors: Any = None,
    out_errors: Any = None,
    in_discards: Any = None,
    out_discards: Any = None,
    duplex_: Any = None,
    speed: Any = None,
    flaps: Any = None,
    protodown: bool = False,
) -> dict[str, Any]:
    """One interface record (see the module docstring)."""
    ie, oe, idc, odc = num(in_errors), num(out_errors), num(in_discards), num(out_discards)
    return {
        "name": name,
        "admin_up": admin_up,
        "oper_up": oper_up,
        "description": (description or "").strip(),
        "in_errors": ie,
        "out_errors": oe,
        "in_discards": idc,
        "out_discards": odc,
        "errors": total(ie, oe, idc, odc),
        "duplex": duplex(duplex_),
        "speed_mbps": speed_mbps(speed) if not isinstance(speed, int) else speed,
        "flaps": num(flaps),
        "protodown": protodown,
    }


_SYSLOG = {
    "emerg": 0,
    "emergency": 0,
    "emergencies": 0,
    "alert": 1,
    "alerts": 1,
    "crit": 2,
    "critical": 2,
    "err": 3,
    "error": 3,
    "errors": 3,
    "warning": 4,
    "warnings": 4,
    "warn": 4,
    "notice": 5,
    "notifications": 5,
    "info": 6,
    "informational": 6,
    "debug": 7,
    "debugging": 7,
}


def severity(value: Any) -> int | None:
    """A syslog severity from a number ("3") or a word ("error", "critical", "warning")."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if v.isdigit():
        return int(v)
    return _SYSLOG.get(v)


def health(
    cpu: Any = None,
    memory: Any = None,
    temperatures: Iterable[dict[str, Any]] = (),
    fans: Iterable[dict[str, Any]] = (),
    psus: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "cpu_percent": fnum(cpu),
        "memory_percent": round(float(memory), 1) if isinstance(memory, int | float) else fnum(memory),
        "temperatures": list(temperatures),
        "fans": list(fans),
        "psus": list(psus),
    }


def status_ok(value: Any) -> bool | None:
    """A hardware status word as fine (True) / failed (False) / not shown (None)."""
    v = str(value or "").strip().lower()
    if not v:
        return None
    if any(w in v for w in ("fail", "fault", "critical", "alarm", "absent", "not ok", "notok", "bad", "error")):
        return False
    # Cisco's temperature states: GREEN fine, YELLOW over the warning threshold, RED over the critical one.
    return v not in ("off", "shutdown", "down", "notpresent", "not present", "abnormal", "no", "red", "yellow")
