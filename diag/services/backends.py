"""Where a check's per-host work runs: in this process over SSH (the default) or on Celery workers.

Every backend takes the same inputs and returns the same :class:`~diag.model.RunReport`, so a front door renders
and exits the same way whichever ran it. :func:`ssh_pool` builds the one SSH pool that a local run uses
(host keys verified against ``known_hosts`` plus the data directory's TOFU store); network devices among the
hosts are reached through their CLI drivers (:func:`diag.network.devices.pool_for`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from diag.inventory import Host
    from diag.model import RunReport
    from diag.remote.playbook import Playbook
    from diag.remote.runner import PoolLike, Progress
    from diag.remote.ssh import SSHPool


class CheckBackend(Protocol):
    """Runs a playbook on hosts and returns every host's result, in the order of ``hosts``."""

    def run_check(
        self,
        hosts: Sequence[Host],
        pb: Playbook,
        variables: Mapping[str, Any] | None = None,
        allow_changes: bool = False,
        progress: Progress | None = None,
    ) -> RunReport: ...


class LocalBackend:
    """The in-process thread pool over one connection pool (SSH, or devices' CLI drivers around it)."""

    def __init__(self, pool: PoolLike) -> None:
        self.pool = pool

    @classmethod
    def over(cls, ssh: SSHPool, hosts: Iterable[Host]) -> LocalBackend:
        """A backend for ``hosts``: network devices among them go through their CLI driver on ``ssh``."""
        from diag.network.devices import pool_for

        return cls(pool_for(ssh, hosts))

    def run_check(
        self,
        hosts: Sequence[Host],
        pb: Playbook,
        variables: Mapping[str, Any] | None = None,
        allow_changes: bool = False,
        progress: Progress | None = None,
    ) -> RunReport:
        from diag.remote.runner import run_check

        return run_check(hosts, pb, self.pool, variables, allow_changes, progress)

    def close(self) -> None:
        """Close every connection (device sessions and the SSH pool under them)."""
        close = getattr(self.pool, "close_all", None)  # test pools of recorded outputs have nothing to close
        if close is not None:
            close()


def ssh_pool(
    data: Path,
    hosts: Mapping[str, Host] | None,
    known_hosts: Iterable[Path] | None = None,
    concurrency: int = 50,
) -> SSHPool:
    """The SSH pool of a local run: verified host keys, TOFU store under ``data``, inventory hosts for jump hosts."""
    from diag.remote.ssh import SSHPool

    return SSHPool(
        known_hosts=list(known_hosts) if known_hosts else None,
        tofu_store=Path(data) / "known_hosts.tofu",
        max_concurrency=concurrency,
        hosts=hosts,
    )
