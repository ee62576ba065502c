"""The ``agent.archive`` section of the inventory file: what to fetch from which hosts, how often, what to mask.

::

    agent:
      archive:
        interval: 3600                 # seconds between scheduled fetches; no section, no schedule
        files:                         # host or group name ('all' for every host) -> files fetched over SSH
          linux: [/etc/ssh/sshd_config, /etc/fstab]
          web-03: [/etc/nginx/nginx.conf]
        devices: [switches]            # hosts/groups whose running config is fetched (default: every network device)
        mask: ['(?i)^\\s*bind_pw\\s+(?P<s>\\S+)']   # more secret patterns for host files (group s, else the match)
        ignore: ['^! Time: ']          # more lines dropped before storing: volatile lines that are not changes
        concurrency: 8
        timeout: 600                   # seconds one scheduled run may take before the agent stops it
        change_window: 3600            # seconds before a fault in which a config change is a hypothesis
        known_hosts: [/etc/diag/known_hosts]

Every problem is reported as ``FILE:LINE: message`` before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from diag import yamlsrc
from diag.archive.names import check_source, compile_patterns
from diag.errors import ConfigError, DiagError
from diag.inventory import Host, Inventory

#: Volatile lines of running configurations that change without a configuration change (clock, counters).
DEFAULT_IGNORE: tuple[str, ...] = (
    r"^! Last configuration change at ",
    r"^! NVRAM config last updated at ",
    r"^! No configuration change since last restart",
    r"^ntp clock-period ",
    r"^Building configuration\.\.\.$",
    r"^Current configuration ?: ?\d* ?(bytes)?$",
    r"^## Last (commit|changed): ",
    r"^! Time: ",
)


class ArchiveSpec(msgspec.Struct, forbid_unknown_fields=True):
    interval: float = 3600.0
    files: dict[str, list[str]] = {}
    devices: list[str] | None = None
    mask: list[str] = []
    ignore: list[str] = []
    concurrency: int = 8
    timeout: float = 600.0
    change_window: float = 3600.0
    known_hosts: list[str] = []


@dataclass(slots=True)
class ArchiveSettings:
    interval: float = 3600.0
    files: dict[str, list[str]] = field(default_factory=dict)
    devices: list[str] | None = None
    mask: list[re.Pattern[str]] = field(default_factory=list)
    ignore: list[re.Pattern[str]] = field(default_factory=lambda: compile_patterns(DEFAULT_IGNORE))
    concurrency: int = 8
    timeout: float = 600.0
    change_window: float = 3600.0
    known_hosts: list[Path] = field(default_factory=list)

    def files_for(self, host: Host) -> list[str]:
        """The files configured for ``host`` (by its name, its groups, or ``all``), in order, without repeats."""
        out: list[str] = []
        for key in ("all", *host.groups, host.name):
            for path in self.files.get(key, []):
                if path not in out:
                    out.append(path)
        return out

    def wants_device(self, host: Host) -> bool:
        return self.devices is None or any(k in self.devices for k in ("all", host.name, *host.groups))


def parse(doc: yamlsrc.Doc | None, raw: object, names: set[str] | None = None) -> ArchiveSettings:
    """Validate ``agent.archive`` (host and group keys against ``names`` when given); ConfigError lists every
    ``FILE:LINE`` problem."""
    if doc is None:
        doc = yamlsrc.Doc("<defaults>", {"agent": {"archive": raw}})
    base = ("agent", "archive")
    spec = doc.check_type(base, raw or {}, ArchiveSpec)
    if spec is None:
        raise ConfigError(doc.problems)
    if spec.interval <= 0 or spec.timeout <= 0 or spec.change_window <= 0:
        doc.problem(base, "interval, timeout and change_window must be positive")
    if spec.concurrency < 1:
        doc.problem((*base, "concurrency"), "concurrency must be at least 1")
    if names is not None:
        names = names | {"all"}
    for key, paths in spec.files.items():
        if names is not None and key not in names:
            doc.problem((*base, "files", key), f"no host or group named {key!r}")
        for i, p in enumerate(paths):
            try:
                check_source(p)
            except DiagError as e:
                doc.problem((*base, "files", key, i), str(e))
    for i, key in enumerate(spec.devices or []):
        if names is not None and key not in names:
            doc.problem((*base, "devices", i), f"no host or group named {key!r}")
    compiled: dict[str, list[re.Pattern[str]]] = {"mask": [], "ignore": []}
    for section in ("mask", "ignore"):
        for i, pattern in enumerate(getattr(spec, section)):
            try:
                compiled[section] += compile_patterns([pattern])
            except re.error as e:
                doc.problem((*base, section, i), f"bad regular expression: {e}")
    if doc.problems:
        raise ConfigError(doc.problems)
    return ArchiveSettings(
        interval=spec.interval,
        files=spec.files,
        devices=spec.devices,
        mask=compiled["mask"],
        ignore=[*compile_patterns(DEFAULT_IGNORE), *compiled["ignore"]],
        concurrency=spec.concurrency,
        timeout=spec.timeout,
        change_window=spec.change_window,
        known_hosts=[Path(p) for p in spec.known_hosts],
    )


def from_inventory(inv: Inventory | None) -> ArchiveSettings | None:
    """The archive settings of an inventory's ``agent.archive`` section, or None when it has none."""
    if inv is None or "archive" not in inv.agent:
        return None
    return parse(inv.doc, inv.agent["archive"], set(inv.hosts) | set(inv.groups))


def names_in(doc: yamlsrc.Doc | None) -> set[str] | None:
    """Host and group names of a loaded inventory document (before it is resolved), for checking keys."""
    data = doc.data if doc is not None else None
    if not isinstance(data, dict):
        return None
    out: set[str] = set()
    for section in ("hosts", "groups"):
        if isinstance(data.get(section), dict):
            out.update(str(k) for k in data[section])
    return out
