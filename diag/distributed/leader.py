"""Leader election over Redis: one scheduler holds a lock with a short TTL and renews it; the others wait.

The lock is redis-py's :class:`redis.lock.Lock` (a token in a key, released and extended only by its owner
through Lua scripts), so this module only adds the campaign loop. When the leader dies it stops renewing,
the key expires after ``ttl_s``, and the next follower to try takes over. Leadership alone does not stop a
stalled ex-leader from firing once more after its lock expired, so every firing is also fenced by a per-slot
key (see :mod:`diag.distributed.scheduler`).
"""

from __future__ import annotations

import logging
from typing import Any

from diag.distributed import keys

log = logging.getLogger(__name__)

LEADER_KEY = keys.LEADER


class Leadership:
    """Campaign for and keep the scheduler lock; :meth:`tick` says whether this process leads now."""

    def __init__(self, redis_client: Any, identity: str, ttl_s: float = 10.0, key: str = LEADER_KEY) -> None:
        self.redis = redis_client
        self.identity = identity
        self.ttl_s = ttl_s
        self.key = key
        self._lock = redis_client.lock(key, timeout=ttl_s, blocking=False, thread_local=False)
        self.leading = False

    def tick(self) -> bool:
        """Renew the lock if held, else try to take it. Call at least every ``ttl_s / 3``."""
        import redis

        try:
            if self.leading:
                try:
                    self._lock.reacquire()  # resets the TTL; raises if the key is no longer ours
                except redis.exceptions.LockError:
                    self.leading = False
                    log.warning("%s: lost the scheduler lock", self.identity)
            if not self.leading and self._lock.acquire(blocking=False, token=self.identity.encode()):
                self.leading = True
                log.info("%s: now leading the scheduler", self.identity)
        except redis.exceptions.ConnectionError as e:
            # Without Redis nobody can prove leadership: stop firing until it answers again.
            if self.leading:
                log.warning("%s: Redis unreachable, stepping down: %s", self.identity, e)
            self.leading = False
        return self.leading

    def current(self) -> str | None:
        """Who holds the lock now (its identity), or None."""
        v = self.redis.get(self.key)
        return v.decode() if v else None

    def resign(self) -> None:
        import redis

        if self.leading:
            try:
                self._lock.release()
            except (redis.exceptions.LockError, redis.exceptions.ConnectionError):
                log.debug("lock already gone on resign", exc_info=True)
        self.leading = False
