"""The ``agent.incidents`` section: validated with ``FILE:LINE`` errors into :class:`Settings`.

::

    agent:
      incidents:
        open_after: 60s          # a condition must persist this long before an incident opens (damping)
        close_after: 2m          # ... and be gone this long before the verifying re-check (hysteresis)
        reopen_window: 1d        # a recurrence within this time reopens the incident and its ticket
        min_severity: warning    # findings below it never become incidents
        never_suppress: [fire, security]
        categories: {ups_on_battery: power, door_open: security}   # check id -> category
        down_checks: [host_unreachable, snmp_not_answering]       # checks that mean "the host is down"
        knowledge: [/etc/diag/knowledge]                          # more KB dirs (the shipped one is always read)
        tickets: {backend: local}                                 # any diag.exporters.tickets backend
        sla: {urgent: {respond: 15m, resolve: 4h}}                # per priority; KB entries override
        masking: {patterns: ['badge-[0-9]{6}']}                   # more regexes to mask
        flapping: {window: 10m, start: 6, stop: 2}                # state changes in the window: start/stop flapping
        links: {prometheus: "http://prom:9090", runbook: "https://wiki/kb/{kb_id}"}
        maintenance:
          - {hosts: [web-03], starts: "2026-11-23T22:00:00Z", ends: "2026-11-24T02:00:00Z", reason: "RAM upgrade"}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from diag import yamlsrc
from diag.incidents.durations import Duration, SlaSpec, parse_duration

#: Respond/resolve times (seconds) per priority, when neither config nor the KB says otherwise. The standards
#: name no numbers (SUPPORT-WORK.md): these are common ITIL-style starting points, meant to be configured.
DEFAULT_SLA: dict[str, tuple[float, float]] = {
    "urgent": (15 * 60, 4 * 3600),
    "high": (3600, 8 * 3600),
    "normal": (4 * 3600, 24 * 3600),
    "low": (24 * 3600, 72 * 3600),
}
PRIORITIES = ("low", "normal", "high", "urgent")
LINES = ("L1", "L2", "L3")
DEFAULT_DOWN_CHECKS = (
    "host_unreachable",
    "host_down",
    "snmp_not_answering",
    "reach_unreachable",
    "target_no_reply",
)

class WindowSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A maintenance window or silence: what it covers (empty = everything) and when."""

    starts: str
    ends: str
    reason: str
    hosts: list[str] = []
    groups: list[str] = []
    checks: list[str] = []


class MaskingSpec(msgspec.Struct, forbid_unknown_fields=True):
    defaults: bool = True  # the built-in patterns (passwords, communities, tokens, e-mails, phone numbers)
    patterns: list[str] = []


class LinksSpec(msgspec.Struct, forbid_unknown_fields=True):
    prometheus: str | None = None
    runbook: str | None = None  # a template: {kb_id}, {check}, {host}


class DeliverySpec(msgspec.Struct, forbid_unknown_fields=True):
    backoff_initial: Duration = 2
    backoff_max: Duration = 300
    poll: Duration = 1


class FlapSpec(msgspec.Struct, forbid_unknown_fields=True):
    window: Duration = 600  # state changes are counted over this window (Nagios counts its last 21 checks)
    start: int = 6  # this many changes within the window: flapping (3 fire/clear cycles)
    stop: int = 2  # at most this many within the window: flapping ends (hysteresis: start > stop)


class IncidentsSpec(msgspec.Struct, forbid_unknown_fields=True):
    open_after: Duration = 60
    close_after: Duration = 120
    reopen_window: Duration = 86400
    min_severity: Literal["info", "warning", "critical"] = "warning"
    never_suppress: list[str] = msgspec.field(default_factory=lambda: ["fire", "security"])
    categories: dict[str, str] = {}
    down_checks: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_DOWN_CHECKS))
    knowledge: list[str] = []
    tickets: dict[str, Any] = msgspec.field(default_factory=lambda: {"backend": "local"})
    sla: dict[str, SlaSpec] = {}
    masking: MaskingSpec = msgspec.field(default_factory=MaskingSpec)
    links: LinksSpec = msgspec.field(default_factory=LinksSpec)
    delivery: DeliverySpec = msgspec.field(default_factory=DeliverySpec)
    maintenance: list[WindowSpec] = []
    tick: Duration = 15  # how often SLA clocks and deferred re-checks are looked at
    snmp_interval: Duration = 60  # the agent polls the inventory's SNMP devices this often
    note_interval: Duration = 3600  # periodic sources add a note with new evidence at most this often
    flapping: FlapSpec = msgspec.field(default_factory=lambda: FlapSpec())
    database: str | None = None  # default: DATA/incidents.sqlite
    database_url: str | None = None  # postgresql://... or env:NAME: a store shared by several processes


@dataclass(slots=True, frozen=True)
class Window:
    starts: float
    ends: float
    reason: str
    hosts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()


@dataclass(slots=True)
class Settings:
    """The engine's settings, every duration in seconds."""

    data: Path
    open_after: float = 60.0
    close_after: float = 120.0
    reopen_window: float = 86400.0
    min_severity: str = "warning"
    never_suppress: frozenset[str] = frozenset({"fire", "security"})
    categories: dict[str, str] = field(default_factory=dict)
    down_checks: frozenset[str] = frozenset(DEFAULT_DOWN_CHECKS)
    knowledge: list[Path] = field(default_factory=list)
    tickets: dict[str, Any] = field(default_factory=lambda: {"backend": "local"})
    sla: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_SLA))
    mask_defaults: bool = True
    mask_patterns: list[str] = field(default_factory=list)
    prometheus_url: str | None = None
    runbook_url: str | None = None
    backoff_initial: float = 2.0
    backoff_max: float = 300.0
    delivery_poll: float = 1.0
    maintenance: list[Window] = field(default_factory=list)
    tick: float = 15.0
    snmp_interval: float = 60.0
    note_interval: float = 3600.0
    flap_window: float = 600.0
    flap_start: int = 6
    flap_stop: int = 2
    database: Path | None = None
    database_url: str | None = None

    @property
    def db_path(self) -> Path:
        return self.database or self.data / "incidents.sqlite"


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def build(doc: yamlsrc.Doc, raw: Any, data: Path, path: yamlsrc.PathKey = ("agent", "incidents")) -> Settings | None:
    """Validate ``raw`` (the section's value); problems go to ``doc.problems`` and None is returned."""
    spec = doc.check_type(path, raw or {}, IncidentsSpec)
    if spec is None:
        return None
    before = len(doc.problems)

    def dur(key: tuple[str | int, ...], value: Duration) -> float:
        try:
            return parse_duration(value)
        except ValueError as e:
            doc.problem((*path, *key), str(e))
            return 0.0

    sla = dict(DEFAULT_SLA)
    for prio, s in spec.sla.items():
        if prio not in PRIORITIES:
            doc.problem((*path, "sla", prio), f"unknown priority {prio!r}; known: {', '.join(PRIORITIES)}")
            continue
        sla[prio] = (dur(("sla", prio, "respond"), s.respond), dur(("sla", prio, "resolve"), s.resolve))
    for i, pat in enumerate(spec.masking.patterns):
        try:
            re.compile(pat)
        except re.error as e:
            doc.problem((*path, "masking", "patterns", i), f"bad regex {pat!r}: {e}")
    windows = []
    for i, w in enumerate(spec.maintenance):
        try:
            starts, ends = _time(w.starts), _time(w.ends)
        except ValueError as e:
            doc.problem((*path, "maintenance", i), f"starts/ends must be ISO 8601 times: {e}")
            continue
        if ends <= starts:
            doc.problem((*path, "maintenance", i, "ends"), "ends must be after starts")
        windows.append(Window(starts, ends, w.reason, tuple(w.hosts), tuple(w.groups), tuple(w.checks)))
    _check_backend(doc, (*path, "tickets"), spec.tickets)
    for key in ("prometheus", "runbook"):
        url = getattr(spec.links, key)
        if url is not None and not url.startswith(("http://", "https://")):
            doc.problem((*path, "links", key), f"{key} must be an http(s) URL")
    if spec.knowledge:  # the KB's own FILE:LINE problems, so `diag inventory validate` reports them too
        from diag.errors import ConfigError
        from diag.incidents.knowledge import KnowledgeBase

        try:
            KnowledgeBase.load([Path(p) for p in spec.knowledge])
        except ConfigError as e:
            doc.problems.extend(e.problems)
    if not 0 <= spec.flapping.stop < spec.flapping.start:
        doc.problem((*path, "flapping", "stop"), "flapping.stop must be at least 0 and below flapping.start")
    settings = Settings(
        data=data,
        open_after=dur(("open_after",), spec.open_after),
        close_after=dur(("close_after",), spec.close_after),
        reopen_window=dur(("reopen_window",), spec.reopen_window),
        min_severity=spec.min_severity,
        never_suppress=frozenset(spec.never_suppress),
        categories=dict(spec.categories),
        down_checks=frozenset(spec.down_checks),
        knowledge=[Path(p) for p in spec.knowledge],
        tickets=dict(spec.tickets),
        sla=sla,
        mask_defaults=spec.masking.defaults,
        mask_patterns=list(spec.masking.patterns),
        prometheus_url=spec.links.prometheus,
        runbook_url=spec.links.runbook,
        backoff_initial=max(0.05, dur(("delivery", "backoff_initial"), spec.delivery.backoff_initial)),
        backoff_max=dur(("delivery", "backoff_max"), spec.delivery.backoff_max),
        delivery_poll=max(0.05, dur(("delivery", "poll"), spec.delivery.poll)),
        maintenance=windows,
        tick=max(0.1, dur(("tick",), spec.tick)),
        snmp_interval=max(1.0, dur(("snmp_interval",), spec.snmp_interval)),
        note_interval=dur(("note_interval",), spec.note_interval),
        flap_window=dur(("flapping", "window"), spec.flapping.window),
        flap_start=spec.flapping.start,
        flap_stop=spec.flapping.stop,
        database=Path(spec.database) if spec.database else None,
        database_url=spec.database_url,
    )
    return settings if len(doc.problems) == before else None


def _check_backend(doc: yamlsrc.Doc, path: yamlsrc.PathKey, tickets: dict[str, Any]) -> None:
    """The backend's own ``Options`` (each backend module declares one) checked here, so errors name FILE:LINE."""
    import importlib
    import importlib.util

    name = tickets.get("backend")
    if not isinstance(name, str):
        doc.problem(path, "tickets needs backend: NAME (local, redmine, rt, webhook, email)")
        return
    module = f"diag.exporters.tickets.{name}"
    if importlib.util.find_spec(module) is None:
        doc.problem((*path, "backend"), f"unknown ticket backend {name!r}")
        return
    options = getattr(importlib.import_module(module), "Options", None)
    if options is not None:
        doc.check_type(path, {k: v for k, v in tickets.items() if k != "backend"}, options)


def from_mapping(raw: dict[str, Any], data: Path) -> Settings:
    """Settings from a plain mapping (tests, library use); ConfigError on problems."""
    from diag.errors import ConfigError

    doc = yamlsrc.Doc("<incidents>", {"incidents": raw})
    s = build(doc, raw, data, ("incidents",))
    if s is None or doc.problems:
        raise ConfigError(doc.problems or ["<incidents>: invalid settings"])
    return s
