"""The delivery worker: sends what the outbox holds to the ticket system, and loses nothing on the way.

The engine commits each incident change together with its delivery intents (open, note, close, reopen) in
one SQLite transaction; this worker then delivers them, oldest first, one incident's intents strictly in
order (a note never overtakes the ticket it belongs to). Guarantees (docs/incidents.md):

- *No lost incident*: an intent stays ``pending`` until the ticket system accepted it; a restart resumes.
- *No duplicate ticket*: ``open`` always asks ``backend.find(key)`` first, and the ticket's reference is
  committed together with marking the intent done. A crash between ``create`` and that commit is healed by
  the next attempt's ``find``.
- *Backoff*: :class:`TicketUnavailable` (system down) pauses all delivery with exponential backoff
  (``backoff_initial`` doubling to ``backoff_max``); the intent is retried, not dropped.
- *Parking*: :class:`TicketRejected` (credentials, validation) parks the intent with the reason (an event
  on the incident); the incident's later intents wait behind it until ``diag incidents retry ID``.

Notes, closes and reopens are at-least-once: a crash right after the ticket system took a note and before
the commit sends that note again.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable

from diag.errors import StoreUnavailable
from diag.exporters.tickets.base import TicketBackend, TicketRef, TicketRejected, TicketUnavailable
from diag.incidents import bundle
from diag.incidents.failpoints import failpoint
from diag.incidents.store import Intent, Store

log = logging.getLogger(__name__)


class Outbox:
    """Delivers intents to one backend; :meth:`run_once` for tests and the CLI, :meth:`start` for the agent."""

    def __init__(
        self,
        store: Store,
        backend: TicketBackend,
        *,
        backoff_initial: float = 2.0,
        backoff_max: float = 300.0,
        poll: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.backend = backend
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.poll = poll
        self.clock = clock
        self.failures = 0  # consecutive TicketUnavailable; drives the backoff
        self.paused_until = 0.0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one pass
    def run_once(self) -> int:
        """Deliver every due intent once (stopping at the first outage). Returns how many were delivered."""
        if self.clock() < self.paused_until or not self.store.may_deliver():
            return 0  # backing off, or another process drains this (shared) store's outbox
        done = 0
        for intent in self.store.due_intents():
            if self._stop.is_set():
                break
            try:
                self.deliver(intent)
            except TicketUnavailable as e:
                self._outage(intent, str(e))
                break
            except TicketRejected as e:
                self._park(intent, str(e))
                continue
            done += 1
            self.failures = 0
            self.last_error = None
        return done

    def deliver(self, intent: Intent) -> None:
        failpoint(f"before_{intent.action}")
        inc = self.store.get(intent.incident_id)
        assert inc is not None  # intents reference incidents by foreign key
        ref: TicketRef | None = None
        if inc.ticket_id is not None and inc.ticket_backend == self.backend.name:
            ref = TicketRef(inc.ticket_backend, inc.ticket_id, inc.ticket_url)
        if intent.action == "open" or ref is None:
            # Search before create, every time: after a crash the ticket may exist without our knowing.
            ref = self.backend.find(intent.ticket_key)
            failpoint("after_find")
            created = False
            if ref is None:
                if intent.action != "open":
                    raise TicketRejected(f"no ticket with key {intent.ticket_key} to {intent.action}")
                ref = self.backend.create(bundle.from_payload(intent.payload))
                created = True
                failpoint("after_create")
            if intent.action == "open":
                self._done(intent, ref, "created" if created else "found existing")
                return
        text = str(intent.payload.get("text", ""))
        if intent.action == "note":
            self.backend.add_note(ref, text, bundle.attachments_of(intent.payload))
        elif intent.action == "close":
            self.backend.close(ref, text)
        elif intent.action == "reopen":
            self.backend.reopen(ref, text)
        else:
            raise TicketRejected(f"unknown outbox action {intent.action!r}")
        failpoint(f"after_{intent.action}")
        self._done(intent, ref, intent.action)

    def _done(self, intent: Intent, ref: TicketRef, what: str) -> None:
        now = time.time()
        with self.store.tx() as c:
            row = c.execute("SELECT payload FROM outbox WHERE id = ?", (intent.id,)).fetchone()
            changed = row is not None and json.loads(row[0]) != intent.payload
            c.execute(
                "UPDATE outbox SET state = 'done', done_at = ?, attempts = attempts + 1 WHERE id = ?", (now, intent.id)
            )
            if intent.action == "open" and changed:
                # The engine rewrote the draft while this delivery was under way (hosts behind it failed meanwhile):
                # what the ticket lacks goes after it as a note, in the same transaction.
                inc = self.store.get(intent.incident_id)
                if inc is not None and inc.doc.get("impact"):
                    text = f"Hosts behind {inc.host} that cannot be reached either: {', '.join(inc.doc['impact'])}."
                    self.store.enqueue(c, inc, "note", bundle.note_payload(text), now)
            if intent.action == "open":
                c.execute(
                    "UPDATE incidents SET ticket_backend = ?, ticket_id = ?, ticket_url = ? WHERE id = ?",
                    (ref.backend, ref.id, ref.url, intent.incident_id),
                )
                self.store.event(
                    c, intent.incident_id, "outbox", "ticket", f"ticket {ref.backend}#{ref.id} {what}", now, url=ref.url
                )
            self.store.bump(c, "deliveries", intent.action)
        failpoint(f"after_commit_{intent.action}")
        log.info("incident %d: %s delivered to %s#%s", intent.incident_id, intent.action, ref.backend, ref.id)

    def _outage(self, intent: Intent, error: str) -> None:
        self.failures += 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (self.failures - 1))
        delay *= random.uniform(0.8, 1.0)  # jitter: many agents must not retry one server in lockstep
        self.paused_until = self.clock() + delay
        self.last_error = error
        with self.store.tx() as c:
            c.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, intent.id))
            self.store.bump(c, "delivery_failures", "unavailable")
        log.warning("ticket system unavailable (%s); retrying in %.1f s", error, delay)

    def _park(self, intent: Intent, error: str) -> None:
        with self.store.tx() as c:
            c.execute(
                "UPDATE outbox SET state = 'parked', attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, intent.id),
            )
            self.store.event(c, intent.incident_id, "outbox", "parked", f"{intent.action} refused: {error}")
            self.store.bump(c, "delivery_failures", "rejected")
        log.error("incident %d: %s refused by the ticket system, parked: %s", intent.incident_id, intent.action, error)

    def retry(self, incident_id: int) -> int:
        """Un-park an incident's intents (after the cause was fixed); returns how many."""
        with self.store.tx() as c:
            c.execute("UPDATE outbox SET state = 'pending' WHERE incident_id = ? AND state = 'parked'", (incident_id,))
            n = c.rowcount
        self.wake()
        return n

    # ---- the background worker
    def wake(self) -> None:
        self._wake.set()

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver until nothing is due (tests, CLI); False when still pending at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.run_once()
            if not self.store.due_intents(1):
                return True
            time.sleep(min(0.05, max(0.0, self.paused_until - self.clock())) or 0.01)
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except StoreUnavailable as e:  # the intents wait in the store; a ticket sent meanwhile is found again
                log.warning("outbox: %s; trying again in %g s", e, self.backoff_initial)
                self.paused_until = self.clock() + self.backoff_initial
            except Exception:  # a bug in one delivery must not end delivery for good
                log.exception("outbox delivery failed")
                self.paused_until = self.clock() + self.backoff_initial
            wait = self.poll
            if self.paused_until > self.clock():
                wait = max(0.01, self.paused_until - self.clock())
            self._wake.wait(wait)
            self._wake.clear()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="incident-outbox", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
