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

from diag.distributed import keys
from diag.errors import DiagError
from diag.inventory import Host
from diag.model import HostResult, RunReport
from diag.remote.playbook import Playbook
from diag.remote.runner import Progress

#: Seconds between checks that the broker is still the server the run was queued on (``run_id`` of INFO).
BROKER_CHECK_S = 1.0


class BrokerLost(DiagError):
    """Redis went away (or restarted) before every host was recorded; ``report`` holds what was.

    Hosts recorded before the loss keep their results; the others are ``error`` results that say so. ``str()`` is
    the one line ``diag check`` prints; it exits 3 (a host could not be checked) after printing the report.
    """

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


class BrokerRestarted(Exception):
    """Redis answers again but as a new server: what was queued and recorded there may be gone."""


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
        namespace: str = "",
    ) -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        from diag.distributed.app import SOCKET_TIMEOUT_S, make_app

        self.app = make_app(redis_url, visibility_timeout, namespace)
        self.namespace = namespace
        self.redis_url = redis_url
        # Two quick retries ride out a reset connection; a broker that is gone fails the run within a second
        # instead of redis-py's default ten retries with back-off.
        self.redis = redis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2),
        )
        self._server_id = ""
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
        self._server_id = self._broker_identity()
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

    def _broker_identity(self) -> str:
        """The Redis server's ``run_id``: a new one means the broker restarted (and may have lost the queues)."""
        return str(self.redis.info("server").get("run_id", ""))

    def collect(
        self,
        run_id: str,
        targets: Sequence[Host],
        progress: Progress | None = None,
        got: dict[str, HostResult] | None = None,
    ) -> list[HostResult]:
        """Wait for every target's result (up to ``timeout_s``); a host nobody finished is an ``error``.

        ``got`` receives each result as it is read, so a caller still has them when the broker is lost (the
        redis-py ConnectionError, or :class:`BrokerLost` when Redis came back as a new server).
        """
        from diag.distributed.app import queue_for
        from diag.distributed.codec import host_result_from_dict

        got = {} if got is None else got
        deadline = time.monotonic() + self.timeout_s
        next_check = time.monotonic() + BROKER_CHECK_S
        wanted = {h.name for h in targets}
        while wanted - set(got) and time.monotonic() < deadline:
            for name, raw in self.redis.hgetall(keys.results(run_id, self.namespace)).items():
                if name in got or name not in wanted:
                    continue
                got[name] = host_result_from_dict(json.loads(raw))
                if progress:
                    progress("done", name, got[name])
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + BROKER_CHECK_S
                if self._server_id and self._broker_identity() != self._server_id:
                    raise BrokerRestarted("Redis restarted (a new run_id) while hosts were queued")
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
        import kombu.exceptions
        import redis

        t0 = time.monotonic()
        got: dict[str, HostResult] = {}
        try:
            run_id, targets, skipped = self.dispatch(hosts, pb, variables, allow_changes, progress)
            results = self.collect(run_id, targets, progress, got)
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            kombu.exceptions.OperationalError,
            BrokerRestarted,
        ) as e:
            raise self._lost(e, hosts, pb, got, time.monotonic() - t0) from e
        return RunReport(pb.name, results, skipped, time.monotonic() - t0)

    def _lost(
        self, e: Exception, hosts: Sequence[Host], pb: Playbook, got: dict[str, HostResult], took: float
    ) -> BrokerLost:
        """The report of a run whose broker went away: recorded hosts as they were, the others ``error``."""
        from urllib.parse import urlsplit

        where = urlsplit(self.redis_url)
        broker = f"redis://{where.hostname}:{where.port or 6379}{where.path}"  # never the password
        cause = " ".join(str(e).split())[:200] or type(e).__name__
        results: list[HostResult] = []
        skipped: list[dict[str, str]] = []
        for h in hosts:
            reason = pb.applies(h.device_type, h.tags)
            if reason:
                skipped.append({"host": h.name, "reason": reason})
            else:
                results.append(got.get(h.name) or HostResult(h.name, "error", f"not recorded: broker {broker} lost"))
        lost = sum(1 for r in results if r.host not in got)
        msg = f"broker {broker} lost ({cause}): {len(got)} of {len(results)} hosts recorded, {lost} not"
        return BrokerLost(msg, RunReport(pb.name, results, skipped, took))

    def attempts(self, run_id: str | None = None) -> dict[str, int]:
        """How many times workers started each host of a run (more than 1 means a redelivery)."""
        raw = self.redis.hgetall(keys.attempts(run_id or self.last_run_id, self.namespace))
        return {str(k): int(v) for k, v in raw.items()}

    def events(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The run's event log in order: ``{"host", "worker", "event": "start"|"finish", "at": epoch seconds}``."""
        raw = self.redis.lrange(keys.events(run_id or self.last_run_id, self.namespace), 0, -1)
        return [json.loads(x) for x in raw]

    def workers(self, run_id: str | None = None) -> dict[str, str]:
        """Which worker recorded each host's result."""
        raw = self.redis.hgetall(keys.results(run_id or self.last_run_id, self.namespace))
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
