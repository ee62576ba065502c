"""Topology from the inventory's ``parents``: which hosts sit behind which devices.

When a device and the hosts behind it fail together, the device is DOWN and the hosts behind it are
UNREACHABLE (Nagios' distinction): diag opens one incident, on the device nearest the root that is down,
and lists the hosts behind it as impact. Only "the host is down" checks (``down_checks``: host_unreachable,
snmp_not_answering, ...) take part; a full disk behind a dead switch is still its own problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class Topology:
    """Parents of each host (from the inventory) and the checks that mean "this host is down"."""

    def __init__(self, parents: Mapping[str, Sequence[str]], down_checks: Iterable[str]) -> None:
        self.parents = {h: tuple(p) for h, p in parents.items() if p}
        self.down_checks = frozenset(down_checks)
        self._depth: dict[str, int] = {}

    def is_down_check(self, check: str) -> bool:
        return check in self.down_checks

    def ancestors(self, host: str) -> list[str]:
        """Every host upstream of ``host``, nearest first (breadth first; the inventory rejects cycles)."""
        out: list[str] = []
        frontier = list(self.parents.get(host, ()))
        while frontier:
            nxt: list[str] = []
            for p in frontier:
                if p not in out and p != host:
                    out.append(p)
                    nxt.extend(self.parents.get(p, ()))
            frontier = nxt
        return out

    def depth(self, host: str) -> int:
        """How many hops from the root: parents sort before the hosts behind them."""
        if host not in self._depth:
            anc = self.parents.get(host, ())
            self._depth[host] = 0 if not anc else 1 + max(self.depth(p) for p in anc if p != host)
        return self._depth[host]

    def root_cause(self, host: str, is_down: Iterable[str]) -> str | None:
        """The down device nearest the root among ``host``'s ancestors, or None when none is down."""
        down = set(is_down)
        candidates = [a for a in self.ancestors(host) if a in down]
        if not candidates:
            return None
        return min(candidates, key=lambda a: (self.depth(a), a))


def from_inventory(hosts: Mapping[str, object], down_checks: Iterable[str]) -> Topology:
    """A Topology from resolved inventory hosts (anything with ``parents``)."""
    return Topology({name: tuple(getattr(h, "parents", ())) for name, h in hosts.items()}, down_checks)
