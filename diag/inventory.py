"""Inventory: Defaults -> Group -> Host with inherited attributes, as in Ansible and nornir.

File layout (``inventory.yaml``)::

    defaults: {user: diag, port: 22}
    groups:
      linux: {device_type: linux, groups: [all-servers]}
    hosts:
      web-03: {address: 10.0.0.3, groups: [linux], parents: [sw-1]}
    agent: {...}            # the agent's own settings, see diag.config

A host takes each attribute from itself, else from its groups (in the order listed, depth first),
else from defaults. ``tags`` are the union, ``vars`` and ``snmp`` are merged key by key. Secrets
(passwords, SNMP communities and keys) are only accepted as ``env:NAME`` / ``file:PATH`` references.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError
from diag.secrets import SecretRef, is_reference

HostkeyPolicy = Literal["strict", "tofu"]
#: (key, name) -> None, ValueError for an SNMPv3 protocol name that is not known (see ``parse``).
ProtocolCheck = Callable[[str, str], object]
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")


class SnmpSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """SNMP settings; every field may be inherited separately."""

    version: Literal["1", "2c", "3"] | None = None
    port: int | None = None
    community: str | None = None
    user: str | None = None
    auth_protocol: str | None = None  # the names -a/-x take (SHA-256, AES-256-C...), checked by _check_protocols
    auth_key: str | None = None
    priv_protocol: str | None = None
    priv_key: str | None = None
    context: str | None = None
    timeout: float | None = None
    retries: int | None = None
    profiles: list[str] | None = None


class NodeSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What defaults, groups and hosts may say; None means "inherit"."""

    address: str | None = None
    port: int | None = None
    user: str | None = None
    ssh_key: str | None = None
    password: str | None = None
    #: The secret a network device asks after ``enable`` (IOS/EOS/Eltex logins below privilege 15); a reference.
    enable_secret: str | None = None
    device_type: str | None = None
    site: str | None = None
    jump: str | None = None
    hostkey_policy: HostkeyPolicy | None = None
    sudo: bool | None = None
    connect_timeout: float | None = None
    command_timeout: float | None = None
    groups: list[str] = []
    tags: list[str] = []
    parents: list[str] = []
    snmp: SnmpSpec | None = None
    vars: dict[str, Any] = {}
    description: str | None = None


_SCALARS = (
    "address",
    "port",
    "user",
    "ssh_key",
    "password",
    "enable_secret",
    "device_type",
    "site",
    "jump",
    "hostkey_policy",
    "sudo",
    "connect_timeout",
    "command_timeout",
)
_SECRET_SNMP = ("community", "auth_key", "priv_key")


@dataclass(slots=True)
class Host:
    """A fully resolved host: every attribute already inherited."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    ssh_key: str | None = None
    password: SecretRef | None = None
    enable_secret: SecretRef | None = None
    device_type: str = "linux"
    site: str | None = None
    jump: str | None = None
    hostkey_policy: HostkeyPolicy = "strict"
    sudo: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    snmp: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def snmp_secret(self, key: str) -> SecretRef | None:
        v = self.snmp.get(key)
        return v if isinstance(v, SecretRef) else None

    def public(self) -> dict[str, Any]:
        """What a listing shows of the host (``diag inventory list --json``, ``GET /api/v1/hosts``): no secrets."""
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "device_type": self.device_type,
            "groups": list(self.groups),
            "tags": list(self.tags),
            "parents": list(self.parents),
            "site": self.site,
        }


@dataclass(slots=True)
class Inventory:
    """The resolved inventory plus the raw document it came from (for ``agent:`` settings)."""

    file: str
    hosts: dict[str, Host]
    groups: dict[str, NodeSpec]
    defaults: NodeSpec
    agent: dict[str, Any] = field(default_factory=dict)
    doc: yamlsrc.Doc | None = None

    def select(self, targets: list[str]) -> list[Host]:
        """Hosts named by ``targets`` (host or group names, in order, no repeats)."""
        out: dict[str, Host] = {}
        unknown: list[str] = []
        for t in targets:
            if t in self.hosts:
                out.setdefault(t, self.hosts[t])
            elif t in self.groups or t == "all":
                for h in self.hosts.values():
                    if t == "all" or t in h.groups:
                        out.setdefault(h.name, h)
            else:
                unknown.append(t)
        if unknown:  # every one of them: two typos take one run
            raise ConfigError([f"{self.file}: no host or group named {t!r}" for t in dict.fromkeys(unknown)])
        return list(out.values())


def _group_chain(name: str, groups: dict[str, NodeSpec], seen: tuple[str, ...] = ()) -> list[str]:
    """Groups in inheritance order: the group, then its own groups depth first (cycles already rejected)."""
    if name in seen or name not in groups:
        return []
    out = [name]
    for parent in groups[name].groups:
        for g in _group_chain(parent, groups, (*seen, name)):
            if g not in out:
                out.append(g)
    return out


def _find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in a name -> names graph, or None (iterative DFS: 10,000 hosts must not recurse)."""
    state: dict[str, int] = {}
    for start in edges:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            nexts = edges.get(node, [])
            if i < len(nexts):
                stack.append((node, i + 1))
                nxt = nexts[i]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def _check_secrets(doc: yamlsrc.Doc, path: yamlsrc.PathKey, spec: NodeSpec) -> None:
    if spec.password is not None and not is_reference(spec.password):
        doc.problem((*path, "password"), "password must be a reference (env:NAME or file:PATH), not a literal")
    if spec.enable_secret is not None and not is_reference(spec.enable_secret):
        doc.problem(
            (*path, "enable_secret"), "enable_secret must be a reference (env:NAME or file:PATH), not a literal"
        )
    if spec.snmp is not None:
        for key in _SECRET_SNMP:
            v = getattr(spec.snmp, key)
            if v is not None and not is_reference(v):
                doc.problem((*path, "snmp", key), f"snmp {key} must be a reference (env:NAME or file:PATH)")


def _check_node(
    doc: yamlsrc.Doc,
    path: yamlsrc.PathKey,
    spec: NodeSpec,
    device_types: Collection[str] | None,
    snmp_protocol: ProtocolCheck | None,
) -> None:
    """What one defaults, group or host entry may be wrong about, beyond its types."""
    _check_secrets(doc, path, spec)
    if device_types is not None:
        _check_device_type(doc, path, spec, device_types)
    if snmp_protocol is not None and spec.snmp is not None:
        for key in ("auth_protocol", "priv_protocol"):
            value = getattr(spec.snmp, key)
            if value is not None:
                try:
                    snmp_protocol(key, value)
                except ValueError as e:  # the SNMP client's own words (usm.check_protocol)
                    doc.problem((*path, "snmp", key), f"snmp: {e}")


def _resolve(name: str, spec: NodeSpec, chain: list[NodeSpec], defaults: NodeSpec) -> Host:
    layers = [spec, *chain, defaults]
    values: dict[str, Any] = {}
    for attr in _SCALARS:
        for layer in layers:
            v = getattr(layer, attr)
            if v is not None:
                values[attr] = v
                break
    snmp: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    tags: list[str] = []
    for layer in reversed(layers):  # later (more specific) layers win
        if layer.snmp is not None:
            snmp.update(msgspec.to_builtins(layer.snmp))
        variables.update(layer.vars)
    for layer in layers:
        tags.extend(t for t in layer.tags if t not in tags)
    for key in _SECRET_SNMP:
        if isinstance(snmp.get(key), str):
            snmp[key] = SecretRef(snmp[key])
    password = values.pop("password", None)
    enable_secret = values.pop("enable_secret", None)
    return Host(
        name=name,
        address=values.pop("address", name),
        password=SecretRef(password) if password else None,
        enable_secret=SecretRef(enable_secret) if enable_secret else None,
        tags=tuple(tags),
        parents=tuple(spec.parents),
        snmp=snmp,
        vars=variables,
        description=spec.description,
        **values,
    )


def _check_device_type(doc: yamlsrc.Doc, path: yamlsrc.PathKey, spec: NodeSpec, known: Collection[str]) -> None:
    if spec.device_type is not None and spec.device_type not in known:
        close = difflib.get_close_matches(spec.device_type, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
        doc.problem((*path, "device_type"), f"unknown device_type {spec.device_type!r}; {hint}")


def parse(
    doc: yamlsrc.Doc, device_types: Collection[str] | None = None, snmp_protocol: ProtocolCheck | None = None
) -> Inventory:
    """Validate and resolve a loaded document; raise ConfigError listing every problem found.

    ``device_types``: the names a ``device_type`` may take (diag.network.devices.registry.known_device_types);
    ``snmp_protocol``: raises ValueError for an SNMPv3 protocol name the client does not know
    (diag.network.snmp.usm.check_protocol). Both given by the caller because those packages depend on this
    module, not the other way round.
    """
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.file}:1: inventory must be a mapping with defaults/groups/hosts")
    for key in data:
        if key not in ("defaults", "groups", "hosts", "agent"):
            doc.problem((key,), f"unknown top-level key {key!r} (expected defaults, groups, hosts, agent)")

    defaults = doc.check_type(("defaults",), data.get("defaults") or {}, NodeSpec) or NodeSpec()
    _check_node(doc, ("defaults",), defaults, device_types, snmp_protocol)

    groups: dict[str, NodeSpec] = {}
    for section, out in (("groups", groups),):
        raw = data.get(section) or {}
        if not isinstance(raw, dict):
            doc.problem((section,), f"{section} must be a mapping of name -> attributes")
            continue
        for name, body in raw.items():
            spec = doc.check_type((section, name), body or {}, NodeSpec)
            if spec is not None:
                _check_node(doc, (section, name), spec, device_types, snmp_protocol)
                out[name] = spec

    raw_hosts = data.get("hosts") or {}
    if not isinstance(raw_hosts, dict):
        doc.problem(("hosts",), "hosts must be a mapping of name -> attributes")
        raw_hosts = {}
    specs: dict[str, NodeSpec] = {}
    for name, body in raw_hosts.items():
        if not _NAME.match(str(name)):
            doc.problem(("hosts", name), f"host name {name!r} may only hold letters, digits and _.:-")
            continue
        if name in groups:
            doc.problem(("hosts", name), f"{name!r} is both a host and a group")
        spec = doc.check_type(("hosts", name), body or {}, NodeSpec)
        if spec is None:
            continue
        _check_node(doc, ("hosts", name), spec, device_types, snmp_protocol)
        if spec.address is not None and not _valid_address(spec.address):
            doc.problem(("hosts", name, "address"), f"address {spec.address!r} is not an IP address or DNS name")
        specs[name] = spec

    for gname, gspec in groups.items():
        for i, parent in enumerate(gspec.groups):
            if parent not in groups:
                doc.problem(("groups", gname, "groups", i), f"group {gname!r}: unknown group {parent!r}")
    cycle = _find_cycle({g: list(s.groups) for g, s in groups.items()})
    if cycle:
        doc.problem(("groups", cycle[0]), f"cycle in group membership: {' -> '.join(cycle)}")

    for hname, h in specs.items():
        for i, gname in enumerate(h.groups):
            if gname not in groups:
                doc.problem(("hosts", hname, "groups", i), f"host {hname!r}: unknown group {gname!r}")
        for i, p in enumerate(h.parents):
            if p not in raw_hosts:  # a host whose own entry is invalid still exists as a parent
                doc.problem(("hosts", hname, "parents", i), f"host {hname!r}: unknown parent {p!r}")
            elif p == hname:
                doc.problem(("hosts", hname, "parents", i), f"host {hname!r} is its own parent")
        if h.jump is not None and h.jump not in raw_hosts:
            doc.problem(("hosts", hname, "jump"), f"host {hname!r}: unknown jump host {h.jump!r}")
    cycle = _find_cycle({n: [p for p in s.parents if p in specs and p != n] for n, s in specs.items()})
    if cycle:
        doc.problem(("hosts", cycle[0], "parents"), f"cycle in parents: {' -> '.join(cycle)}")

    agent = data.get("agent") or {}
    if not isinstance(agent, dict):
        doc.problem(("agent",), "agent must be a mapping")
        agent = {}

    if doc.problems:
        raise ConfigError(doc.problems)

    chains: dict[str, list[str]] = {}  # group -> its inheritance chain; shared by thousands of hosts
    hosts: dict[str, Host] = {}
    for hname, h in specs.items():
        names: list[str] = []
        for gname in h.groups:
            if gname not in chains:
                chains[gname] = _group_chain(gname, groups)
            names.extend(x for x in chains[gname] if x not in names)
        hosts[hname] = _resolve(hname, h, [groups[x] for x in names], defaults)
        hosts[hname].groups = tuple(names)
    return Inventory(doc.file, hosts, groups, defaults, agent, doc)


_DNS = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _valid_address(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
        return True
    except ValueError:
        return bool(_DNS.match(addr))


def load(path: str, device_types: Collection[str] | None = None) -> Inventory:
    """Load, validate and resolve an inventory file (ConfigError lists every ``FILE:LINE`` problem)."""
    return parse(yamlsrc.load_file(path), device_types)
