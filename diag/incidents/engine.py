"""The incident lifecycle: findings in, incidents (and the ticket work they need) out.

Entry points (thread-safe; every change is one SQLite transaction together with its events and outbox intents):

- :meth:`Engine.ingest` (source, findings): push sources (alerts, traps) and one-off runs. A finding opens
  the incident for its fingerprint, or is an occurrence of the live one.
- :meth:`Engine.observe` (source, scope, findings, recheck, gaps): a periodic source that reports *everything* it
  currently sees in a scope (one probe on one host, one playbook on one host). Fingerprints of the scope that
  are missing are cleared; the incident resolves once the condition stayed away ``close_after`` seconds
  *and* ``recheck()`` (the probe or playbook run again) confirms it.

The one rule for every source: **only a positive observation clears**. A missing finding counts as "gone" only
when the run looked: a :class:`~diag.model.Gap` of the report (a host that did not answer, a probe that failed, an
SNMP walk cut short) or a re-check that raises (``NotChecked``) or returns gaps holds the incidents it concerns
where they are, with one ``not_checked`` event ("not checked: REASON") per reason, never clearing or resolving.
- :meth:`Engine.resolve` (source, fingerprint, verify, evidence): a push source says it cleared (a resolved
  alert); ``verify()`` is the re-check, and only its confirmation resolves.
- :meth:`Engine.tick`: everything that is due by the clock: damped push incidents that open, deferred and
  repeated re-checks, flapping that ends, SLA clocks. The service calls it when the next due time comes
  (:meth:`Engine.next_due`) and at least every ``tick`` seconds.

Every timer is a due time stored in the incident row (``open_due``, ``recheck.due``, ``clear_since``), committed
with the change that set it, so a restart (clean or ``kill -9``) resumes it: nothing waits in memory only. A
push source's re-check is a closure; a source that wants it resumed after a restart gives the verifier a
``resume_spec`` (JSON) and registers a factory with :meth:`Engine.resumable` that builds it again.

States: pending (damped for ``open_after``) -> open -> clearing -> resolved, with suppressed (silence or
maintenance window), impact (unreachable behind a failed upstream device) and discarded (gone before it
opened). A recurrence within ``reopen_window`` of resolving reopens the same incident and ticket.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from diag.errors import DiagError
from diag.incidents import bundle, sla
from diag.incidents.knowledge import Facts, HypothesisProvider, KnowledgeBase
from diag.incidents.masking import Masker
from diag.incidents.settings import Settings
from diag.incidents.store import ACTIVE_STATES, OPEN_STATES, Incident, Store
from diag.incidents.topology import Topology
from diag.model import SEVERITY_RANK, Evidence, Finding, Gap, Result, gap_for

log = logging.getLogger(__name__)


class VerdictLike(Protocol):
    """What a verifying re-check answers (:class:`Verdict`, or the Alertmanager receiver's own)."""

    @property
    def cleared(self) -> bool: ...
    @property
    def note(self) -> str: ...
    @property
    def evidence(self) -> list[Evidence]: ...


@dataclass(slots=True)
class Verdict:
    cleared: bool
    note: str
    evidence: list[Evidence] = field(default_factory=list)


Verifier = Callable[[], VerdictLike]
#: Re-runs a scope (the probe, the playbook on that host) and returns every finding it makes now, or a
#: :class:`~diag.model.Result` whose ``gaps`` say what it could not look at; it raises when it could not look at all.
Recheck = Callable[[], "Sequence[Finding] | Result"]
#: Builds a push source's verifier again after a restart, from the incident and the ``resume_spec`` it left.
VerifierFactory = Callable[[Incident, Mapping[str, Any]], "Verifier | None"]
#: Builds a scope's re-check again after a restart, from the scope (``playbook:NAME@HOST?path=/x``).
RecheckFactory = Callable[[str], "Recheck | None"]


@dataclass(slots=True)
class Outcome:
    """What the engine did with one finding or clear: ``action`` and the incident it concerns."""

    action: str  # pending opened occurrence reopened suppressed impact clearing resolved still_open discarded
    #              ignored unknown deferred escalated not_checked (a gap or a re-check that could not look)
    incident_id: int | None
    fingerprint: str
    detail: str = ""

    def __str__(self) -> str:
        ref = f" #{self.incident_id}" if self.incident_id is not None else ""
        return f"{self.action}{ref}" + (f" ({self.detail})" if self.detail else "")


@dataclass(slots=True)
class _Deferred:
    verify: Verifier
    evidence: Evidence | None
    source: str
    attempts: int = 0
    last_try: float = 0.0
    spec: dict[str, Any] | None = None  # how the source builds ``verify`` again after a restart

    def stored(self, due: float | None) -> dict[str, Any]:
        """What the incident row keeps of it (``doc["recheck"]``); ``due`` None: held while the incident flaps."""
        ev = self.evidence.to_dict() if self.evidence is not None else None
        return {"source": self.source, "attempts": self.attempts, "due": due, "spec": self.spec, "evidence": ev}


def _evidence_of(d: Mapping[str, Any] | None) -> Evidence | None:
    if not d:
        return None
    return Evidence(
        str(d.get("kind", "text")), str(d.get("title", "")), str(d.get("text", "")), dict(d.get("data") or {})
    )


def _why(e: Exception) -> str:
    """An exception as the reason in a journal line: diag's own errors are one line already."""
    return str(e) if isinstance(e, DiagError) else f"{type(e).__name__}: {e}"


def _evidence_hash(evidence: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for ev in evidence:
        h.update(str(ev.get("title", "")).encode())
        h.update(str(ev.get("text", "")).encode())
    return h.hexdigest()[:16]


class Engine:
    """See the module docstring. ``clock`` is injectable so damping and SLA are testable without sleeping."""

    #: Re-checks a push source's "resolved" gets before the incident is left open for a person to confirm.
    MAX_REVERIFY = 3
    #: An incident's times further ahead of the clock than this (seconds) mean the system clock went back. Wide
    #: enough for the clocks of several machines sharing a PostgreSQL store, which are never quite equal.
    CLOCK_BACK_TOLERANCE = 60.0

    def __init__(
        self,
        store: Store,
        settings: Settings,
        kb: KnowledgeBase | None = None,
        topology: Topology | None = None,
        *,
        groups: Mapping[str, Sequence[str]] | None = None,
        masker: Masker | None = None,
        clock: Callable[[], float] = time.time,
        providers: Sequence[HypothesisProvider] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.kb = kb or KnowledgeBase()
        self.topology = topology or Topology({}, settings.down_checks)
        self.groups = {h: tuple(g) for h, g in (groups or {}).items()}
        self.masker = masker or Masker(settings.mask_patterns, settings.mask_defaults)
        self.clock = clock
        self.providers = providers  # None: every provider registered in knowledge.PROVIDERS
        self._lock = store.engine_lock()  # across processes too when the store is shared (PostgreSQL)
        self._deferred: dict[str, _Deferred] = {}  # fingerprint -> the verifier closure (the due time is stored)
        self._verifying: set[str] = set()  # fingerprints whose push re-check runs now (the clock leaves them alone)
        self._rechecks: dict[str, Recheck] = {}
        self._verifier_factories: dict[str, VerifierFactory] = {}
        self._recheck_factories: dict[str, RecheckFactory] = {}
        self.on_change: list[Callable[[], None]] = []  # e.g. wake the delivery worker
        #: A source that still holds news of an incident (a queued "resolved" alert) keeps the clock from opening
        #: it meanwhile: what was acknowledged before the due time counts before the due time.
        self.holds: list[Callable[[Incident], bool]] = []

    # ------------------------------------------------------------------ public API
    def ingest(
        self,
        source: str,
        findings: Sequence[Finding],
        *,
        scope: str | None = None,
        now: float | None = None,
    ) -> list[Outcome]:
        """Open or add to the incident of each finding; findings below ``min_severity`` are ignored."""
        now = self.clock() if now is None else now
        out = self._ingest(source, [(f, scope) for f in findings], now)
        self._changed()
        return out

    def _ingest(self, source: str, pairs: Sequence[tuple[Finding, str | None]], now: float) -> list[Outcome]:
        floor = SEVERITY_RANK[self.settings.min_severity]
        out: list[Outcome] = []
        wanted = []
        for f, scope in pairs:
            if SEVERITY_RANK.get(f.severity, 0) < floor:
                out.append(Outcome("ignored", None, f.fingerprint, f"severity {f.severity}"))
            else:
                wanted.append((f, scope))
        # Upstream devices first, so the hosts behind a failed one find its incident already there.
        wanted.sort(key=lambda p: self.topology.depth(p[0].host))
        down_now = {f.host for f, _ in wanted if self.topology.is_down_check(f.check)}
        with self._lock:
            for f, scope in wanted:
                out.append(self._one(source, f, scope, now, down_now))
        return out

    def observe(
        self,
        source: str,
        scope: str,
        findings: Sequence[Finding],
        *,
        recheck: Recheck | None = None,
        gaps: Sequence[Gap] = (),
        now: float | None = None,
    ) -> list[Outcome]:
        """A full report of ``scope``: what is in it is present, what the scope had before and lacks now cleared.

        ``gaps``: what the run could not look at; the scope's incidents they cover are held, not cleared.
        """
        return self.observe_many(
            source, {scope: findings}, {scope: recheck} if recheck else None, {scope: gaps} if gaps else None, now=now
        )

    def observe_many(
        self,
        source: str,
        reports: Mapping[str, Sequence[Finding]],
        rechecks: Mapping[str, Recheck] | None = None,
        gaps: Mapping[str, Sequence[Gap]] | None = None,
        *,
        now: float | None = None,
    ) -> list[Outcome]:
        """Several scopes observed together (one playbook run over many hosts): one batch for topology.

        ``gaps[scope]``: what the run of that scope could not look at (see :class:`~diag.model.Gap`).
        """
        now = self.clock() if now is None else now
        for scope, rc in (rechecks or {}).items():
            self._rechecks[scope] = rc
        out = self._ingest(source, [(f, scope) for scope, fs in reports.items() for f in fs], now)
        floor = SEVERITY_RANK[self.settings.min_severity]
        waiting: dict[str, list[Incident]] = {}  # scope -> incidents whose re-check is due
        with self._lock:
            for scope, findings in reports.items():
                present = {f.fingerprint for f in findings if SEVERITY_RANK.get(f.severity, 0) >= floor}
                for inc in self.store.in_scope(scope):
                    if inc.fingerprint not in present:
                        gap = gap_for((gaps or {}).get(scope, ()), inc.check_id, inc.subject)
                        if gap is not None:  # not seen because not looked at: neither present nor gone
                            out.append(self._not_checked(inc, source, gap.reason, now))
                            continue
                        action = self._absent(inc, source, scope, now)
                        if action is None:
                            waiting.setdefault(scope, []).append(inc)
                        else:
                            out.append(action)
        # Re-checks run without the engine lock (a playbook over SSH takes seconds), one per scope.
        for scope, incs in waiting.items():
            out.extend(self._run_recheck(scope, incs, source, now))
        self._changed()
        return out

    def _run_recheck(self, scope: str, incs: Sequence[Incident], source: str, now: float) -> list[Outcome]:
        recheck = self._scope_recheck(scope)
        rechecked: Result | Exception
        if recheck is None:
            rechecked = RuntimeError("no re-check is available")
        else:
            try:
                got = recheck()
                rechecked = got if isinstance(got, Result) else Result(findings=list(got))
            except Exception as e:  # a re-check that could not look proves nothing: the incidents stay open
                log.warning("re-check of %s could not run: %s", scope, e)
                rechecked = e
        with self._lock:
            return [self._after_recheck(inc, source, scope, now, rechecked) for inc in incs]

    def resolve(
        self,
        source: str,
        fingerprint: str,
        verify: Verifier,
        evidence: Evidence | None = None,
        *,
        now: float | None = None,
        asked: bool = False,
    ) -> Outcome:
        """A push source reports the condition gone: resolve once ``verify()`` confirms (maybe after hysteresis).

        ``asked``: a person resolves it (the API, the console); asking again, e.g. after fixing what the first
        re-check still found, is a new request that re-checks now, never a duplicate notification.

        The re-check's due time is committed before it runs, so a crash during it (an SSH playbook) or during
        the hysteresis resumes it after the restart (see :meth:`resumable`).
        """
        now = self.clock() if now is None else now
        spec = getattr(verify, "resume_spec", None)
        d = _Deferred(verify, evidence, source, spec=dict(spec) if isinstance(spec, Mapping) else None)
        with self._lock:
            inc = self.store.live(fingerprint)
            if inc is None:
                return Outcome("unknown", None, fingerprint, "no live incident")
            if inc.state in ("pending", "suppressed", "impact"):
                out = self._quiet_end(inc, source, now, f"{source} reports it cleared")
                self._changed()
                return out
            if inc.doc.get("flapping"):
                out = self._flap_gone(inc, source, now, d)
                self._changed()
                return out
            gave_up = inc.doc.get("gave_up_at")
            if gave_up is not None and inc.last_seen <= float(gave_up) and not asked:
                # Not seen since diag stopped re-checking and told the ticket a person must confirm: the same
                # "resolved" again does not start over (the next firing does).
                return Outcome("still_open", inc.id, fingerprint, "re-checks given up; a person confirms")
            due = max(now, inc.last_seen + self.settings.close_after)
            earlier = inc.doc.get("recheck")
            if (
                not asked
                and isinstance(earlier, dict)
                and earlier.get("source") == source
                and earlier.get("due") is not None
            ):
                # The same "resolved" again with no firing between (both Alertmanagers of an HA pair send it, or a
                # retried webhook): the re-checks already counted and the next one's time stand, so the give-up
                # note still comes after MAX_REVERIFY and a duplicate does not pull a re-check forward.
                d.attempts = int(earlier.get("attempts", 0))
                due = max(due, float(earlier["due"]))
            self._deferred[fingerprint] = d
            if self._to_clearing(
                inc, source, now, f"{source} reports it cleared; re-check after hysteresis", recheck=d.stored(due)
            ):
                self._changed()
                return Outcome("flapping", inc.id, fingerprint, "flapping started")
            if due > now:
                self._changed()
                return Outcome("deferred", inc.id, fingerprint, "re-check after close_after")
        out = self._verify_push(inc, d, now)
        self._changed()
        return out

    clear = resolve

    def resumable(self, source: str, factory: VerifierFactory) -> None:
        """How ``source`` (or every ``source:...``) builds its verifier again after a restart, from ``resume_spec``."""
        self._verifier_factories[source] = factory

    def resumable_scope(self, prefix: str, factory: RecheckFactory) -> None:
        """How scopes ``prefix:...`` get their re-check after a restart, before the source observes them again."""
        self._recheck_factories[prefix] = factory

    def _verifier_factory(self, source: str) -> VerifierFactory | None:
        return self._verifier_factories.get(source) or self._verifier_factories.get(source.split(":", 1)[0])

    def _scope_recheck(self, scope: str) -> Recheck | None:
        rc = self._rechecks.get(scope)
        if rc is None:
            factory = self._recheck_factories.get(scope.split(":", 1)[0])
            rc = factory(scope) if factory is not None else None
            if rc is not None:
                self._rechecks[scope] = rc
        return rc

    def tick(self, now: float | None = None) -> list[Outcome]:
        """Everything due by now: damped push incidents open, re-checks run, flapping ends, SLA clocks."""
        now = self.clock() if now is None else now
        out: list[Outcome] = []
        due: list[tuple[Incident, _Deferred]] = []
        scopes: dict[str, list[Incident]] = {}
        with self._lock:
            current = max(now, self.clock())  # read under the lock: no write of ours is later than this
            for inc in self.store.query(ACTIVE_STATES, limit=1 << 30):
                inc = self._clock_went_back(inc, current)
                open_due = inc.doc.get("open_due")
                if inc.state in ("pending", "suppressed") and open_due is not None and now >= float(open_due):
                    if self._held(inc):
                        continue
                    o = self._promote(inc, now)
                    if o is not None:
                        out.append(o)
                    continue
                if inc.doc.get("flapping"):
                    o = self._flap_check(inc, now)
                    if o is None:
                        continue
                    out.append(o)
                    inc = self.store.get(inc.id) or inc
                rc = inc.doc.get("recheck")
                if inc.state in OPEN_STATES and isinstance(rc, dict):
                    if rc.get("due") is not None and now >= float(rc["due"]) and inc.fingerprint not in self._verifying:
                        d = self._deferred.get(inc.fingerprint) or self._rebuild(inc, rc, now)
                        if d is not None:
                            due.append((inc, d))
                elif (
                    inc.state == "clearing"
                    and inc.scope
                    and now - inc.last_seen >= self.settings.close_after
                    and self._scope_recheck(inc.scope) is not None
                ):
                    scopes.setdefault(inc.scope, []).append(inc)
        for inc, d in due:  # outside the lock: a re-check may take seconds (a playbook over SSH)
            out.append(self._verify_push(inc, d, now))
        for scope, incs in scopes.items():
            out.extend(self._run_recheck(scope, incs, "clock", now))
        with self._lock:
            out.extend(self._sla(now))
        if out:
            self._changed()
        return out

    def _clock_went_back(self, inc: Incident, now: float) -> Incident:
        """Move an incident's times back with a system clock that went back (an NTP step, a VM restored).

        Due times are wall-clock times, because they must survive a restart. After the clock steps back, they lie
        ahead of it and every wait would last that much longer: a damped alert would open an hour late after a
        one-hour step, a clearing incident would wait an hour for its re-check, flapping would not end.
        ``last_seen`` is always the clock at a moment already past, so if it lies ahead of the clock, by more
        than the tolerance, that is the step: every time of the incident moves back by it, once (a ``clock_back``
        event says so), and each wait keeps what was left of it. A due time still further ahead than its own wait
        (``open_after``; ``close_after`` or ``tick`` for a re-check) is brought to that wait from now: a step
        that went back further than the incident's last sighting, or a wait made shorter in the configuration.
        """
        s = self.settings
        stored = inc.doc.get("recheck")
        rc: dict[str, Any] = stored if isinstance(stored, dict) else {}
        has_due = rc.get("due") is not None
        step = inc.last_seen - now
        changed = False
        if step > self.CLOCK_BACK_TOLERANCE:
            changed = True
            inc.first_seen -= step
            inc.last_seen -= step
            for attr in ("opened_at", "acked_at", "respond_due", "resolve_due"):
                if getattr(inc, attr) is not None:
                    setattr(inc, attr, getattr(inc, attr) - step)
            for key in ("open_due", "clear_since", "last_note_at", "flap_since", "gave_up_at"):
                if isinstance(inc.doc.get(key), (int, float)):
                    inc.doc[key] = float(inc.doc[key]) - step
            if has_due:
                rc["due"] = float(rc["due"]) - step
            inc.doc["changes"] = [float(t) - step for t in inc.doc.get("changes", [])]
        latest_open = now + s.open_after
        if inc.doc.get("open_due") is not None and float(inc.doc["open_due"]) > latest_open + self.CLOCK_BACK_TOLERANCE:
            changed = True
            inc.doc["open_due"] = latest_open
        latest_recheck = now + max(s.close_after, s.tick)
        if has_due and float(rc["due"]) > latest_recheck + self.CLOCK_BACK_TOLERANCE:
            changed = True
            rc["due"] = latest_recheck
        if not changed:
            return inc
        with self.store.tx() as c:
            if step > self.CLOCK_BACK_TOLERANCE:
                text = f"the system clock went back {step:.0f} s: times moved with it"
                self.store.event(c, inc.id, "clock", "clock_back", text, now)
            self.store.update(c, inc)
        return inc

    def next_due(self) -> float | None:
        """The earliest time :meth:`tick` has something to do (an open, a re-check, flapping ending), or None."""
        times: list[float] = []
        for inc in self.store.query(ACTIVE_STATES, limit=1 << 30):
            if inc.state == "pending" and inc.doc.get("open_due") is not None and not self._held(inc):
                times.append(float(inc.doc["open_due"]))
            if inc.doc.get("flapping"):
                changes = sorted(float(t) for t in inc.doc.get("changes", []))
                k = len(changes) - self.settings.flap_stop
                if k > 0:
                    times.append(changes[k - 1] + self.settings.flap_window)
                continue
            rc = inc.doc.get("recheck")
            if inc.state in OPEN_STATES and isinstance(rc, dict):
                if rc.get("due") is not None and (
                    inc.fingerprint in self._deferred or self._verifier_factory(str(rc.get("source", ""))) is not None
                ):
                    times.append(float(rc["due"]))
            elif (
                inc.state == "clearing"
                and inc.scope
                and (inc.scope in self._rechecks or inc.scope.split(":", 1)[0] in self._recheck_factories)
            ):
                times.append(inc.last_seen + self.settings.close_after)
        return min(times) if times else None

    def wake(self) -> None:
        """Tell the clock to look again now (a source's hold on an incident ended)."""
        self._changed()

    def _held(self, inc: Incident) -> bool:
        for hold in self.holds:
            try:
                if hold(inc):
                    return True
            except Exception:  # a broken hold must not stop the clock
                log.exception("incident %d: hold check failed", inc.id)
        return False

    def _rebuild(self, inc: Incident, rc: Mapping[str, Any], now: float) -> _Deferred | None:
        """The verifier of a re-check that was due when the process stopped, built again by its source."""
        source = str(rc.get("source", ""))
        factory = self._verifier_factory(source)
        if factory is None:
            return None  # its source has not registered (yet): the re-check waits for it
        spec = rc.get("spec")
        verify = None
        if isinstance(spec, Mapping):
            try:
                verify = factory(inc, spec)
            except Exception as e:  # a spec from another version, a host gone from the inventory
                log.warning("incident %d: re-check of %s cannot be resumed: %s", inc.id, source, e)
        if verify is None:
            self._give_up(
                inc, source, now, int(rc.get("attempts", 0)), [], "its re-check could not be resumed after a restart"
            )
            return None
        d = _Deferred(
            verify, _evidence_of(rc.get("evidence")), source, int(rc.get("attempts", 0)), spec=dict(spec or {})
        )
        self._deferred[inc.fingerprint] = d
        return d

    def _promote(self, inc: Incident, now: float) -> Outcome | None:
        """A push source's damped incident whose ``open_due`` has come: no clear arrived, so it opens now."""
        with self.store.tx() as c:
            why = self._suppressed_by(inc.host, inc.check_id, now)
            if why and not self._never(inc.doc.get("category")):
                if inc.state == "pending":
                    return self._suppress(c, inc, inc.source, now, why)
                return None
            if inc.state == "suppressed":
                self.store.event(c, inc.id, inc.source, "unsuppressed", "the silence or maintenance window ended", now)
            waited = now - inc.first_seen
            self._open(
                c,
                inc,
                inc.source,
                now,
                f"no clear came within open_after ({self.settings.open_after:g} s; {waited:.1f} s)",
            )
            return Outcome("opened", inc.id, inc.fingerprint)

    def acknowledge(self, incident_id: int, who: str, now: float | None = None) -> Incident:
        """Someone took the incident: stops the respond clock."""
        now = self.clock() if now is None else now
        with self._lock, self.store.tx() as c:
            inc = self._must(incident_id)
            if inc.acked_at is None:
                inc.acked_at = now
                self.store.update(c, inc)
                self.store.event(c, inc.id, who, "acknowledged", f"acknowledged by {who}", now)
                if inc.opened_at is not None:
                    self.store.enqueue(c, inc, "note", bundle.note_payload(f"Acknowledged by {who}."), now)
        self._changed()
        return inc

    def silence(self, hosts: Sequence[str], checks: Sequence[str], duration: float, reason: str, who: str) -> int:
        now = self.clock()
        return self.store.add_silence(now, now + duration, reason, who, hosts, checks)

    # ------------------------------------------------------------------ internals
    def _changed(self) -> None:
        for cb in self.on_change:
            cb()

    def _must(self, incident_id: int) -> Incident:
        inc = self.store.get(incident_id)
        if inc is None:
            from diag.errors import InvalidInput

            raise InvalidInput(f"no incident {incident_id}")  # the caller's number: exit 2, not a failure
        return inc

    def _masked_evidence(self, f: Finding) -> list[dict[str, Any]]:
        return [self.masker.data(e.to_dict()) for e in f.evidence]

    def _category(self, f: Finding) -> str | None:
        return f.labels.get("category") or self.settings.categories.get(f.check)

    def _never(self, category: str | None) -> bool:
        return category is not None and category in self.settings.never_suppress

    def _suppressed_by(self, host: str, check: str, now: float) -> str | None:
        groups = set(self.groups.get(host, ()))
        for w in self.settings.maintenance:
            if (
                w.starts <= now < w.ends
                and ((not w.hosts and not w.groups) or host in w.hosts or groups.intersection(w.groups))
                and (not w.checks or check in w.checks)
            ):
                return f"maintenance window until {bundle.when(w.ends)}: {w.reason}"
        for s in self.store.silences(now):
            if (not s["hosts"] or host in s["hosts"]) and (not s["checks"] or check in s["checks"]):
                return f"silence #{s['id']} by {s['created_by']} until {bundle.when(s['ends'])}: {s['reason']}"
        return None

    def _one(self, source: str, f: Finding, scope: str | None, now: float, down_now: set[str]) -> Outcome:
        fp = f.fingerprint
        inc = self.store.live(fp)
        if inc is None:
            return self._new(source, f, scope, now, down_now)
        with self.store.tx() as c:
            prev_hash = inc.doc.get("evidence_hash")
            inc.last_seen = max(inc.last_seen, now)  # a replayed notification may carry an earlier time
            inc.occurrences += 1
            evidence = self._masked_evidence(f)
            ev_hash = _evidence_hash(evidence)
            inc.doc.update(summary=self.masker.text(f.summary), evidence=evidence, evidence_hash=ev_hash)
            inc.doc.pop("clear_since", None)
            inc.doc.pop("recheck", None)
            inc.doc.pop("not_checked", None)  # looked at again
            if scope and not inc.scope:
                inc.scope = scope
            self._deferred.pop(fp, None)
            if inc.doc.get("flapping"):  # every change is counted; the ticket heard when flapping started
                inc.doc["summary"] = f"[flapping] {inc.summary}"
                self._change(c, inc, source, now, present=True)
                self.store.update(c, inc)
                return Outcome("flapping", inc.id, fp, "the condition is back (flapping)")
            worse = SEVERITY_RANK.get(f.severity, 0) > SEVERITY_RANK.get(inc.severity, 0)
            if worse:
                self.store.event(c, inc.id, source, "severity", f"severity {inc.severity} -> {f.severity}", now)
                inc.severity = f.severity
            if inc.state == "clearing":
                inc.state = "open"
                self.store.event(
                    c, inc.id, source, "flap", "the condition came back before the re-check closed it", now
                )
                if self._change(c, inc, source, now, present=True):
                    self.store.update(c, inc)
                    return Outcome("flapping", inc.id, fp, "flapping started")
            if inc.state == "pending" and self.topology.is_down_check(inc.check_id):
                # Seen before its upstream device failed (another batch): behind a down device it is impact.
                parent = self._down_parent(inc.host, down_now)
                if parent is not None:
                    return self._behind(c, inc, parent, source, now)
            if inc.state == "pending":
                if now - inc.first_seen >= self.settings.open_after:
                    why = self._suppressed_by(inc.host, inc.check_id, now)
                    if why and not self._never(inc.doc.get("category")):
                        return self._suppress(c, inc, source, now, why)
                    self._open(c, inc, source, now, f"persisted {now - inc.first_seen:.0f} s")
                    return Outcome("opened", inc.id, fp)
                self.store.update(c, inc)
                return Outcome("pending", inc.id, fp, f"opens after {self.settings.open_after:g} s")
            if inc.state == "suppressed":
                why = self._suppressed_by(inc.host, inc.check_id, now)
                if why is None:
                    self.store.event(c, inc.id, source, "unsuppressed", "the silence or maintenance window ended", now)
                    self._open(c, inc, source, now, "still present after the suppression ended")
                    return Outcome("opened", inc.id, fp)
                self.store.update(c, inc)
                return Outcome("suppressed", inc.id, fp, why)
            if inc.state == "impact":
                parent = self.store.get(inc.parent_id) if inc.parent_id else None
                if parent is not None and parent.state in ("pending", "open", "clearing", "suppressed"):
                    self.store.update(c, inc)
                    return Outcome("impact", inc.id, fp, f"behind #{parent.id} {parent.host}")
                inc.state, inc.parent_id, inc.first_seen = "pending", None, now
                self.store.event(c, inc.id, source, "promoted", "the upstream device recovered; this host did not", now)
                self.store.update(c, inc)
                return Outcome("pending", inc.id, fp)
            # open: an occurrence. Push sources (no scope) note every repeat; periodic ones only new evidence,
            # at most every note_interval, so a probe every 30 s does not write a note every 30 s.
            last_note = float(inc.doc.get("last_note_at", 0.0))
            if inc.opened_at is not None and (
                scope is None or worse or (ev_hash != prev_hash and now - last_note >= self.settings.note_interval)
            ):
                inc.doc["last_note_at"] = now
                head = f"Seen again ({source}), occurrence {inc.occurrences}: {inc.doc['summary']}."
                if worse:
                    head += f" Severity is now {inc.severity}."
                self.store.enqueue(
                    c,
                    inc,
                    "note",
                    bundle.note_payload(bundle.evidence_note(inc, self.masker, head), markdown=True),
                    now,
                )
            self.store.update(c, inc)
            return Outcome("occurrence", inc.id, fp, f"occurrence {inc.occurrences}")

    def _new(self, source: str, f: Finding, scope: str | None, now: float, down_now: set[str]) -> Outcome:
        fp = f.fingerprint
        category = self._category(f)
        with self.store.tx() as c:
            # Behind a device that is down too? Then this host is UNREACHABLE, and the device's incident says so.
            if self.topology.is_down_check(f.check):
                parent = self._down_parent(f.host, down_now)
                if parent is not None:
                    return self._impact(c, parent, source, f, scope, now)
            last = self.store.latest(fp)
            recent = last is not None and last.state == "resolved" and last.resolved_at is not None
            if recent and last is not None and now - (last.resolved_at or 0.0) <= self.settings.reopen_window:
                return self._reopen(c, last, source, f, scope, now)
            changes = self._recent_changes(last, now)
            if last is not None and last.state == "discarded" and len(changes) + 1 >= self.settings.flap_start:
                return self._revive(c, last, source, f, scope, now)
            n = self.store.count(fp)
            facts = Facts.of(f)
            facts.text = self.masker.text(facts.text)
            facts.first_seen = now
            klass = self.kb.classify(facts, self.providers)
            category = category or klass.category
            never = self._never(category)
            inc = self._row(f, source, scope, "pending", now, n)
            inc.doc["changes"] = [*changes, now]
            inc.classification, inc.line = klass.classification, klass.line
            inc.priority = sla.priority_for(f.severity, klass.priority, never)
            inc.doc.update(
                cause=self.masker.text(f.cause or ""),
                category=category,
                labels=self.masker.data(dict(f.labels)),
                evidence_hash=_evidence_hash(inc.doc["evidence"]),
                kb=klass.entry.summary() if klass.entry else None,
                kb_sla=list(klass.sla) if klass.sla else None,
                hypotheses=[h.to_dict() for h in klass.hypotheses],
            )
            self.store.insert(c, inc)
            self.store.event(
                c,
                inc.id,
                source,
                "registered",
                f"registered {f.check} on {f.host}: {inc.summary} ({inc.classification}, line {inc.line})",
                now,
            )
            if never:
                self._open(c, inc, source, now, f"category {category} is never suppressed or damped")
                return Outcome("opened", inc.id, fp, f"never-suppress category {category}")
            why = self._suppressed_by(f.host, f.check, now)
            if why is not None:
                return self._suppress(c, inc, source, now, why)
            if self.settings.open_after <= 0:
                self._open(c, inc, source, now, "opened at once (open_after is 0)")
                return Outcome("opened", inc.id, fp)
            if scope is None:
                # A push source says "firing" once and "resolved" when it ends: no clear by open_due means it
                # persisted, and the clock (tick) opens it then, after a restart too.
                inc.doc["open_due"] = now + self.settings.open_after
            self.store.update(c, inc)
            return Outcome("pending", inc.id, fp, f"opens after {self.settings.open_after:g} s")

    def _row(self, f: Finding, source: str, scope: str | None, state: str, now: float, earlier: int) -> Incident:
        """A new incident row for ``f``; ``earlier`` incidents of the fingerprint make its ticket key ``FP-N``."""
        fp = f.fingerprint
        return Incident(
            id=0,
            fingerprint=fp,
            ticket_key=fp if earlier == 0 else f"{fp}-{earlier + 1}",
            host=f.host,
            check_id=f.check,
            subject=f.subject,
            source=source,
            scope=scope,
            state=state,
            severity=f.severity,
            classification="atypical",
            line="L2",
            priority="normal",
            first_seen=now,
            last_seen=now,
            doc={"summary": self.masker.text(f.summary), "evidence": self._masked_evidence(f), "impact": []},
        )

    def _down_parent(self, host: str, down_now: set[str]) -> Incident | None:
        """The live "down" incident of the upstream device nearest the root, if one is down."""
        down: dict[str, Incident] = {}
        for a in self.topology.ancestors(host):
            for inc in self._down_incidents(a):
                down.setdefault(a, inc)
        root = self.topology.root_cause(host, down)
        return down[root] if root else None

    def _down_incidents(self, host: str) -> list[Incident]:
        marks = ", ".join("?" * len(self.topology.down_checks))  # placeholders only
        rows = self.store.read(
            "SELECT id FROM incidents WHERE host = ? AND state IN ('pending','open','clearing','suppressed') "  # noqa: S608
            f"AND check_id IN ({marks}) ORDER BY id",
            (host, *sorted(self.topology.down_checks)),
        )
        out = [self.store.get(int(r[0])) for r in rows]
        return [i for i in out if i is not None]

    def _impact(
        self, c: sqlite3.Cursor, parent: Incident, source: str, f: Finding, scope: str | None, now: float
    ) -> Outcome:
        inc = self._row(f, source, scope, "impact", now, self.store.count(f.fingerprint))
        self.store.insert(c, inc)
        return self._behind(c, inc, parent, source, now)

    def _behind(self, c: sqlite3.Cursor, inc: Incident, parent: Incident, source: str, now: float) -> Outcome:
        """Make ``inc`` (a host that does not answer) impact of ``parent`` (the down device upstream of it)."""
        inc.state, inc.parent_id = "impact", parent.id
        inc.classification, inc.line, inc.priority = parent.classification, parent.line, parent.priority
        self.store.update(c, inc)
        text = f"{inc.host} is unreachable behind {parent.host} (incident #{parent.id}), which is down"
        self.store.event(c, inc.id, source, "impact", text, now, parent=parent.id)
        impact = list(parent.doc.get("impact", []))
        if inc.host not in impact:
            impact.append(inc.host)
            parent.doc["impact"] = impact
            self.store.event(
                c, parent.id, source, "impact", f"{inc.host} behind it is unreachable too", now, host=inc.host
            )
            if parent.opened_at is not None:
                # Not sent yet: the ticket is written with the impact in it. Sent: a note says it.
                draft = bundle.draft(parent, self.settings, self.masker, impact)
                c.execute(
                    "UPDATE outbox SET payload = ? WHERE incident_id = ? AND action = 'open' AND state = 'pending'",
                    (json.dumps(bundle.to_payload(draft)), parent.id),
                )
                if c.rowcount == 0:
                    text = f"Also unreachable behind {parent.host}: {inc.host} ({inc.summary})."
                    self.store.enqueue(c, parent, "note", bundle.note_payload(text), now)
            self.store.update(c, parent)
        return Outcome("impact", inc.id, inc.fingerprint, f"behind #{parent.id} {parent.host}")

    def _fold_children(self, c: sqlite3.Cursor, inc: Incident, source: str, now: float) -> None:
        """When a device goes down after the hosts behind it were registered: make their pending incidents impact."""
        if not self.topology.is_down_check(inc.check_id):
            return
        behind = [h for h, _ in self.topology.parents.items() if inc.host in self.topology.ancestors(h)]
        for h in behind:
            for child in self._down_incidents(h):
                if child.state in ("pending", "suppressed") and child.id != inc.id:
                    child.state, child.parent_id = "impact", inc.id
                    self.store.event(c, child.id, source, "impact", f"folded into #{inc.id}: {inc.host} is down", now)
                    self.store.update(c, child)
                    if h not in inc.doc.setdefault("impact", []):
                        inc.doc["impact"].append(h)

    def _open(self, c: sqlite3.Cursor, inc: Incident, source: str, now: float, why: str) -> None:
        self._fold_children(c, inc, source, now)
        inc.doc.pop("open_due", None)
        inc.state = "open"
        inc.opened_at = now
        kb_sla = inc.doc.get("kb_sla")
        inc.respond_due, inc.resolve_due = sla.due_times(
            self.settings,
            inc.priority,
            tuple(kb_sla) if kb_sla else None,
            now,
        )
        self.store.event(c, inc.id, source, "opened", f"opened: {why}", now, line=inc.line, priority=inc.priority)
        if self._never(inc.doc.get("category")):
            old = inc.line
            inc.line = sla.next_line(inc.line)
            self.store.event(
                c,
                inc.id,
                source,
                "escalated",
                f"escalated at once ({inc.doc.get('category')}): {old} -> {inc.line}",
                now,
            )
        self.store.bump(c, "opened", inc.classification)
        draft = bundle.draft(inc, self.settings, self.masker, inc.doc.get("impact", []))
        self.store.enqueue(c, inc, "open", bundle.to_payload(draft), now)
        self.store.update(c, inc)

    def _suppress(self, c: sqlite3.Cursor, inc: Incident, source: str, now: float, why: str) -> Outcome:
        inc.state = "suppressed"
        inc.doc["suppressed_by"] = why
        self.store.event(c, inc.id, source, "suppressed", f"not opened: {why}", now)
        self.store.update(c, inc)
        return Outcome("suppressed", inc.id, inc.fingerprint, why)

    def _reopen(
        self, c: sqlite3.Cursor, inc: Incident, source: str, f: Finding, scope: str | None, now: float
    ) -> Outcome:
        ago = now - (inc.resolved_at or now)
        inc.state = "open" if inc.opened_at is not None else "pending"
        inc.resolved_at = None
        inc.last_seen = now
        inc.occurrences += 1
        inc.scope = scope or inc.scope
        inc.doc.update(
            summary=self.masker.text(f.summary),
            evidence=self._masked_evidence(f),
            reopened=inc.doc.get("reopened", 0) + 1,
        )
        inc.doc.pop("clear_since", None)
        inc.doc.pop("breaches", None)
        inc.doc.pop("recheck", None)
        inc.doc["present"] = False  # it was resolved: coming back is a change
        flapping = self._change(c, inc, source, now, present=True)
        if inc.opened_at is not None and inc.acked_at is not None:
            # Back again, it needs someone again: the new respond deadline below would never be breached under
            # the old acknowledgement. That one stays on record (doc and events); the next ack starts over.
            inc.doc["acked_before_reopen"] = [*inc.doc.get("acked_before_reopen", []), inc.acked_at]
            inc.acked_at = None
        if inc.opened_at is not None:
            inc.respond_due, inc.resolve_due = sla.due_times(
                self.settings,
                inc.priority,
                tuple(inc.doc["kb_sla"]) if inc.doc.get("kb_sla") else None,
                now,
            )
        text = f"came back {ago:.0f} s after it was resolved (within the reopen window): reopened"
        self.store.event(c, inc.id, source, "reopened", text, now)
        self.store.bump(c, "reopened")
        if inc.opened_at is not None and not flapping:  # flapping: its own note said it
            self.store.enqueue(
                c,
                inc,
                "reopen",
                bundle.note_payload(
                    bundle.evidence_note(inc, self.masker, f"Reopened: the problem {text}."), markdown=True
                ),
                now,
            )
        self.store.update(c, inc)
        return Outcome("reopened", inc.id, inc.fingerprint)

    def _to_clearing(
        self, inc: Incident, source: str, now: float, text: str, recheck: dict[str, Any] | None = None
    ) -> bool:
        """Open -> clearing (with the push re-check's due time); True when this change made it start flapping."""
        flapping = False
        with self.store.tx() as c:
            if recheck is not None:
                inc.doc["recheck"] = recheck
            if inc.state != "clearing":
                inc.state = "clearing"
                inc.doc["clear_since"] = now
                self.store.event(c, inc.id, source, "clearing", text, now)
                if self._change(c, inc, source, now, present=False):
                    flapping = True
                    inc.state = "open"  # a flapping incident stays open; its re-check waits until flapping ends
                    inc.doc.pop("clear_since", None)
                    if isinstance(inc.doc.get("recheck"), dict):
                        inc.doc["recheck"]["due"] = None
            self.store.update(c, inc)
        return flapping

    def _quiet_end(self, inc: Incident, source: str, now: float, why: str) -> Outcome:
        """End an incident that never reached a ticket: pending (damped), suppressed, or impact."""
        with self.store.tx() as c:
            if inc.state == "pending" and self._change(c, inc, source, now, present=False):
                self.store.update(c, inc)
                return Outcome("flapping", inc.id, inc.fingerprint, "flapping started")
            kind = {"pending": "discarded", "suppressed": "resolved", "impact": "resolved"}[inc.state]
            text = {
                "pending": f"{why} before open_after ({self.settings.open_after:g} s): damped, no ticket",
                "suppressed": f"{why} while suppressed: no ticket",
                "impact": f"{why}: the host answers again",
            }[inc.state]
            inc.state = kind
            inc.resolved_at = now
            self.store.event(c, inc.id, source, kind, text, now)
            self.store.update(c, inc)
            return Outcome(kind, inc.id, inc.fingerprint)

    def _absent(self, inc: Incident, source: str, scope: str, now: float) -> Outcome | None:
        """Handle an incident its scope looked for and no longer reports; None when its re-check is due."""
        if inc.doc.pop("not_checked", None) is not None:  # looked at again: a later gap is news again
            with self.store.tx() as c:
                self.store.update(c, inc)
        if inc.state in ("pending", "suppressed", "impact"):
            return self._quiet_end(inc, source, now, f"{source} no longer finds it")
        if inc.doc.get("flapping"):
            return self._flap_gone(inc, source, now, None)
        if inc.state == "open":
            if self._to_clearing(
                inc, source, now, f"{source} no longer finds it; resolving after hysteresis and a re-check"
            ):
                return Outcome("flapping", inc.id, inc.fingerprint, "flapping started")
            if self.settings.close_after > 0:
                return Outcome("clearing", inc.id, inc.fingerprint)
        if now - inc.last_seen < self.settings.close_after:
            return Outcome("clearing", inc.id, inc.fingerprint, "within hysteresis")
        if scope not in self._rechecks:
            with self.store.tx() as c:
                if not inc.doc.get("no_verifier"):
                    inc.doc["no_verifier"] = True
                    self.store.event(
                        c, inc.id, source, "unverified", "gone, but no re-check is available; stays open", now
                    )
                    self.store.update(c, inc)
            return Outcome("still_open", inc.id, inc.fingerprint, "no re-check available")
        return None

    def _after_recheck(
        self, inc: Incident, source: str, scope: str, now: float, rechecked: Result | Exception
    ) -> Outcome:
        current = self.store.live(inc.fingerprint)
        if current is None or current.id != inc.id or current.state != "clearing" or current.last_seen > inc.last_seen:
            return Outcome("still_open", inc.id, inc.fingerprint, "seen again during the re-check")
        inc = current
        if isinstance(rechecked, Exception):
            return self._not_checked(inc, source, f"the re-check of {scope} could not run: {_why(rechecked)}", now)
        floor = SEVERITY_RANK[self.settings.min_severity]
        findings = rechecked.findings
        still = [f for f in findings if f.fingerprint == inc.fingerprint and SEVERITY_RANK.get(f.severity, 0) >= floor]
        gap = None if still else gap_for(rechecked.gaps, inc.check_id, inc.subject)
        if gap is not None:
            return self._not_checked(inc, source, f"the re-check of {scope} could not look: {gap.reason}", now)
        inc.doc.pop("not_checked", None)
        if still:
            with self.store.tx() as c:
                inc.state, inc.last_seen = "open", now
                inc.doc.pop("clear_since", None)
                inc.doc.pop("not_checked", None)
                self.store.event(
                    c, inc.id, source, "verify_failed", f"the re-check still finds: {still[0].summary}", now
                )
                self.store.update(c, inc)
            return Outcome("still_open", inc.id, inc.fingerprint, "re-check still finds it")
        note = (
            f"Resolved: {source} stopped finding {inc.check_id} on {inc.host} at "
            f"{bundle.when(inc.doc.get('clear_since'))}, it stayed away for {now - inc.last_seen:.0f} s, "
            f"and the re-check ({scope}) at {bundle.when(now)} confirms it."
        )
        return self._resolve(inc, source, now, note, [])

    def _not_checked(self, inc: Incident, source: str, why: str, now: float) -> Outcome:
        """A run or re-check that could not look at ``inc``: it stays where it is; the journal says why, once."""
        if inc.doc.get("not_checked") != why:  # a host down for hours is one line, not one per poll
            with self.store.tx() as c:
                inc.doc["not_checked"] = why
                self.store.event(c, inc.id, source, "not_checked", f"not checked: {why}; stays {inc.state}", now)
                self.store.update(c, inc)
        return Outcome("not_checked", inc.id, inc.fingerprint, why)

    def _verify_push(self, inc: Incident, d: _Deferred, now: float) -> Outcome:
        """Run ``d.verify()`` without holding the engine lock, then apply its verdict under it."""
        with self._lock:
            if inc.fingerprint in self._verifying:  # the clock and a source's resolve met: one re-check is enough
                return Outcome("deferred", inc.id, inc.fingerprint, "a re-check is running")
            self._verifying.add(inc.fingerprint)
        try:
            d.attempts += 1
            d.last_try = now
            seen = inc.last_seen
            with self._lock, self.store.tx() as c:  # the attempt counts even when the process dies during it
                cur = self.store.live(inc.fingerprint)
                if cur is not None and cur.id == inc.id and isinstance(cur.doc.get("recheck"), dict):
                    cur.doc["recheck"]["attempts"] = d.attempts
                    self.store.update(c, cur)
            try:
                v = d.verify()
            except Exception as e:  # a failed re-check proves nothing
                log.warning("re-check for incident %d failed: %s", inc.id, e)
                v = Verdict(False, f"The re-check could not run ({type(e).__name__}: {e}); the incident stays open.")
        finally:
            with self._lock:
                self._verifying.discard(inc.fingerprint)
        with self._lock:
            current = self.store.live(inc.fingerprint)
            if current is None or current.id != inc.id or current.state not in OPEN_STATES:
                return Outcome("unknown", inc.id, inc.fingerprint, "the incident changed during the re-check")
            if current.last_seen > seen or current.doc.get("flapping"):  # fired again meanwhile: the re-check is stale
                self._deferred.pop(inc.fingerprint, None)
                return Outcome("still_open", inc.id, inc.fingerprint, "seen again during the re-check")
            return self._apply_verdict(current, d, v, now)

    def _apply_verdict(self, inc: Incident, d: _Deferred, v: VerdictLike, now: float) -> Outcome:
        evidence = [self.masker.data(e.to_dict()) for e in v.evidence]
        if d.evidence is not None:
            evidence.insert(0, self.masker.data(d.evidence.to_dict()))
        if v.cleared:
            self._deferred.pop(inc.fingerprint, None)
            return self._resolve(inc, d.source, now, self.masker.text(v.note), evidence)
        n, total = d.attempts, self.MAX_REVERIFY
        if n >= total:
            self._deferred.pop(inc.fingerprint, None)
            last = f"Re-check {n} of {total} at {bundle.when(now)}: {self.masker.text(v.note)}"
            self._give_up(inc, d.source, now, n, evidence, last)
            return Outcome("still_open", inc.id, inc.fingerprint, "re-check does not confirm; left open for a person")
        due = now + max(self.settings.close_after, self.settings.tick)
        text = (
            f"Re-check {n} of {total} at {bundle.when(now)}: {self.masker.text(v.note)} "
            f"Next re-check at {bundle.when(due)}."
        )
        with self.store.tx() as c:
            inc.state = "open"
            inc.doc.pop("clear_since", None)
            inc.doc["recheck"] = d.stored(due)
            self.store.event(c, inc.id, d.source, "verify_failed", text, now, attempt=n, of=total)
            if inc.opened_at is not None:
                self.store.enqueue(c, inc, "note", bundle.note_payload(text), now)
            self.store.update(c, inc)
        self._deferred[inc.fingerprint] = d
        return Outcome(
            "still_open", inc.id, inc.fingerprint, f"re-check {n} of {total} does not confirm; will re-check again"
        )

    def _give_up(
        self, inc: Incident, source: str, now: float, attempts: int, evidence: list[dict[str, Any]], last: str
    ) -> None:
        """diag stops re-checking: the ticket says so, with the last evidence and what a person must confirm."""
        lines = [
            last,
            "",
            f"diag stopped re-checking at {bundle.when(now)} ({attempts} of {self.MAX_REVERIFY} re-checks done). "
            f"This incident stays open. A person must confirm on {inc.host} that {inc.check_id}"
            f"{f' ({inc.subject})' if inc.subject else ''} no longer holds ({inc.summary}), "
            "or fix it, then close the ticket; diag will not close it on its own.",
        ]
        shown = [ev for ev in evidence if ev.get("text")][:2]
        if shown:
            lines += ["", "Last evidence:"]
        text = bundle.markdown_note(self.masker, "\n".join(lines), shown)
        with self.store.tx() as c:
            inc.state = "open"
            inc.doc.pop("clear_since", None)
            inc.doc.pop("recheck", None)
            inc.doc["gave_up_at"] = now
            self.store.event(c, inc.id, source, "gave_up", text, now, attempts=attempts)
            if inc.opened_at is not None:
                self.store.enqueue(c, inc, "note", bundle.note_payload(text, markdown=True), now)
            self.store.update(c, inc)

    def _resolve(self, inc: Incident, source: str, now: float, note: str, evidence: list[dict[str, Any]]) -> Outcome:
        with self.store.tx() as c:
            inc.state = "resolved"
            inc.resolved_at = now
            inc.doc.pop("clear_since", None)
            inc.doc.pop("recheck", None)
            self._change(c, inc, source, now, present=False)
            if evidence:
                inc.doc["resolution_evidence"] = evidence
            self.store.event(c, inc.id, source, "resolved", note, now)
            self.store.bump(c, "resolved", inc.classification)
            if inc.opened_at is not None:
                text = bundle.markdown_note(self.masker, note, [ev for ev in evidence if ev.get("text")][:3])
                self.store.enqueue(c, inc, "close", bundle.note_payload(text, markdown=True), now)
            for child in self.store.children(inc.id):
                child.state, child.resolved_at = "resolved", now
                self.store.event(c, child.id, source, "resolved", f"resolved with #{inc.id} ({inc.host})", now)
                self.store.update(c, child)
            self.store.update(c, inc)
        return Outcome("resolved", inc.id, inc.fingerprint)

    # ------------------------------------------------------------------ flapping
    def _recent_changes(self, inc: Incident | None, now: float) -> list[float]:
        """The condition's state changes within ``flap_window`` (kept on its latest incident, whatever its state)."""
        if inc is None:
            return []
        return [float(t) for t in inc.doc.get("changes", []) if now - float(t) < self.settings.flap_window]

    def _change(self, c: sqlite3.Cursor, inc: Incident, source: str, now: float, *, present: bool) -> bool:
        """Count a change of the condition (there <-> gone); True when it made the incident start flapping.

        Flapping starts at ``flap_start`` changes within ``flap_window`` and ends at ``flap_stop`` or fewer
        (hysteresis, as in Nagios): the ticket hears once when it starts and once when it stops, not every change.
        """
        if bool(inc.doc.get("present", True)) == present:
            return False
        inc.doc["present"] = present
        changes = [*self._recent_changes(inc, now), now]
        inc.doc["changes"] = changes
        if (
            inc.doc.get("flapping")
            or len(changes) < self.settings.flap_start
            or inc.state in ("suppressed", "impact", "resolved")
        ):
            return False
        inc.doc["flapping"] = True
        inc.doc["flap_since"] = now
        window = self.settings.flap_window
        text = (
            f"Flapping: {inc.check_id} on {inc.host} changed state {len(changes)} times in the last {window:g} s "
            f"(it is {'present' if present else 'gone'} now). diag keeps this one incident open and notes the "
            f"ticket again when it has changed at most {self.settings.flap_stop} times in {window:g} s."
        )
        self.store.event(c, inc.id, source, "flapping_start", text, now, changes=len(changes))
        inc.doc["summary"] = inc.summary if inc.summary.startswith("[flapping] ") else f"[flapping] {inc.summary}"
        if inc.opened_at is None:  # damped every time so far: flapping opens it (the ticket's first note says why)
            inc.doc.pop("open_due", None)
            self._open(c, inc, source, now, text)
        elif inc.state == "clearing":
            inc.state = "open"
            inc.doc.pop("clear_since", None)
        self.store.enqueue(c, inc, "note", bundle.note_payload(text), now)
        return True

    def _revive(
        self, c: sqlite3.Cursor, inc: Incident, source: str, f: Finding, scope: str | None, now: float
    ) -> Outcome:
        """A damped condition that keeps coming back: its last (discarded) incident becomes the flapping one."""
        inc.state, inc.resolved_at, inc.last_seen = "pending", None, now
        inc.occurrences += 1
        inc.scope = scope or inc.scope
        inc.doc.update(summary=self.masker.text(f.summary), evidence=self._masked_evidence(f))
        self.store.event(c, inc.id, source, "registered", f"seen again: {inc.summary}", now)
        self._change(c, inc, source, now, present=True)
        self.store.update(c, inc)
        return Outcome("flapping", inc.id, inc.fingerprint, "flapping started")

    def _flap_gone(self, inc: Incident, source: str, now: float, d: _Deferred | None) -> Outcome:
        """A flapping incident's condition went away: counted, the incident stays open, its re-check is held."""
        with self.store.tx() as c:
            self._change(c, inc, source, now, present=False)
            if d is not None:
                self._deferred[inc.fingerprint] = d
                inc.doc["recheck"] = d.stored(None)
            self.store.update(c, inc)
        return Outcome("flapping", inc.id, inc.fingerprint, "gone again (flapping)")

    def _flap_check(self, inc: Incident, now: float) -> Outcome | None:
        """End flapping once few enough changes are left in the window; an absent condition then gets its re-check."""
        changes = self._recent_changes(inc, now)
        if len(changes) > self.settings.flap_stop:
            return None
        present = bool(inc.doc.get("present", True))
        window = self.settings.flap_window
        text = (
            f"Flapping stopped: {len(changes)} state change(s) in the last {window:g} s. {inc.check_id} on "
            f"{inc.host} is {'present' if present else 'gone'} now"
            + ("; the incident stays open." if present else "; it resolves after its verifying re-check confirms it.")
        )
        with self.store.tx() as c:
            inc.doc["changes"] = changes
            inc.doc["flapping"] = False
            inc.doc["summary"] = inc.summary.removeprefix("[flapping] ")
            self.store.event(c, inc.id, "clock", "flapping_stop", text, now)
            if inc.opened_at is not None:
                self.store.enqueue(c, inc, "note", bundle.note_payload(text), now)
            if not present:
                inc.state = "clearing"
                inc.doc["clear_since"] = now
                if isinstance(inc.doc.get("recheck"), dict):
                    inc.doc["recheck"]["due"] = max(now, inc.last_seen + self.settings.close_after)
            self.store.update(c, inc)
        return Outcome("flapping_stopped", inc.id, inc.fingerprint, "present" if present else "gone")

    def _sla(self, now: float) -> list[Outcome]:
        out = []
        for inc in self.store.query(OPEN_STATES, limit=1 << 30):  # every open one, not the newest 1000
            kinds = sla.breached(inc, now)
            if not kinds:
                continue
            with self.store.tx() as c:
                for kind in kinds:
                    inc.doc.setdefault("breaches", []).append(kind)
                    due = inc.respond_due if kind == "respond" else inc.resolve_due
                    old = inc.line
                    inc.line = sla.next_line(inc.line)
                    text = (
                        f"SLA breach: not {'acknowledged' if kind == 'respond' else 'resolved'} by {bundle.when(due)}"
                    )
                    self.store.event(c, inc.id, "sla", "sla_breach", text, now, clock=kind)
                    self.store.bump(c, "sla_breaches", kind)
                    if old != inc.line:
                        self.store.event(c, inc.id, "sla", "escalated", f"escalated {old} -> {inc.line}", now)
                        text += f"; escalated from {old} to {inc.line}"
                    if inc.opened_at is not None:
                        self.store.enqueue(c, inc, "note", bundle.note_payload(text + "."), now)
                    out.append(Outcome("escalated", inc.id, inc.fingerprint, text))
                self.store.update(c, inc)
        return out
