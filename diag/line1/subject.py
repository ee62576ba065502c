"""Which inventory host a person's ticket is about: a custom field, a name or address in the text, or their workstation.

The order is the order of certainty: a field the person (or the ticket form) filled in names a host or a group
exactly; a host name or address written in the subject or text is next; failing both, the machine the requester
uses, from the facts inventory (the ``users`` step of the ``facts`` playbook records who logs in where). Only
names and addresses that exist in the inventory are ever returned: the text selects, it never supplies.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from diag.inventory import Host, Inventory
from diag.remote import facts

_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*[A-Za-z0-9_]|[A-Za-z0-9_]")


@dataclass(slots=True)
class Subject:
    """The hosts found and how (one line a person can read on the ticket)."""

    hosts: list[Host]
    how: str


def _login(requester: str) -> str:
    """``ivanova`` from ``ivanova``, ``Ivanova <ivanova@corp.example>`` or ``ivanova@corp.example``."""
    m = re.search(r"<([^>]+)>", requester)
    addr = m.group(1) if m else requester
    return addr.split("@", 1)[0].strip().lower()


def find(
    inventory: Inventory,
    subject: str,
    text: str,
    requester: str,
    fields: Mapping[str, str],
    *,
    data_dir: Path | None = None,
    field_name: str = "host",
) -> Subject | None:
    """The hosts the ticket is about, or None when nothing in it names one."""
    value = (fields.get(field_name) or "").strip()
    if value:
        if value in inventory.hosts:
            return Subject([inventory.hosts[value]], f"the ticket's {field_name!r} field names host {value}")
        if value in inventory.groups:
            hosts = inventory.select([value])
            if hosts:
                return Subject(hosts, f"the ticket's {field_name!r} field names group {value}")
    found = _in_text(inventory, subject + "\n" + text)
    if found:
        names = ", ".join(h.name for h in found)
        return Subject(found, f"the ticket names {names}")
    if data_dir is not None and requester:
        login = _login(requester)
        known = [n for n in facts.hosts(data_dir) if n in inventory.hosts]
        mine = [inventory.hosts[n] for n in known if login in _users(data_dir, n)]
        if len(mine) == 1:
            return Subject(mine, f"{mine[0].name} is the workstation {login} uses (facts inventory)")
    return None


def _in_text(inventory: Inventory, text: str) -> list[Host]:
    words = {w.lower().rstrip(".:") for w in _WORD.findall(text)}
    by_addr = {}
    for h in inventory.hosts.values():
        try:
            by_addr[str(ipaddress.ip_address(h.address))] = h
        except ValueError:
            by_addr[h.address.lower()] = h
    out: dict[str, Host] = {}
    for w in sorted(words):
        for h in inventory.hosts.values():
            if w == h.name.lower():
                out[h.name] = h
        if w in by_addr:
            out[by_addr[w].name] = by_addr[w]
    return list(out.values())


def _users(data_dir: Path, host: str) -> set[str]:
    doc = facts.latest(data_dir, host) or {}
    rows = (doc.get("facts") or {}).get("users") or []
    return {str(r.get("login", "")).lower() for r in rows if isinstance(r, dict)}
