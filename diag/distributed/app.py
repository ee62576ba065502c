"""The Celery application: Redis as broker, late acknowledgement, one task per host of a check.

Why these settings (docs/distributed.md has the long form):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after its result is
  recorded, so a worker killed mid-host leaves the message unacknowledged and a live worker puts it back on its
  queue once ``visibility_timeout`` has passed.
- ``unacked_restore_interval`` / ``unacked_restore_throttle``: how often a worker looks for such messages. kombu's
  defaults (every 10 s, but only every 10th look scans Redis) made a killed worker's hosts come back after ~100 s
  whatever the visibility timeout said; here every look scans, once per ``RESTORE_INTERVAL_S``, so a lost host is
  re-sent within ``visibility_timeout + RESTORE_INTERVAL_S`` (plus the time a free worker needs to take it).
- ``global_keyprefix``: with a namespace every broker key (queues, bindings, unacknowledged messages and their
  index, the restore mutex) starts with ``<namespace>:``, like diag's own keys (:mod:`diag.distributed.keys`).
- ``worker_prefetch_multiplier = 1``: a worker takes one message per free thread, so a dying worker strands
  as few hosts as possible and a slow worker does not hoard work.
- Results do not use Celery's result backend: the first complete result per (run, host) is written with
  HSETNX to a Redis hash by the worker itself (see :mod:`diag.distributed.tasks`). A redelivered message for a
  host that already has a result is dropped, so each host is recorded exactly once.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from diag.distributed import keys

#: Queue for hosts without a site; hosts with ``site: X`` go to ``diag.site.X`` (workers near that segment).
DEFAULT_QUEUE = "diag"

#: Seconds between a worker's scans for messages unacknowledged longer than the visibility timeout. One scan is
#: a ZRANGE on the unacked index under a short mutex, cheap enough for every worker every second.
RESTORE_INTERVAL_S = 1

#: Seconds a Redis socket may stay silent (connect, or an answer) before the connection counts as lost; without
#: it a broker that vanished without closing the TCP connection would hang a publish forever.
SOCKET_TIMEOUT_S = 10.0


def queue_for(site: str | None) -> str:
    return f"{DEFAULT_QUEUE}.site.{site}" if site else DEFAULT_QUEUE


def transport_options(visibility_timeout: float, namespace: str = "") -> dict[str, Any]:
    """kombu's Redis transport options for a deployment (its namespace) and its visibility timeout."""
    opts: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": RESTORE_INTERVAL_S,
        "unacked_restore_throttle": 1,  # scan on every restore tick (kombu's default scans every 10th)
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_TIMEOUT_S,
    }
    if namespace:
        opts["global_keyprefix"] = keys.prefix(namespace)
    return opts


#: Broker URL schemes of kombu's Redis transports; anything else is not a broker diag can use.
_REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")


def check_broker_url(url: str) -> str:
    """``url`` when it is a Redis URL; InvalidInput otherwise, naming it without its password.

    Celery takes a bare word as the name of a transport and retries it for ever, and an out-of-range port
    raised a ValueError traceback from deep inside the worker: both are the user's input, refused at once.
    """
    from urllib.parse import urlsplit

    from diag.errors import InvalidInput

    u = urlsplit(url)
    shown = url.replace(u.netloc, u.netloc.rpartition("@")[2], 1) if "@" in u.netloc else url
    try:
        u.port  # noqa: B018 - ValueError for a port that is not a number or out of range
    except ValueError as e:
        raise InvalidInput(f"broker URL {shown}: {e}") from None
    if u.scheme not in _REDIS_SCHEMES or (u.scheme in ("redis", "rediss") and not u.hostname):
        raise InvalidInput(f"broker URL {shown}: not a Redis URL (redis://HOST:PORT/DB, rediss://...)")
    return url


def make_app(
    redis_url: str, visibility_timeout: float = 300.0, namespace: str = "", broker_retries: int = 100
) -> Celery:
    """A Celery app on ``redis_url``; ``visibility_timeout`` must exceed the longest host check.

    ``broker_retries``: how many times a worker tries to reconnect to a lost broker (Celery's back-off, 2 s more
    per try up to 30 s) before it gives up and exits non-zero.
    """
    from diag.distributed import tasks
    from diag.distributed.transport import TRANSPORT

    app = Celery("diag", broker=check_broker_url(redis_url), set_as_current=False)
    conf: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": DEFAULT_QUEUE,
        "broker_transport_options": transport_options(visibility_timeout, namespace),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": broker_retries,
        # kombu's Redis transport, with a worker that survives losing Redis (see diag.distributed.transport)
        "broker_transport": TRANSPORT if redis_url.split("://", 1)[0] in ("redis", "rediss") else None,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
    }
    app.conf.update(conf)
    app.task(name=tasks.CHECK_HOST, bind=True, acks_late=True)(tasks.check_host)
    app.task(name=tasks.SNMP_POLL, bind=True, acks_late=True)(tasks.snmp_poll)
    return app
