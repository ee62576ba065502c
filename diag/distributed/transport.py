"""kombu's Redis transport with one fix: a worker that loses Redis reconnects instead of dying.

When the broker connection drops, Celery closes the worker's channel before it reconnects, and closing a kombu Redis
channel first gives back the messages the worker holds unacknowledged (``restore_at_shutdown``). With the
connection already gone, kombu builds a new client from a transport whose ``client`` is None and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'`` (the same family as celery/kombu#582 and #970).
That is not a connection error, so Celery calls it unrecoverable and stops the worker: in the Redis-killed test one
of two workers died that way in about every other run, the other reconnected.

Here a restore that fails because the broker is gone is logged and skipped. Nothing is lost: the messages stay in
Redis's unacknowledged set (if Redis kept its data), and a live worker puts them back after the visibility timeout,
exactly as for a worker that was killed.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kredis

log = logging.getLogger(__name__)


def _broker_gone() -> tuple[type[Exception], ...]:
    import redis

    # AttributeError: kombu dropped the transport's client with the connection and cannot build a new one
    return (AttributeError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class QoS(kredis.QoS):
    """Giving messages back, acknowledging or rejecting them on a channel whose broker is gone is skipped.

    The message then stays in Redis's unacknowledged set: a live worker re-sends it after the visibility timeout,
    and a host whose result was already recorded is dropped then (HSETNX), so skipping never loses or doubles one.
    """

    def restore_unacked(self, client: Any = None) -> None:
        try:
            super().restore_unacked(client)  # type: ignore[no-untyped-call]
        except _broker_gone() as e:
            n = len(self._delivered)
            self._delivered.clear()
            log.warning("broker gone while giving back %d unacknowledged message(s) (%s); left for redelivery", n, e)

    def ack(self, delivery_tag: Any) -> None:
        try:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        except _broker_gone() as e:
            self._delivered.pop(delivery_tag, None)
            log.warning("broker gone before a message was acknowledged (%s); it is re-sent and dropped as done", e)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]
        except _broker_gone() as e:
            self._delivered.pop(delivery_tag, None)
            log.warning("broker gone before a message was given back (%s); left for redelivery", e)


class Channel(kredis.Channel):
    QoS = QoS


class Transport(kredis.Transport):
    Channel = Channel


#: For ``broker_transport``: this module's transport, used for redis:// and rediss:// URLs.
TRANSPORT = f"{__name__}:Transport"
