"""The catalogue of standard changes (``changes/*.yaml``): pre-approved, bounded actions line 1 may take alone.

Each entry says which hosts or groups it may touch, which parameters it takes and their allowed values, a
pre-check (exit 0: the condition the change is for is there), the action, a verifying re-check (exit 0: it
worked), an optional rollback, the maintenance windows in which it may run and a rate limit. Commands are
playbook steps: parameters reach the shell only through shell quoting (:mod:`diag.remote.playbook`), and a
parameter value outside its allowed list or pattern is refused before anything runs. Format and safety rules:
docs/line1.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError
from diag.incidents.durations import Duration, parse_duration
from diag.remote import playbook as pbmod

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ParamSpec(msgspec.Struct, forbid_unknown_fields=True):
    allowed: list[str | int] = []  # the values it may take
    pattern: str | None = None  # or a regex the whole value must match
    description: str = ""


class CommandSpec(msgspec.Struct, forbid_unknown_fields=True):
    run: str
    timeout: float | None = None
    sudo: bool = False


class WindowSpec(msgspec.Struct, forbid_unknown_fields=True):
    days: list[str] = msgspec.field(default_factory=lambda: list(DAYS))
    start: str = msgspec.field(name="from", default="00:00")
    end: str = msgspec.field(name="to", default="24:00")


class RateSpec(msgspec.Struct, forbid_unknown_fields=True):
    max: int
    per: Duration


class ChangeSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    title: str
    description: str
    precheck: CommandSpec
    action: CommandSpec
    verify: CommandSpec
    windows: list[WindowSpec]
    rate_limit: RateSpec
    hosts: list[str] = []
    groups: list[str] = []
    params: dict[str, ParamSpec] = {}
    rollback: CommandSpec | None = None


class FileSpec(msgspec.Struct, forbid_unknown_fields=True):
    changes: list[dict[str, Any]]


@dataclass(slots=True, frozen=True)
class Window:
    """Days of the week and a time span (UTC) in which the change may run; ``to`` may be 24:00."""

    days: frozenset[int]
    start_min: int
    end_min: int

    def open_at(self, when: datetime) -> bool:
        t = when.astimezone(UTC)
        minute = t.hour * 60 + t.minute
        return t.weekday() in self.days and self.start_min <= minute < self.end_min

    def __str__(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        start, end = divmod(self.start_min, 60), divmod(self.end_min, 60)
        return f"{days} {start[0]:02d}:{start[1]:02d}-{end[0]:02d}:{end[1]:02d} UTC"


@dataclass(slots=True)
class Change:
    """One loaded catalogue entry, its commands compiled into one-step playbooks."""

    id: str
    title: str
    description: str
    hosts: tuple[str, ...]
    groups: tuple[str, ...]
    params: dict[str, ParamSpec]
    windows: list[Window]
    rate_max: int
    rate_per: float
    steps: dict[str, pbmod.Playbook]  # precheck, action, verify, rollback (when given)
    commands: dict[str, str]  # the command templates as written, for the console and the journal
    file: str
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)

    def in_scope(self, host: str, groups: Iterable[str]) -> bool:
        return host in self.hosts or bool(set(self.groups) & set(groups))

    def window_open(self, when: datetime) -> bool:
        return any(w.open_at(when) for w in self.windows)

    def check_params(self, given: Mapping[str, Any]) -> str | None:
        """None when every parameter is declared, present and allowed; else the reason (nothing runs then)."""
        for name in given:
            if name not in self.params:
                return f"parameter {name!r} is not one the change {self.id} takes"
        for name, spec in self.params.items():
            if name not in given:
                return f"parameter {name!r} of change {self.id} is missing"
            value = given[name]
            if not isinstance(value, str | int) or isinstance(value, bool):
                return f"parameter {name!r} must be a word or a number"
            if spec.allowed and value not in spec.allowed and str(value) not in [str(a) for a in spec.allowed]:
                return f"parameter {name}={value!r} is not among the allowed values of change {self.id}"
            rx = self.patterns.get(name)
            if rx is not None and not rx.fullmatch(str(value)):
                return f"parameter {name}={value!r} does not match the allowed pattern of change {self.id}"
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "hosts": list(self.hosts),
            "groups": list(self.groups),
            "params": {k: {"allowed": v.allowed, "pattern": v.pattern} for k, v in self.params.items()},
            "windows": [str(w) for w in self.windows],
            "rate_limit": {"max": self.rate_max, "per_s": self.rate_per},
            "commands": self.commands,
            "reversible": "rollback" in self.steps,
            "file": self.file,
        }


def _minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _parse_entry(doc: yamlsrc.Doc, path: yamlsrc.PathKey, spec: ChangeSpec) -> Change | None:
    ok = True
    if not _ID.match(spec.id):
        doc.problem((*path, "id"), f"id {spec.id!r} may hold only lower-case letters, digits and _.-")
        ok = False
    if not spec.hosts and not spec.groups:
        doc.problem(path, "a standard change needs hosts or groups it may touch (nothing is in scope by default)")
        ok = False
    if not spec.windows:
        doc.problem((*path, "windows"), "a standard change needs at least one maintenance window")
        ok = False
    windows = []
    for i, w in enumerate(spec.windows):
        wp = (*path, "windows", i)
        bad_days = [d for d in w.days if d not in DAYS]
        if bad_days or not w.days:
            doc.problem((*wp, "days"), f"days must be among {', '.join(DAYS)}")
            ok = False
        if not _HHMM.match(w.start) or not _HHMM.match(w.end) or _minutes(w.start) >= _minutes(w.end):
            doc.problem(wp, f"window {w.start}-{w.end}: from and to are HH:MM (UTC), from before to")
            ok = False
            continue
        days = frozenset(DAYS.index(d) for d in w.days if d in DAYS)
        windows.append(Window(days, _minutes(w.start), _minutes(w.end)))
    try:
        per = parse_duration(spec.rate_limit.per)
    except ValueError as e:
        doc.problem((*path, "rate_limit", "per"), str(e))
        per, ok = 0.0, False
    if spec.rate_limit.max < 1 or per <= 0:
        doc.problem((*path, "rate_limit"), "rate_limit needs max >= 1 and a positive period")
        ok = False
    patterns: dict[str, re.Pattern[str]] = {}
    for name, p in spec.params.items():
        if not p.allowed and not p.pattern:
            doc.problem((*path, "params", name), f"parameter {name!r} needs allowed values or a pattern")
            ok = False
        if p.pattern:
            try:
                patterns[name] = re.compile(p.pattern)
            except re.error as e:
                doc.problem((*path, "params", name, "pattern"), f"bad regex {p.pattern!r}: {e}")
                ok = False
    steps: dict[str, pbmod.Playbook] = {}
    commands: dict[str, str] = {}
    parts = {"precheck": spec.precheck, "action": spec.action, "verify": spec.verify, "rollback": spec.rollback}
    for kind, cmd in parts.items():
        if cmd is None:
            continue
        commands[kind] = cmd.run
        changes = kind in ("action", "rollback")
        step: dict[str, Any] = {"id": kind, "run": cmd.run, "sudo": cmd.sudo, "changes": changes,
                                "description": f"{kind} of standard change {spec.id}: {spec.title}"}
        if cmd.timeout is not None:
            step["timeout"] = cmd.timeout
        data = {"name": f"change.{spec.id}.{kind}", "vars": {n: {"required": True} for n in spec.params},
                "steps": [step]}
        sub = yamlsrc.Doc(doc.file, data)
        try:
            steps[kind] = pbmod.parse(sub)
        except ConfigError as e:
            for line in e.problems:
                doc.problem((*path, kind, "run"), line.split(": ", 1)[-1])
            ok = False
    if not ok:
        return None
    return Change(spec.id, spec.title, spec.description.strip(), tuple(spec.hosts), tuple(spec.groups),
                  dict(spec.params), windows, spec.rate_limit.max, per, steps, commands, doc.file, patterns)


def parse(doc: yamlsrc.Doc, seen: dict[str, str] | None = None) -> list[Change]:
    """Entries of one loaded file; problems (``FILE:LINE: message``) go to ``doc.problems``."""
    seen = {} if seen is None else seen
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("changes"), list):
        doc.problem((), "a catalogue file is a mapping with a list under 'changes'")
        return []
    if doc.check_type((), data, FileSpec) is None:
        return []
    out = []
    for i, raw in enumerate(data["changes"]):
        path: yamlsrc.PathKey = ("changes", i)
        spec = doc.check_type(path, raw, ChangeSpec)
        if spec is None:
            continue
        if spec.id in seen:
            doc.problem((*path, "id"), f"duplicate change id {spec.id!r} (first in {seen[spec.id]})")
            continue
        seen[spec.id] = doc.where((*path, "id"))
        change = _parse_entry(doc, path, spec)
        if change is not None:
            out.append(change)
    return out


def shipped_dir() -> Path | None:
    """The shipped catalogue: ``changes/`` next to the package, or ``<prefix>/share/diag/changes``."""
    import sys

    repo = Path(__file__).resolve().parent.parent.parent / "changes"
    for d in (repo, Path(sys.prefix) / "share" / "diag" / "changes"):
        if d.is_dir():
            return d
    return None


class Catalogue:
    """Loaded standard changes by id."""

    def __init__(self, changes: Iterable[Change] = ()) -> None:
        self.changes = {c.id: c for c in changes}

    def get(self, change_id: str) -> Change | None:
        return self.changes.get(change_id)

    @classmethod
    def load(cls, dirs: Iterable[Path] = (), shipped: bool = True) -> Catalogue:
        """Every entry of the shipped catalogue and ``dirs``; ConfigError lists every ``FILE:LINE`` problem."""
        all_dirs = list(dirs)
        if shipped and (d := shipped_dir()) is not None:
            all_dirs.insert(0, d)
        problems: list[str] = []
        seen: dict[str, str] = {}
        out: list[Change] = []
        for d in all_dirs:
            if d.is_file():
                files = [d]
            elif d.is_dir():
                files = sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml"))
            else:
                problems.append(f"{d}:1: no such catalogue file or directory")
                continue
            for f in files:
                try:
                    doc = yamlsrc.load_file(f)
                except ConfigError as e:
                    problems.extend(e.problems)
                    continue
                out.extend(parse(doc, seen))
                problems.extend(doc.problems)
        if problems:
            raise ConfigError(problems)
        return cls(out)


def now_utc() -> datetime:
    return datetime.now(UTC)
