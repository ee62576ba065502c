"""The ``agent.line1`` section: which desks to watch, where the KB and the catalogue are, how often to look.

::

    agent:
      line1:
        interval: 15s                 # how often each desk is polled
        desks:                        # any of redmine, rt, imap (options: docs/line1.md)
          redmine: {url: ..., api_key: file:/etc/diag/redmine.key, project: helpdesk, host_field: 12}
        knowledge: [/etc/diag/knowledge]   # more KB directories (entries with `intake:`)
        changes: [/etc/diag/changes]       # more catalogue directories
        fallback_playbook: linux-baseline  # evidence for line 2 when no KB entry matches (null: none)
        known_hosts: [/etc/diag/known_hosts]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError
from diag.incidents.durations import Duration, parse_duration


class Line1Spec(msgspec.Struct, forbid_unknown_fields=True):
    desks: dict[str, dict[str, Any]] = {}
    interval: Duration = "15s"
    knowledge: list[str] = []
    shipped_knowledge: bool = True
    changes: list[str] = []
    shipped_changes: bool = True
    fallback_playbook: str | None = "linux-baseline"
    max_hosts: int = 5
    host_field: str = "host"
    known_hosts: list[str] = []


@dataclass(slots=True)
class Settings:
    desks: dict[str, dict[str, Any]]
    interval: float
    knowledge: list[Path]
    shipped_knowledge: bool
    changes: list[Path]
    shipped_changes: bool
    fallback_playbook: str | None
    max_hosts: int
    host_field: str
    known_hosts: list[Path] = field(default_factory=list)


def from_doc(doc: yamlsrc.Doc | None, raw: Any, path: yamlsrc.PathKey = ("agent", "line1")) -> Settings:
    """Validated settings; ConfigError with ``FILE:LINE`` problems."""
    d = doc or yamlsrc.Doc("agent.line1", raw)
    spec = d.check_type(path, raw if raw is not None else {}, Line1Spec)
    if spec is None:
        raise ConfigError(d.problems)
    interval = 15.0
    try:
        interval = parse_duration(spec.interval)
        if interval <= 0:
            raise ValueError("interval must be positive")
    except ValueError as e:
        d.problem((*path, "interval"), str(e))
    import importlib

    from diag.line1.intake import BUILTIN

    for name, raw_desk in spec.desks.items():
        if name not in BUILTIN:
            d.problem((*path, "desks", name), f"unknown desk {name!r}; known: {', '.join(BUILTIN)}")
            continue
        # each desk's options, checked where they are written (secrets are read only when the desk is built)
        options = importlib.import_module(f"diag.line1.intake.{name}").Options
        d.check_type((*path, "desks", name), raw_desk, options)
    if spec.max_hosts < 1:
        d.problem((*path, "max_hosts"), "max_hosts must be at least 1")
    if d.problems:
        raise ConfigError(d.problems)
    return Settings(dict(spec.desks), interval, [Path(p) for p in spec.knowledge], spec.shipped_knowledge,
                    [Path(p) for p in spec.changes], spec.shipped_changes, spec.fallback_playbook, spec.max_hosts,
                    spec.host_field, [Path(p) for p in spec.known_hosts])
