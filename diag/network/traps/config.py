"""The trap receiver's settings (``agent.traps``, or ``diag traps listen --config``), validated with FILE:LINE errors.

::

    agent:
      traps:
        listen: ["0.0.0.0:9162", "[::]:9162"]
        communities: [env:DIAG_TRAP_COMMUNITY]          # v1/v2c; references only
        users:                                          # v3 USM
          - {name: noc, auth_protocol: SHA, auth_key: env:TRAP_AUTH, priv_protocol: AES, priv_key: env:TRAP_PRIV}
        allow: [10.0.0.0/8, "2001:db8::/32"]           # sources accepted (default: any)
        rate_limit: 50                                  # datagrams per second per source (burst: 2x)
        severities: {linkDown: critical, 1.3.6.1.4.1.9.9.41.2.0.1: warning}

Secrets are revealed at start (a missing variable is a FILE:LINE problem, not a failure at the first
trap) and the v3 passwords are turned into keys at once; neither is kept or logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError, SecretError
from diag.model import Severity
from diag.secrets import SecretRef, is_reference, unresolved

log = logging.getLogger(__name__)

DEFAULT_PORT = 9162
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"

#: What an unreadable secret stands for when ``doc.resolve_secrets`` is off (validation only, never used to listen).
_STAND_IN = "unresolved-secret"


class UserSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A v3 user. The protocols take the SNMP client's names (``SHA-256``, ``AES-256-C``...: usm.PRIV_ALIASES),
    checked by ``usm.User.create`` so that both say the same about an unknown one."""

    name: str
    auth_protocol: str | None = None
    auth_key: str | None = None
    priv_protocol: str | None = None
    priv_key: str | None = None


class TrapsSpec(msgspec.Struct, forbid_unknown_fields=True):
    listen: list[str] = msgspec.field(default_factory=lambda: [DEFAULT_LISTEN])
    communities: list[str] = []
    users: list[UserSpec] = []
    engine_id: str | None = None
    allow: list[str] = []
    rate_limit: float = 50.0
    burst: int | None = None
    severities: dict[str, Literal["info", "warning", "critical"]] = {}
    history: int = 200


@dataclass(slots=True)
class TrapConfig:
    """The receiver's resolved settings: addresses, communities and USM users with keys, limits."""

    listen: list[tuple[str, int]] = field(default_factory=lambda: [parse_listen(DEFAULT_LISTEN)])
    communities: list[bytes] = field(default_factory=list)
    users: dict[bytes, Any] = field(default_factory=dict)  # name -> diag.network.snmp.usm.User
    engine_id: bytes | None = None
    allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    rate_limit: float = 50.0
    burst: int = 100
    severities: dict[str, Severity] = field(default_factory=dict)
    history: int = 200


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` -> (host, port); ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {text!r} must be HOST:PORT ([::]:PORT for IPv6)")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - a trap receiver listens for devices on the network
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"listen address {text!r}: {host!r} is not an IP address") from None
    return host, int(port)


def build(doc: yamlsrc.Doc, raw: Any, base: tuple[str | int, ...] = ("agent", "traps")) -> TrapConfig | None:
    """Validate the section; problems go to ``doc.problems`` (FILE:LINE each), and then the answer is None."""
    from diag.network.snmp import usm

    start = len(doc.problems)
    spec: TrapsSpec | None = doc.check_type(base, raw if raw is not None else {}, TrapsSpec)
    if spec is None:
        return None
    cfg = TrapConfig(rate_limit=spec.rate_limit, severities=dict(spec.severities), history=spec.history)
    cfg.listen = []
    for i, text in enumerate(spec.listen):
        try:
            cfg.listen.append(parse_listen(text))
        except ValueError as e:
            doc.problem((*base, "listen", i), str(e))
    if not spec.listen:
        doc.problem((*base, "listen"), "listen needs at least one HOST:PORT")

    def reveal(where: tuple[str | int, ...], value: str) -> str | None:
        if not is_reference(value):
            doc.problem(where, "must be a reference (env:NAME or file:PATH), not a literal secret")
            return None
        if not doc.resolve_secrets and unresolved(value):
            # Checked away from the agent's machine: the caller warns about the reference; a stand-in of a valid
            # length lets the rest of the section (protocols, users) still be checked.
            return _STAND_IN
        try:
            return SecretRef(value).reveal()
        except SecretError as e:
            doc.problem(where, str(e))
            return None

    for i, ref in enumerate(spec.communities):
        value = reveal((*base, "communities", i), ref)
        if value is not None:
            cfg.communities.append(value.encode())
    for i, u in enumerate(spec.users):
        where = (*base, "users", i)
        auth = reveal((*where, "auth_key"), u.auth_key) if u.auth_key is not None else None
        priv = reveal((*where, "priv_key"), u.priv_key) if u.priv_key is not None else None
        if (u.auth_key is not None and auth is None) or (u.priv_key is not None and priv is None):
            continue  # the reference did not resolve: already a problem
        try:  # the client's names and errors (usm), at the line of the key that is wrong
            auth_protocol = usm.auth_protocol_name(u.auth_protocol) if u.auth_protocol is not None else None
        except ValueError as e:
            doc.problem((*where, "auth_protocol"), f"user {u.name}: {e}")
            continue
        try:
            priv_protocol = usm.priv_protocol_name(u.priv_protocol) if u.priv_protocol is not None else None
        except ValueError as e:
            doc.problem((*where, "priv_protocol"), f"user {u.name}: {e}")
            continue
        auth_protocol = auth_protocol or ("SHA" if auth is not None else None)
        priv_protocol = priv_protocol or ("AES" if priv is not None else None)
        if auth_protocol is not None and auth is None:
            doc.problem(where, f"user {u.name}: auth_protocol needs auth_key")
            continue
        if priv_protocol is not None and priv is None:
            doc.problem(where, f"user {u.name}: priv_protocol needs priv_key")
            continue
        if u.name.encode() in cfg.users:
            doc.problem((*where, "name"), f"user {u.name} is configured twice")
            continue
        try:
            cfg.users[u.name.encode()] = usm.User.create(u.name, auth_protocol, auth or "", priv_protocol, priv or "")
        except ValueError as e:
            doc.problem(where, str(e))
    if not spec.communities and not spec.users:
        doc.problem(base, "traps needs at least one community or v3 user (without one it would accept nothing)")
    if spec.engine_id is not None:
        try:
            engine = bytes.fromhex(spec.engine_id.removeprefix("0x"))
        except ValueError:
            engine = b""
        if not 5 <= len(engine) <= 32:
            doc.problem((*base, "engine_id"), "engine_id must be 5 to 32 octets in hex (RFC 3411)")
        cfg.engine_id = engine
    for i, net in enumerate(spec.allow):
        try:
            cfg.allow.append(ipaddress.ip_network(net, strict=False))
        except ValueError:
            doc.problem((*base, "allow", i), f"{net!r} is not an address or network (10.0.0.0/8, 2001:db8::/32)")
    if spec.rate_limit <= 0:
        doc.problem((*base, "rate_limit"), "rate_limit must be positive (datagrams per second per source)")
    cfg.burst = spec.burst if spec.burst is not None else max(1, int(spec.rate_limit * 2))
    if cfg.burst < 1:
        doc.problem((*base, "burst"), "burst must be at least 1")
    if spec.history < 0:
        doc.problem((*base, "history"), "history must not be negative")
    for key in spec.severities:
        from diag.network.traps.events import STANDARD_TRAPS

        if key not in STANDARD_TRAPS.values() and not _numeric_oid(key):
            doc.problem((*base, "severities", key), f"{key!r} is neither a numeric trap OID nor a standard trap name")
    return cfg if len(doc.problems) == start else None


def _numeric_oid(text: str) -> bool:
    parts = text.strip(".").split(".")
    return len(parts) >= 2 and all(p.isdigit() for p in parts)


def build_standalone(raw: Any, file: str = "<options>") -> TrapConfig:
    """Validate settings that do not come from a file (the CLI's options); ConfigError on problems."""
    doc = yamlsrc.Doc(file, {"traps": raw})
    cfg = build(doc, raw, ("traps",))
    if cfg is None:
        raise ConfigError(doc.problems)
    return cfg


def engine_identity(cfg: TrapConfig, state_dir: Path | None) -> tuple[bytes, int]:
    """(snmpEngineID, snmpEngineBoots) of the receiver as an authoritative engine (for informs).

    Kept in ``state_dir/traps-engine.json`` when there is one, with the boot count raised at every start
    (RFC 3414 needs it to grow, or a sender's old messages would be fresh again); otherwise a random
    engine ID and boots 1.
    """
    path = state_dir / "traps-engine.json" if state_dir is not None else None
    engine, boots = cfg.engine_id, 0
    if path is not None and path.exists():
        try:
            saved = json.loads(path.read_text())
            boots = int(saved.get("boots", 0))
            if engine is None:
                engine = bytes.fromhex(saved["engine_id"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s: unreadable (%s); starting a new engine identity", path, e)
    if engine is None:
        # RFC 3411 format 5 (administratively assigned octets) under enterprise 0: no one else's number.
        engine = b"\x80\x00\x00\x00\x05" + os.urandom(8)
    boots = min(boots + 1, 2147483646)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"engine_id": engine.hex(), "boots": boots}))
        except OSError as e:
            log.warning("%s: cannot save the engine identity (%s)", path, e.strerror)
    return engine, boots
