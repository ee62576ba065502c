"""The Celery application: Redis as broker, late acknowledgement, one task per host of a check.

Why these settings (docs/distributed.md has the long form):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after its result is
  recorded, so a worker killed mid-host leaves the message unacknowledged and Redis hands it to another
  worker once ``visibility_timeout`` has passed (kombu restores unacknowledged messages every few seconds).
- ``worker_prefetch_multiplier = 1``: a worker takes one message per free thread, so a dying worker strands
  as few hosts as possible and a slow worker does not hoard work.
- Results do not use Celery's result backend: the first complete result per (run, host) is written with
  HSETNX to a Redis hash by the worker itself (see :mod:`diag.distributed.tasks`). A redelivered message for a
  host that already has a result is dropped, so each host is recorded exactly once.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

#: Queue for hosts without a site; hosts with ``site: X`` go to ``diag.site.X`` (workers near that segment).
DEFAULT_QUEUE = "diag"


def queue_for(site: str | None) -> str:
    return f"{DEFAULT_QUEUE}.site.{site}" if site else DEFAULT_QUEUE


def make_app(redis_url: str, visibility_timeout: float = 300.0) -> Celery:
    """A Celery app on ``redis_url``; ``visibility_timeout`` must exceed the longest host check."""
    from diag.distributed import tasks

    app = Celery("diag", broker=redis_url, set_as_current=False)
    conf: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": DEFAULT_QUEUE,
        "broker_transport_options": {"visibility_timeout": visibility_timeout},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
    }
    app.conf.update(conf)
    app.task(name=tasks.CHECK_HOST, bind=True, acks_late=True)(tasks.check_host)
    app.task(name=tasks.SNMP_POLL, bind=True, acks_late=True)(tasks.snmp_poll)
    return app
