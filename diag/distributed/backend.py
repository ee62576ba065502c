"""The Celery backend of "run a check" (:mod:`diag.services.backends`): one task per host on ``diag worker`` processes.

It takes the same inputs and returns the same :class:`~diag.model.RunReport` as the in-process backend, so
``diag check`` renders and exits the same way whichever ran it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diag.inventory import Host
from diag.model import HostResult, RunReport
from diag.remote.playbook import Playbook
from diag.remote.runner import Progress


class CeleryBackend:
    """Sends one task per host to Celery workers (queue by site) and collects the results from Redis.

    Workers load the inventory and the playbook from the same paths on their machine (deployed with the
    agent's configuration), so secrets are resolved on the worker and never travel through the broker.
    """

    def __init__(
        self,
        redis_url: str,
        inventory_path: str | Path,
        playbook_path: str | Path,
        timeout_s: float = 3600.0,
        visibility_timeout: float = 300.0,
        poll_s: float = 0.05,
    ) -> None:
        import redis

        from diag.distributed.app import make_app

        self.app = make_app(redis_url, visibility_timeout)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.inventory_path = str(Path(inventory_path).resolve())
        self.playbook_path = str(Path(playbook_path).resolve())
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.last_run_id = ""

    def dispatch(
        self,
        hosts: Sequence[Host],
        pb: Playbook,
        variables: Mapping[str, Any] | None = None,
        allow_changes: bool = False,
        progress: Progress | None = None,
    ) -> tuple[str, list[Host], list[dict[str, str]]]:
        """Queue one task per host the playbook applies to; returns (run id, targets, skipped) at once."""
        from diag.distributed.app import queue_for
        from diag.distributed.tasks import CHECK_HOST

        run_id = self.last_run_id = uuid.uuid4().hex
        targets: list[Host] = []
        skipped: list[dict[str, str]] = []
        for h in hosts:
            reason = pb.applies(h.device_type, h.tags)
            if reason:
                skipped.append({"host": h.name, "reason": reason})
            else:
                targets.append(h)
        for h in targets:
            spec = {
                "inventory": self.inventory_path,
                "playbook": self.playbook_path,
                "host": h.name,
                "vars": dict(variables or {}),
                "allow_changes": allow_changes,
            }
            self.app.send_task(CHECK_HOST, args=[run_id, spec], queue=queue_for(h.site))
            if progress:
                progress("start", h.name, None)
        return run_id, targets, skipped

    def collect(self, run_id: str, targets: Sequence[Host], progress: Progress | None = None) -> list[HostResult]:
        """Wait for every target's result (up to ``timeout_s``); a host nobody finished is an ``error``."""
        from diag.distributed.app import queue_for
        from diag.distributed.codec import host_result_from_dict
        from diag.distributed.tasks import results_key

        got: dict[str, HostResult] = {}
        deadline = time.monotonic() + self.timeout_s
        wanted = {h.name for h in targets}
        while wanted - set(got) and time.monotonic() < deadline:
            for name, raw in self.redis.hgetall(results_key(run_id)).items():
                key = name
                if key in got or key not in wanted:
                    continue
                got[key] = host_result_from_dict(json.loads(raw))
                if progress:
                    progress("done", key, got[key])
            if wanted - set(got):
                time.sleep(self.poll_s)
        results = []
        for h in targets:
            r = got.get(h.name)
            if r is None:
                why = f"no worker on queue {queue_for(h.site)} finished this host in {self.timeout_s:g} s"
                r = HostResult(h.name, "error", why)
            results.append(r)
        return results

    def run_check(
        self,
        hosts: Sequence[Host],
        pb: Playbook,
        variables: Mapping[str, Any] | None = None,
        allow_changes: bool = False,
        progress: Progress | None = None,
    ) -> RunReport:
        t0 = time.monotonic()
        run_id, targets, skipped = self.dispatch(hosts, pb, variables, allow_changes, progress)
        results = self.collect(run_id, targets, progress)
        return RunReport(pb.name, results, skipped, time.monotonic() - t0)

    def attempts(self, run_id: str | None = None) -> dict[str, int]:
        """How many times workers started each host of a run (more than 1 means a redelivery)."""
        from diag.distributed.tasks import attempts_key

        raw = self.redis.hgetall(attempts_key(run_id or self.last_run_id))
        return {str(k): int(v) for k, v in raw.items()}

    def workers(self, run_id: str | None = None) -> dict[str, str]:
        """Which worker recorded each host's result."""
        from diag.distributed.tasks import results_key

        raw = self.redis.hgetall(results_key(run_id or self.last_run_id))
        return {str(k): json.loads(v).get("worker", "") for k, v in raw.items()}


def dispatch_snmp(app: Any, inventory_path: str | Path, hosts: Sequence[Host]) -> int:
    """Queue one SNMP poll per device that has ``snmp.profiles`` (queue by site); returns how many."""
    from diag.distributed.app import queue_for
    from diag.distributed.tasks import SNMP_POLL

    path = str(Path(inventory_path).resolve())
    n = 0
    for h in hosts:
        if h.snmp.get("profiles"):
            app.send_task(SNMP_POLL, args=[{"inventory": path, "host": h.name}], queue=queue_for(h.site))
            n += 1
    return n
