"""One inventory file checked as a whole: hosts and groups, then the ``agent:`` section, every problem in one pass.

What ``diag inventory validate`` and every start of the agent call. A user with three mistakes sees three
``FILE:LINE: message`` lines in one run: a problem among the hosts does not hide the agent section's, and a value
given on the command line (``--listen``) is named by its option instead of a line of the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diag import config, inventory, yamlsrc
from diag.errors import ConfigError
from diag.secrets import unresolved


@dataclass(slots=True)
class Loaded:
    """The agent's settings, the inventory (None without a file) and warnings that do not make the file invalid."""

    config: config.AgentConfig
    inventory: inventory.Inventory | None
    warnings: list[str] = field(default_factory=list)


def load(
    inventory_file: str | None,
    overrides: Mapping[str, tuple[str, Any]] | None = None,
    *,
    resolve_secrets: bool = True,
) -> Loaded:
    """Validate ``inventory_file`` (or the defaults when None) with ``overrides`` of ``agent:`` keys.

    ``overrides`` maps a key of the agent section to (option name, value), e.g. ``{"listen": ("--listen", v)}``.
    With ``resolve_secrets`` False, secret references that cannot be read here (an unset variable, a missing
    file) are warnings, not problems: the file is checked on a machine that does not hold the agent's secrets.
    ConfigError lists every problem.
    """
    from diag.network.devices.registry import known_device_types  # names only: no driver (netmiko) imported
    from diag.network.snmp.usm import check_protocol

    raw: dict[str, Any] = {}
    inv = None
    if inventory_file is not None and Path(inventory_file).exists():
        doc = yamlsrc.load_file(inventory_file)  # a YAML syntax error stops here: nothing else can be read
        doc.resolve_secrets = resolve_secrets
        try:
            inv = inventory.parse(doc, device_types=known_device_types(), snmp_protocol=check_protocol)
        except ConfigError as e:  # the hosts are wrong: the agent section is still checked, in the same run
            doc.problems.extend(p for p in e.problems if p not in doc.problems)
        data = doc.data if isinstance(doc.data, dict) else {}
        agent = data.get("agent")
        raw = dict(agent) if isinstance(agent, dict) else {}
    else:
        doc = yamlsrc.Doc("<defaults>", {"agent": raw}, resolve_secrets=resolve_secrets)
    for key, (option, value) in (overrides or {}).items():
        if value is not None:
            raw[key] = value
            doc.origins[("agent", key)] = option
    warnings = _unresolved_references(doc) if not resolve_secrets else []
    try:
        cfg = config.build(doc, raw)
    except ConfigError as e:  # the warnings too: the one run says everything
        problems = yamlsrc.by_line(e.problems, doc.file)
        raise ConfigError([*problems, *(w for w in warnings if w not in problems)]) from None
    return Loaded(cfg, inv, warnings)


def _unresolved_references(doc: yamlsrc.Doc) -> list[str]:
    """A warning for every ``env:``/``file:`` reference in the file that cannot be read here."""
    out: list[str] = []

    def walk(value: Any, path: yamlsrc.PathKey) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "vars" and path[:1] in (("defaults",), ("groups",), ("hosts",)):
                    continue  # playbook variables are free text: "env:prod" there is a value, not a reference
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))
        elif isinstance(value, str):
            why = unresolved(value)
            if why:
                out.append(f"{doc.where(path)}: warning: {why}")

    walk(doc.data, ())
    return out
