"""Who may do what: roles (viewer < engineer < lead < admin) and scopes (host groups, playbooks).

Roles follow the support lines (docs/api.md): a viewer (NOC, line 1) reads; an engineer (line 2) runs
read-only playbooks on the host groups and playbooks granted to them, and works incidents; a lead (line 3)
approves steps that change hosts, verifies knowledge-base entries and reads the journal; an admin may do
everything. Scopes bind engineers and leads alike; ``*`` grants every group or playbook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from diag.api.tokens import Principal, Role

if TYPE_CHECKING:
    from diag.inventory import Host


class Forbidden(Exception):
    """The principal is known but not allowed: a 403 with this reason."""


def require(p: Principal, role: Role, what: str) -> None:
    if not p.at_least(role):
        raise Forbidden(f"{what} needs the {role} role; token {p.name!r} is a {p.role}")


def playbook_allowed(p: Principal, playbook: str) -> bool:
    return p.role == "admin" or "*" in p.playbooks or playbook in p.playbooks


def host_allowed(p: Principal, host: Host) -> bool:
    return groups_allowed(p, host.groups)


def groups_allowed(p: Principal, groups: Iterable[str]) -> bool:
    """Is a host in these groups within the token's scope?"""
    return p.role == "admin" or "*" in p.groups or any(g in p.groups for g in groups)


def hosts_outside(p: Principal, hosts: Iterable[Host]) -> list[str]:
    return [h.name for h in hosts if not host_allowed(p, h)]


def check_run(p: Principal, playbook: str, hosts: Sequence[Host]) -> None:
    """May ``p`` run (or ask to run) ``playbook`` on ``hosts``? Raise Forbidden naming what is outside."""
    require(p, "engineer", "starting a check")
    if not playbook_allowed(p, playbook):
        raise Forbidden(f"playbook {playbook!r} is not granted to token {p.name!r}")
    outside = hosts_outside(p, hosts)
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        raise Forbidden(f"host(s) {shown} are outside the host groups granted to token {p.name!r}")


def approve(p: Principal, requester: str, playbook: str, hosts: Sequence[Host]) -> None:
    """A lead (or admin) within scope, and not the one who asked: changes need a second pair of eyes."""
    approve_recorded(p, requester, playbook, [list(h.groups) for h in hosts])


def approve_recorded(p: Principal, requester: str, playbook: str, host_groups: Sequence[Sequence[str]]) -> None:
    """:func:`approve` judged on the groups of each host (as a request recorded them, when its playbook or hosts
    are gone from the agent)."""
    require(p, "lead", "approving a change")
    if p.actor == requester:
        raise Forbidden("a change cannot be approved by the token that requested it")
    if not playbook_allowed(p, playbook) or not all(groups_allowed(p, g) for g in host_groups):
        raise Forbidden(f"the request's playbook or hosts are outside the scope of token {p.name!r}")


def incident_action(p: Principal, what: str, host: Host | None, host_name: str) -> None:
    """Working an incident (acknowledge, assign, note, resolve): an engineer on a host in their groups."""
    require(p, "engineer", what)
    if p.role == "admin" or "*" in p.groups:
        return
    if host is None or not host_allowed(p, host):
        raise Forbidden(f"host {host_name!r} is outside the host groups granted to token {p.name!r}")
