"""``diag worker`` and ``diag scheduler``: the scale-out processes (Celery worker, leader-elected scheduler)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from diag.cli.common import DEFAULT_DATA, positive_int, seconds

log = logging.getLogger(__name__)

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
NAMESPACE_HELP = "keep this deployment's queues and keys apart from others on the same Redis (default $DIAG_NAMESPACE)"


def redis_url(value: str | None) -> str:
    """``--redis`` or $DIAG_REDIS_URL; a URL with a password may be given by reference (env:NAME, file:PATH)."""
    from diag.secrets import SecretRef, is_reference

    v = value or os.environ.get("DIAG_REDIS_URL") or DEFAULT_REDIS
    return SecretRef(v).reveal() if is_reference(v) else v


def shared_incidents(args: argparse.Namespace) -> Any:
    """The incident service on the shared store named by the inventory's ``agent.incidents.database_url``."""
    from diag import inventory, yamlsrc
    from diag.cli.common import inventory_path
    from diag.errors import ConfigError
    from diag.incidents.service import IncidentService
    from diag.incidents.settings import build

    inv = inventory.load(inventory_path(args, required=True) or "inventory.yaml")
    doc = inv.doc or yamlsrc.Doc(inv.file, {})
    raw = inv.agent.get("incidents")
    settings = build(doc, raw, Path(args.data)) if raw is not None else None
    if doc.problems:
        raise ConfigError(doc.problems)
    if settings is None or not settings.database_url:
        raise ConfigError(
            f"{inv.file}:1: --incidents needs agent.incidents.database_url (a PostgreSQL store shared by the workers)"
        )
    service = IncidentService(settings, inv.hosts)
    service.start()  # one process at a time drains the shared outbox (PgStore.may_deliver)
    return service


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the Celery worker in this process; its exit status is Celery's (non-zero on an unrecoverable error).

    ``app.worker_main`` drops the status Celery's command computes (it returns None), so a worker that gave up
    on a lost broker used to exit 0 and a restart-on-failure unit would not bring it back; ``app.Worker`` keeps it.
    """
    from diag.config import parse_listen
    from diag.distributed import keys, tasks, worker_metrics
    from diag.distributed.app import DEFAULT_QUEUE, check_broker_url, make_app, queue_for
    from diag.errors import ConfigError

    # Every option is checked before anything is set up: a bad one is one line and exit 2, nothing half-started.
    url = check_broker_url(redis_url(args.redis))
    ns = keys.namespace(args.namespace)
    if args.broker_retries < 0:
        raise ConfigError("--broker-retries must be 0 or more")
    listen = None
    if args.metrics_listen:
        try:
            listen = parse_listen(args.metrics_listen)
        except ValueError as e:  # was a ValueError traceback
            raise ConfigError(f"--metrics-listen: {e}") from None
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    tasks.SETTINGS = tasks.WorkerSettings(
        redis_url=url,
        known_hosts=[Path(p) for p in args.known_hosts] if args.known_hosts else None,
        data=Path(args.data),
        name=name,
        namespace=ns,
    )
    if args.incidents:
        tasks.SETTINGS.incidents = shared_incidents(args)
    queues = [queue_for(s) for s in args.site] if args.site else [DEFAULT_QUEUE]
    if args.site and args.any_site:
        queues.append(DEFAULT_QUEUE)
    if listen is not None:
        host, port = listen
        if args.export_snmp:  # this worker's /metrics also renders every device the fleet polled
            import redis

            from diag.distributed.snmp_fleet import FleetSnmpCollector

            worker_metrics.REGISTRY.register(FleetSnmpCollector(redis.Redis.from_url(url), namespace=ns))
        worker_metrics.serve(host, port)
    app = make_app(url, args.visibility_timeout, ns, args.broker_retries)
    worker = app.Worker(
        hostname=f"{name}@{socket.gethostname()}",
        pool_cls="threads",
        concurrency=args.concurrency,
        queues=queues,
        loglevel=args.log_level,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
    )
    worker.start()
    code = int(worker.exitcode or 0)
    if code:
        log.error("worker %s: stopped on an unrecoverable error (exit %d); see the log above", name, code)
    return code


def cmd_scheduler(args: argparse.Namespace) -> int:
    import redis

    from diag.cli.common import DEFAULT_INVENTORY, inventory_path, load_inventory
    from diag.distributed import keys
    from diag.distributed.app import make_app
    from diag.distributed.backend import CeleryBackend, dispatch_snmp
    from diag.distributed.leader import Leadership
    from diag.distributed.scheduler import DistributedScheduler, ScheduledCheck, load_schedule
    from diag.errors import ConfigError
    from diag.remote import playbook as pbmod

    inv_path = inventory_path(args, required=True) or DEFAULT_INVENTORY
    inv = load_inventory(inv_path)

    def playbook_exists(name: str) -> bool:
        try:
            pbmod.find(name)
        except ConfigError:
            return False
        return True

    jobs = load_schedule(args.schedule, inv, playbook_exists)  # every typo of the file, each FILE:LINE
    url = redis_url(args.redis)
    ns = keys.namespace(args.namespace)
    backends: dict[str, tuple[CeleryBackend, Any]] = {}
    app = make_app(url, namespace=ns)
    for job in jobs:  # resolve every playbook and target now: a typo is an error at start, not at 3 a.m.
        inv.select(job.targets)
        if job.kind == "check" and job.playbook not in backends:
            path = pbmod.find(job.playbook)
            backends[job.playbook] = (CeleryBackend(url, inv_path, path, namespace=ns), pbmod.load(path))

    def fire(job: ScheduledCheck, slot: int) -> None:
        if job.kind == "snmp":
            dispatch_snmp(app, inv_path, inv.select(job.targets))
            return
        backend, pb = backends[job.playbook]
        backend.dispatch(inv.select(job.targets), pb, job.vars)

    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    client = redis.Redis.from_url(url)
    leadership = Leadership(client, name, ttl_s=args.ttl, key=keys.key(ns, keys.LEADER))
    sched = DistributedScheduler(client, leadership, jobs, fire, namespace=ns)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("scheduler %s: %d jobs, campaigning for leadership", name, len(jobs))
    sched.run(stop, args.tick)
    return 0


def add_commands(sub: Any) -> None:
    """Register ``worker`` and ``scheduler`` on the ``diag`` subparsers."""

    w = sub.add_parser("worker", help="run a Celery worker that checks hosts for distributed runs (Redis broker)")
    w.add_argument("--redis", help=f"broker URL or env:NAME (default $DIAG_REDIS_URL or {DEFAULT_REDIS})")
    w.add_argument("--site", action="append", help="take only hosts of this site (repeatable)")
    w.add_argument("--any-site", action="store_true", help="with --site: also take hosts that have no site")
    w.add_argument("--concurrency", type=positive_int, default=50, help="hosts checked at once (threads, default 50)")
    w.add_argument("--known-hosts", action="append", metavar="FILE", help="known_hosts file (repeatable)")
    w.add_argument("--data", default=DEFAULT_DATA, help="data directory (TOFU host keys)")
    w.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve the worker's own /metrics here")
    w.add_argument(
        "--incidents",
        action="store_true",
        help="feed results into the shared incident store (agent.incidents.database_url of --inventory)",
    )
    w.add_argument("--inventory", "-i", help="with --incidents: the inventory with the agent.incidents section")
    w.add_argument("--export-snmp", action="store_true", help="with --metrics-listen: also serve the fleet's SNMP")
    w.add_argument(
        "--visibility-timeout",
        type=seconds,
        default=300.0,
        help="seconds before a lost host is redelivered",
    )
    w.add_argument("--namespace", help=NAMESPACE_HELP)
    w.add_argument(
        "--broker-retries",
        type=int,
        default=100,
        help="reconnect tries after the broker is lost (2 s more back-off each, up to 30 s) before exiting 1",
    )
    w.add_argument("--name", help="worker name in results and logs (default HOST-PID)")
    w.add_argument("--log-level", default="WARNING")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("scheduler", help="fire scheduled checks on the workers; one scheduler leads, others wait")
    s.add_argument("--redis", help=f"broker URL or env:NAME (default $DIAG_REDIS_URL or {DEFAULT_REDIS})")
    s.add_argument("--schedule", required=True, help="schedule file (YAML, see docs/distributed.md)")
    s.add_argument("--inventory", "-i", help="inventory file (default: ./inventory.yaml)")
    s.add_argument("--tick", type=seconds, default=1.0, help="seconds between scheduler ticks")
    s.add_argument("--ttl", type=seconds, default=10.0, help="leader lock TTL in seconds (hand-over time)")
    s.add_argument("--name", help="scheduler identity (default HOST-PID)")
    s.add_argument("--namespace", help=NAMESPACE_HELP)
    s.set_defaults(func=cmd_scheduler)
