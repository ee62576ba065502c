"""The worker side: check one host of a distributed run and record its result exactly once in Redis."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diag.distributed import keys

log = logging.getLogger(__name__)

CHECK_HOST = "diag.check_host"
SNMP_POLL = "diag.snmp_poll"
SNMP_LATEST_KEY = keys.SNMP_LATEST
RESULT_TTL_S = 24 * 3600

results_key = keys.results
attempts_key = keys.attempts
snmp_state_key = keys.snmp_state


@dataclass
class WorkerSettings:
    """What a worker process knows of its own machine (set by ``diag worker`` before it starts Celery)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    known_hosts: list[Path] | None = None
    data: Path = Path(".diag")
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    #: The shared incident service (PostgreSQL store) when the worker was started with ``--incidents``: each
    #: host's first recorded result is observed by the engine, so scheduled checks open and close tickets.
    incidents: Any = None
    #: The deployment's namespace (``--namespace``): every key this worker writes starts with it.
    namespace: str = ""


SETTINGS = WorkerSettings()
_redis: Any = None
_loaded: dict[tuple[str, str], tuple[float, Any]] = {}


def _client() -> Any:
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(SETTINGS.redis_url)
    return _redis


def _cached(kind: str, path: str, loader: Any) -> Any:
    """Inventory and playbooks are parsed once per worker and again only when the file changes."""
    mtime = Path(path).stat().st_mtime
    hit = _loaded.get((kind, path))
    if hit is not None and hit[0] == mtime:
        return hit[1]
    obj = loader(path)
    _loaded[(kind, path)] = (mtime, obj)
    return obj


def check_host(task: Any, run_id: str, spec: dict[str, Any]) -> str:
    """Run ``spec['playbook']`` on ``spec['host']``; returns 'done', 'duplicate' or the failure status."""
    from diag import inventory
    from diag.model import HostResult
    from diag.remote import playbook as pbmod

    r = _client()
    name = spec["host"]
    ns = SETTINGS.namespace
    try:
        if r.hexists(results_key(run_id, ns), name):
            return "duplicate"  # a redelivery of a host another worker already finished
        pipe = r.pipeline()
        pipe.hincrby(attempts_key(run_id, ns), name, 1)
        pipe.expire(attempts_key(run_id, ns), RESULT_TTL_S)
        _event(pipe, run_id, name, "start")
        pipe.execute()
    except _redis_errors() as e:
        _broker_lost(task, name, e)
    t0 = time.monotonic()
    loaded = False
    try:
        inv = _cached("inventory", spec["inventory"], inventory.load)
        pb = _cached("playbook", spec["playbook"], pbmod.load)
        host = inv.hosts[name]
        loaded = True
    except Exception as e:  # the worker's copy of the inventory or playbook is broken or lacks the host
        res = HostResult(name, "error", f"worker {SETTINGS.name}: {' '.join(str(e).split())[:300]}")
    else:
        res = _run_one(host, pb, inv, spec, run_id)
    doc = res.to_dict()
    doc["worker"] = SETTINGS.name
    doc["worker_duration_s"] = round(time.monotonic() - t0, 3)
    pipe = r.pipeline()
    pipe.hsetnx(results_key(run_id, ns), name, json.dumps(doc, default=str))
    pipe.expire(results_key(run_id, ns), RESULT_TTL_S)
    _event(pipe, run_id, name, "finish")
    try:
        first = pipe.execute()[0]
    except _redis_errors() as e:
        _broker_lost(task, name, e)
    if first and loaded and SETTINGS.incidents is not None:
        _to_incidents(res, pb, host, inv, spec)
    _observe(res.status, time.monotonic() - t0)
    return "done" if first else "duplicate"


def _run_one(host: Any, pb: Any, inv: Any, spec: dict[str, Any], run_id: str, allow: bool | None = None) -> Any:
    """One host through the use case "run a check" (:mod:`diag.services.check`), as ``diag check`` runs it."""
    from diag.model import HostResult
    from diag.remote.ssh import SSHPool
    from diag.services import check as svc
    from diag.services.backends import LocalBackend

    allow_changes = bool(spec.get("allow_changes", False)) if allow is None else allow
    req = svc.CheckRequest(pb, [host], spec.get("vars", {}), allow_changes, actor=f"worker:{SETTINGS.name}", job=run_id)
    ssh = SSHPool(known_hosts=SETTINGS.known_hosts, tofu_store=SETTINGS.data / "known_hosts.tofu", hosts=inv.hosts)
    backend = LocalBackend.over(ssh, [host])  # a network device's steps go through its CLI driver
    try:
        report = svc.run(req, backend)
    finally:
        backend.close()
    if report.results:
        return report.results[0]
    why = report.skipped[0]["reason"] if report.skipped else "the playbook did not run"
    return HostResult(host.name, "error", f"worker {SETTINGS.name}: {why}")


def _event(pipe: Any, run_id: str, host: str, what: str) -> None:
    """Append ``what`` happened to ``host`` on this worker to the run's event log (with the pipeline's commands).

    The log (``diag:run:<id>:events``) shows a redelivery as it happened: the killed worker's ``start``, then
    another worker's ``start`` and ``finish`` of the same host, with wall-clock times.
    """
    key = keys.events(run_id, SETTINGS.namespace)
    pipe.rpush(key, json.dumps({"host": host, "worker": SETTINGS.name, "event": what, "at": time.time()}))
    pipe.expire(key, RESULT_TTL_S)


def _redis_errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _broker_lost(task: Any, host: str, e: Exception) -> None:
    """Redis went away mid-task: leave the message for redelivery instead of failing it with a traceback.

    ``Reject(requeue=True)`` puts the message back when the broker answers again; when it does not, the message
    stays in kombu's unacknowledged set (on a Redis that persists) and is re-sent after the visibility timeout.
    The result was not recorded, so the host is checked again: at least once, never lost.
    """
    from celery.exceptions import Reject

    log.warning("worker %s: Redis lost while checking %s (%s); left for redelivery", SETTINGS.name, host, e)
    raise Reject(str(e), requeue=True) from e


def _to_incidents(res: Any, pb: Any, host: Any, inv: Any, spec: dict[str, Any]) -> None:
    """Observe a host's result in the shared incident engine; the re-check runs the playbook on it again.

    Only the first recorded result of a host gets here (HSETNX above), so a redelivered task never counts an
    occurrence twice. An engine error is logged, never fails the task: the result is already safe in Redis.
    """
    from diag.incidents.sources import observe_report
    from diag.model import RunReport

    def recheck(name: str) -> list[Any]:
        from diag.incidents.sources import recheck_findings

        return recheck_findings(_run_one(host, pb, inv, spec, "recheck", allow=False))

    try:
        observe_report(
            SETTINGS.incidents.engine, RunReport(pb.name, [res]), recheck, source="worker", variables=spec.get("vars")
        )
    except Exception:
        log.exception("worker %s: incident engine could not take %s's result", SETTINGS.name, res.host)


def snmp_poll(task: Any, spec: dict[str, Any]) -> str:
    """Poll one SNMP device; its poll state lives in Redis so the next cycle may run on any worker."""
    from diag import inventory
    from diag.distributed.codec import result_to_dict, state_from_dict, state_to_dict
    from diag.network.snmp.poller import poll_device
    from diag.network.snmp.profiles import PollState

    r = _client()
    name = spec["host"]
    t0 = time.monotonic()
    inv = _cached("inventory", spec["inventory"], inventory.load)
    host = inv.hosts.get(name)
    if host is None:
        log.warning("worker %s: SNMP device %s is not in %s", SETTINGS.name, name, spec["inventory"])
        return "unknown_host"
    ns = SETTINGS.namespace
    raw = r.get(snmp_state_key(name, ns))
    state = state_from_dict(json.loads(raw)) if raw else PollState()
    result = poll_device(host, state)
    doc = {"at": time.time(), "worker": SETTINGS.name, "result": result_to_dict(result)}
    pipe = r.pipeline()
    pipe.set(snmp_state_key(name, ns), json.dumps(state_to_dict(state)), ex=RESULT_TTL_S)
    pipe.hset(keys.key(ns, SNMP_LATEST_KEY), name, json.dumps(doc, default=str))
    pipe.execute()
    if SETTINGS.incidents is not None:
        try:  # a full report of the device: new findings open, missing ones clear after a re-poll confirms
            SETTINGS.incidents.engine.observe(
                "snmp",
                f"snmp:{name}",
                list(result.findings),
                recheck=lambda: poll_device(host, PollState(dict(state.values), state.polled_at)),
                gaps=result.gaps,  # a timeout or a cut walk: what it could not see holds, not clears
            )
        except Exception:
            log.exception("worker %s: incident engine could not take %s's SNMP poll", SETTINGS.name, name)
    status = "ok" if not result.findings else "findings"
    _observe(status, time.monotonic() - t0)
    return status


def _observe(status: str, seconds: float) -> None:
    from diag.distributed import worker_metrics

    worker_metrics.observe(status, seconds)
