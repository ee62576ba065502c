"""The receiver: alerts in, diagnoses over SSH off the request thread, incidents opened, enriched and resolved.

:meth:`Receiver.handle` takes a decoded webhook message and only queues its alerts, so Alertmanager gets its
answer in milliseconds; worker threads do the rest. Alerts with the same Alertmanager fingerprint are worked
on one at a time and in the order they came (a "resolved" never overtakes the "firing" before it), different
alerts in parallel, at most ``workers`` at once. When more than ``max_pending`` alerts wait, new notifications
are refused (503) and Alertmanager retries them later: nothing is dropped silently.

A firing alert is mapped to an inventory host and a playbook (:mod:`diag.alertmanager.mapping`); the playbook
runs through the same runner and SSH pool code as ``diag check``; the alert and what the diagnosis found become
one finding that goes to the incident engine, which opens the incident or, for a repeat, adds to it. A resolved
alert asks the engine to resolve the incident, and the engine's verifying re-check is :meth:`verify`: the same
playbook again, on the host itself, so an incident is never closed on Alertmanager's word alone.

Nothing here waits in memory only: a damped alert's opening is the engine's stored ``open_due``, and a re-check
the engine has not run yet is stored with its due time and the alert (``resume_spec``), from which
:meth:`Receiver.resume` builds the verifier again after a restart.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from diag.alertmanager import mapping
from diag.alertmanager.config import ReceiverConfig, Route
from diag.alertmanager.engine import Verdict
from diag.alertmanager.payload import Alert, Message
from diag.alertmanager.queue import JobStore
from diag.errors import ConfigError, StoreUnavailable
from diag.incidents.failpoints import failpoint
from diag.inventory import Host
from diag.model import SEVERITY_RANK, Evidence, Finding, Metric

if TYPE_CHECKING:
    from diag.alertmanager.engine import IncidentSink
    from diag.remote.runner import PoolLike

log = logging.getLogger(__name__)
SOURCE = "alertmanager"
ATTEMPTS = 5  # tries of one job before it is given up (backoff 1, 2, 4, 8 s between them)
#: The longest wait between tries while the incident store is away (PostgreSQL restarting): such a job is never
#: given up, because Alertmanager was told it was accepted and will not send it again.
OUTAGE_BACKOFF_MAX = 30.0


def _outcome_text(outcome: Any) -> str:
    """The engine's answer as a short result: ``opened #3``, ``occurrence #3 (occurrence 2)``."""
    outcomes = outcome if isinstance(outcome, list) else [outcome]
    return "; ".join(str(o) for o in outcomes)[:200]


class Busy(Exception):
    """Too many alerts wait already; the notification is refused so that Alertmanager retries it."""


@dataclass(slots=True)
class Job:
    id: int  # its row in the on-disk queue (0: made by the receiver itself, not stored)
    alert: Alert
    external_url: str
    received: float = field(default_factory=time.monotonic)
    #: When the notification was received (wall clock; kept on disk): a firing alert is "seen" then, so a job
    #: replayed after a restart does not count as seen again (which would open a damped incident too early).
    at: float = field(default_factory=time.time)


@dataclass(slots=True)
class Diagnosis:
    """What one playbook run on one host said about an alert."""

    playbook: str
    status: str  # a diag check host status: ok, findings, unreachable, auth_failed, ...
    error: str | None
    findings: list[Finding]
    evidence: list[Evidence]
    duration_s: float
    at: float = field(default_factory=time.monotonic)
    #: What the run left unlooked-at although the host answered (a step left for approval), or None.
    gap: str | None = None

    @property
    def checked(self) -> bool:
        """Whether the run looked at everything: only then does a missing finding mean "gone"."""
        return self.status in ("ok", "findings") and self.gap is None

    def problems(self) -> list[Finding]:
        return [f for f in self.findings if SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]]


@dataclass(slots=True)
class _AlertState:
    """What the receiver remembers of a firing alert between notifications (dropped when it resolves)."""

    host: Host | None
    host_name: str
    finding_fp: str
    diagnosis: Diagnosis | None = None


class _Recheck:
    """The verifier handed to the engine for a resolved alert; ``resume_spec`` lets it be built after a restart."""

    def __init__(
        self,
        receiver: Receiver,
        alert: Alert,
        url: str,
        host: Host | None,
        route: Route | None,
        before: Diagnosis | None,
    ) -> None:
        self.receiver, self.alert, self.host, self.route, self.before = receiver, alert, host, route, before
        problems = before.problems() if before else []
        self.resume_spec: dict[str, Any] = {
            "alert": msgspec.to_builtins(alert),
            "external_url": url,
            "playbook": before.playbook if before else None,
            "before": [[f.check, f.severity, f.subject, f.host or ""] for f in problems],
            "checked": before.checked if before else False,  # it looked: an empty "before" means it saw nothing
        }

    def __call__(self) -> Verdict:
        verdict = self.receiver.verify(self.alert, self.host, self.route, self.before)
        self.receiver.count("rechecks", "cleared" if verdict.cleared else "kept_open")
        return verdict


class Receiver:
    """Alertmanager alerts -> diagnosis -> incident engine. ``close()`` waits for running work and closes SSH."""

    def __init__(
        self,
        cfg: ReceiverConfig,
        hosts: Mapping[str, Host],
        engine: IncidentSink,
        data: Path,
        pool: PoolLike | None = None,
    ) -> None:
        self.cfg = cfg
        self.index = mapping.HostIndex(hosts)
        self.hosts = dict(hosts)
        self.engine = engine
        self.data = data
        self._pool = pool
        self._pool_lock = threading.Lock()
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Job]] = {}  # alert key -> jobs waiting; present while a worker drains it
        self._pending = 0
        self._states: dict[str, _AlertState] = {}
        self._executor = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="diag-alert")
        self._idle = threading.Condition(self._lock)
        self._closing = False
        self._stopping = threading.Event()  # interrupts the backoff of a failing job when the receiver stops
        self.counters: dict[tuple[str, str], int] = {}  # (family, label value) -> count, for /metrics and /healthz
        self._kb_playbooks: dict[str, Any] = {}  # playbook name -> Playbook, or None when it cannot be loaded
        self.store = JobStore(data / "alertmanager.sqlite")
        from diag.journal import open_journal  # the event journal (docs/journal.md), shared with diag check

        self.journal = open_journal(data)
        resumable = getattr(engine, "resumable", None)
        if resumable is not None:  # the engine resumes re-checks that were due when the agent stopped
            resumable(SOURCE, self.resume)
        holds = getattr(engine, "holds", None)
        if holds is not None:  # a damped alert does not open by the clock while its own news waits in our queue
            holds.append(self.holds_news)
        left = self.store.pending()
        if left:
            log.info("alertmanager receiver: resuming %d alerts accepted before the last stop", len(left))
            with self._lock:
                for job_id, alert, url, received_at in left:
                    self._enqueue(Job(job_id, alert, url, at=received_at))

    # ---- the request side
    def handle(self, msg: Message) -> dict[str, Any]:
        """Queue every alert of the message; Busy when the queue is full. Returns what was accepted."""
        with self._lock:
            if self._pending + len(msg.alerts) > self.cfg.max_pending:
                self.count("notifications", "busy")
                raise Busy(f"{self._pending} alerts are waiting (max_pending {self.cfg.max_pending}); retry later")
            # On disk before the 202 goes out: Alertmanager will not send an acknowledged notification again.
            at = time.time()
            try:
                ids = self.store.add(msg.alerts, msg.externalURL, at)
            except sqlite3.Error as e:  # locked, disk full: not accepted, so Alertmanager must send it again (503)
                self.count("notifications", "busy")
                raise Busy(f"cannot queue the alerts in {self.store.path}: {e}; retry later") from None
            self.count("notifications", "accepted")
            for job_id, alert in zip(ids, msg.alerts, strict=True):
                self.count("alerts", alert.status)
                self._enqueue(Job(job_id, alert, msg.externalURL, at=at))
            pending = self._pending
        if msg.truncatedAlerts:
            log.warning(
                "alertmanager notification %s left out %d alerts (its max_alerts); they come with a later one",
                msg.groupKey,
                msg.truncatedAlerts,
            )
        return {"accepted": len(msg.alerts), "pending": pending}

    def _enqueue(self, job: Job) -> None:
        """Queue a job behind earlier ones for the same alert (caller holds the lock)."""
        self._pending += 1
        q = self._queues.get(job.alert.key)
        if q is not None:  # a worker is on this alert: it takes the job when it is done
            q.append(job)
            return
        self._queues[job.alert.key] = deque([job])
        self._executor.submit(self._drain, job.alert.key)

    def holds_news(self, incident: Any) -> bool:
        """Whether jobs of the incident's alert are queued or being worked on (a "resolved" that came in time)."""
        key = (incident.doc.get("labels") or {}).get("alert_fingerprint")
        with self._lock:
            return key is not None and key in self._queues

    def record(self, action: str, target: str, result: str, details: dict[str, Any], actor: str = SOURCE) -> None:
        """One event journal record; a journal that cannot be written is logged, and the alert goes on."""
        try:
            self.journal.append(actor, action, target, result, details)
        except (OSError, sqlite3.Error) as e:
            log.error("event journal %s: cannot record %s on %s: %s", self.journal.path, action, target, e)

    def count(self, family: str, label: str) -> None:
        """Count an event (callers that do not hold the lock may call it: a lost increment is not possible here,
        dict updates of one key are atomic under the GIL, and the figures are for monitoring)."""
        key = (family, label)
        self.counters[key] = self.counters.get(key, 0) + 1

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: alerts waiting or being worked on, firing alerts remembered, and counters."""
        with self._lock:
            counts = {f"{fam}_{lbl}": n for (fam, lbl), n in sorted(self.counters.items())}
            return {"pending": self._pending, "firing": len(self._states), **counts}

    def metrics(self) -> list[Metric]:
        """``diag_alertmanager_*`` for the agent's /metrics."""
        families = [
            ("notifications", "result", "Webhook notifications by how the receiver answered them."),
            ("alerts", "status", "Alerts accepted, by their status (firing or resolved)."),
            ("diagnoses", "status", "Diagnosis playbook runs by host status (ok, findings, unreachable, ...)."),
            ("rechecks", "result", "Verifying re-checks of resolved alerts: cleared, or the incident kept open."),
        ]
        out = []
        for fam, label, help_ in families:
            m = Metric(f"diag_alertmanager_{fam}", help_, "counter", (label,))
            for (f, lv), n in sorted(self.counters.items()):
                if f == fam:
                    m.add(n, lv)
            out.append(m)
        with self._lock:
            pending = self._pending
        out.append(
            Metric("diag_alertmanager_pending_alerts", "Alerts accepted and not handed to the engine yet.").add(pending)
        )
        return out

    def render(self) -> bytes:
        from diag.exporters.exposition import encode_metrics

        return encode_metrics(self.metrics())

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                q = self._queues[key]
                if not q or self._closing:  # closing: what is left stays on disk for the next start
                    del self._queues[key]
                    self._idle.notify_all()
                    released = True
                else:
                    released = False
                    job = q.popleft()
            if released:
                wake = getattr(self.engine, "wake", None)
                if wake is not None:  # the alert's hold on its damped incident ended: the clock may be due
                    wake()
                return
            try:
                finished = self._work(job)
            finally:
                with self._lock:
                    self._pending -= 1
            if finished and job.id:
                self.store.done(job.id)

    def _work(self, job: Job) -> bool:
        """Process a job, trying again with backoff when it fails (the engine's database busy, say).

        False when the receiver stops in between: the job stays on disk for the next start. A job that fails
        every attempt is logged with its traceback and dropped, so one poisoned alert cannot block its successors.
        The incident store being away (``StoreUnavailable``) is not the job's fault: it is tried again, with the
        wait growing to ``OUTAGE_BACKOFF_MAX``, until the store is back or the receiver stops.
        """
        attempt, outages = 1, 0
        while attempt <= ATTEMPTS:
            try:
                self.process(job)
                return True
            except StoreUnavailable as e:
                outages += 1
                delay = min(2.0 ** min(outages - 1, 8), OUTAGE_BACKOFF_MAX)
                log.warning(
                    "alert %s (%s): kept in the queue, the incident store is away (%s); trying again in %g s",
                    job.alert.name,
                    job.alert.key,
                    e,
                    delay,
                )
                if self._stopping.wait(delay):
                    return False
                continue
            except Exception as e:  # one alert's failure must not stop the others or kill the worker
                if attempt == ATTEMPTS:
                    log.exception("alert %s (%s): giving up after %d attempts", job.alert.name, job.alert.key, attempt)
                    return True
                delay = min(2.0 ** (attempt - 1), 30.0)
                log.warning(
                    "alert %s (%s): attempt %d failed (%s: %s); trying again in %g s",
                    job.alert.name,
                    job.alert.key,
                    attempt,
                    type(e).__name__,
                    e,
                    delay,
                )
                if self._stopping.wait(delay):
                    return False
                attempt += 1
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no alert is queued or being worked on (tests, the bench, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._queues:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        """Finish the alerts being worked on; queued ones stay on disk and are resumed at the next start."""
        self._stopping.set()
        with self._lock:
            self._closing = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._pool_lock:
            if self._pool is not None and hasattr(self._pool, "close_all"):
                self._pool.close_all()
        self.store.close()

    # ---- the worker side
    def process(self, job: Job) -> None:
        if job.alert.status == "firing":
            self.firing(job)
        else:
            self.resolved(job)

    def firing(self, job: Job) -> None:
        a = job.alert
        host, host_name = mapping.resolve_host(a, self.index, self.cfg.host_labels)
        route = self.route(a)
        state = self._states.get(a.key)
        repeat = state is not None
        log.info(
            "alert %s %s on %s (%s)",
            a.name,
            "repeats" if repeat else "fires",
            host_name,
            "inventory host" if host else "not in the inventory",
            extra={"event": "alert_firing", "alertname": a.name, "host": host_name, "repeat": repeat},
        )
        diagnosis = state.diagnosis if state else None
        if host is not None and route is not None:
            stale = diagnosis is None or time.monotonic() - diagnosis.at >= self.cfg.rediagnose_after
            if stale:
                diagnosis = self.diagnose(host, route, a)
        elif route is None:
            log.info("alert %s: no playbook maps to it; registered without a diagnosis", a.name)
        finding = self._finding(job, host_name, diagnosis, route, host)
        if state is None:
            state = _AlertState(host, host_name, finding.fingerprint)
            self._states[a.key] = state
        state.diagnosis = diagnosis
        outcome = self.engine.ingest(SOURCE, [finding], now=job.at)
        log.info(
            "alert %s on %s: incident %s",
            a.name,
            host_name,
            outcome,
            extra={"event": "alert_incident", "alertname": a.name, "host": host_name, "outcome": str(outcome)},
        )
        self.record(
            "alert.firing",
            host_name,
            _outcome_text(outcome),
            {"alertname": a.name, "alert": a.key, "subject": finding.subject, "fingerprint": finding.fingerprint,
             "repeat": repeat, "playbook": route.playbook.name if route else None},
        )  # fmt: skip

    def resolved(self, job: Job) -> None:
        a = job.alert
        state = self._states.get(a.key)
        host, host_name = (
            (state.host, state.host_name) if state else mapping.resolve_host(a, self.index, self.cfg.host_labels)
        )
        route = self.route(a)
        fp = state.finding_fp if state else Finding(a.name, "info", "", mapping.subject(a), host=host_name).fingerprint
        log.info(
            "alert %s resolved on %s; verifying before the incident is resolved",
            a.name,
            host_name,
            extra={"event": "alert_resolved", "alertname": a.name, "host": host_name},
        )

        verify = _Recheck(self, a, job.external_url, host, route, state.diagnosis if state else None)
        outcome = self.engine.resolve(SOURCE, fp, verify, mapping.alert_evidence(a, job.external_url))
        self._states.pop(a.key, None)
        self.record(
            "alert.resolved",
            host_name,
            _outcome_text(outcome),
            {"alertname": a.name, "alert": a.key, "fingerprint": fp},
        )
        log.info(
            "alert %s on %s: %s",
            a.name,
            host_name,
            outcome,
            extra={"event": "alert_resolve_outcome", "alertname": a.name, "host": host_name, "outcome": str(outcome)},
        )

    def resume(self, incident: Any, spec: Mapping[str, Any]) -> _Recheck:
        """The verifier of a resolved alert whose re-check was due when the agent stopped (the engine asks)."""
        alert = msgspec.convert(spec["alert"], Alert)
        host, _ = mapping.resolve_host(alert, self.index, self.cfg.host_labels)
        before = None
        if spec.get("playbook"):
            found = [Finding(c, sev, "", subj, host=h) for c, sev, subj, h in spec.get("before", [])]
            status = "findings" if found else "ok" if spec.get("checked") is True else "not_checked"
            before = Diagnosis(str(spec["playbook"]), status, None, found, [], 0.0)
        return _Recheck(self, alert, str(spec.get("external_url", "")), host, self.route(alert), before)

    # ---- which playbook
    def route(self, alert: Alert) -> Route | None:
        """The diagnosis for an alert: from ``playbooks``, else from the knowledge base, else ``default_playbook``."""
        configured = self.cfg.routes.get(alert.name)
        if configured is not None:
            return configured
        return self._kb_route(alert) or self.cfg.default_route

    def _kb_route(self, alert: Alert) -> Route | None:
        """The playbook of the verified knowledge-base entry that matches the alert (its ``remediation``).

        Only verified entries drive automation, and only the playbook's read-only steps run (the runner never runs
        a ``changes: true`` step from here). Variables come from the alert's labels of the same name, and through
        ``kb_vars_from_labels`` (``path`` from ``mountpoint``, ``service`` from ``unit`` by default).
        """
        kb = getattr(self.engine, "kb", None)
        if kb is None:
            return None
        from diag.incidents.knowledge import Facts

        text = "\n".join([alert.annotations.get("summary", ""), alert.annotations.get("description", "")])
        facts = Facts(alert.name, dict(alert.labels), text, subject=mapping.subject(alert))
        entry = kb.classify(facts, providers=()).entry
        if entry is None or not entry.verified or not entry.remediation:
            return None
        name = str(entry.remediation)
        if name not in self._kb_playbooks:
            from diag.remote import playbook as pbmod

            try:
                self._kb_playbooks[name] = pbmod.load(pbmod.find(name))
            except ConfigError as e:
                log.warning("knowledge-base entry %s names playbook %s, which cannot be used: %s", entry.id, name, e)
                self._kb_playbooks[name] = None
        pb = self._kb_playbooks[name]
        if pb is None:
            return None
        aliases = self.cfg.kb_vars_from_labels
        from_labels = {v: v if v in alert.labels else aliases.get(v, v) for v in pb.vars}
        return Route(pb, {}, from_labels)

    # ---- diagnosis and verification
    def pool(self) -> PoolLike:
        with self._pool_lock:
            if self._pool is None:
                from diag.remote.ssh import SSHPool

                self._pool = SSHPool(
                    known_hosts=[Path(p) for p in self.cfg.known_hosts] if self.cfg.known_hosts else None,
                    tofu_store=self.data / "known_hosts.tofu",
                    max_concurrency=self.cfg.workers,
                    hosts=self.hosts,
                )
            return self._pool

    def diagnose(self, host: Host, route: Route, alert: Alert) -> Diagnosis:
        """Run the route's playbook on the host (the runner ``diag check`` uses); never raises."""
        from diag.services import check as svc
        from diag.services.backends import LocalBackend

        pb = route.playbook
        t0 = time.monotonic()
        # the same use case and trail as `diag check`: who ran which playbook on which host, every command and finding
        req = svc.CheckRequest(pb, [host], mapping.playbook_vars(route, alert), actor=SOURCE, job=f"alert:{alert.key}")
        try:
            report = svc.run(req, LocalBackend(self.pool()), [svc.JournalObserver(self.journal, strict=False)])
        except ConfigError as e:  # a label value that does not fit the variable's type
            return Diagnosis(pb.name, "error", str(e), [], [], time.monotonic() - t0)
        if not report.results:
            reason = report.skipped[0]["reason"] if report.skipped else "playbook did not run"
            return Diagnosis(pb.name, "error", reason, [], [], time.monotonic() - t0)
        r = report.results[0]
        evidence: list[Evidence] = []
        seen: set[str] = set()
        for f in r.findings:
            for ev in f.evidence:
                key = f"{ev.title}\x1f{ev.data.get('step', '')}"
                if key not in seen:
                    seen.add(key)
                    evidence.append(ev)
        if not r.findings:  # nothing judged wrong: every step's output is the evidence that it was looked at
            evidence = [s.evidence() for s in r.steps if s.command]
        if r.error:
            evidence.append(Evidence("text", f"diagnosis {r.status}", r.error, {"status": r.status}))
        from diag.incidents.sources import host_gaps

        gaps = host_gaps(r)
        d = Diagnosis(pb.name, r.status, r.error, list(r.findings), evidence, r.duration_s)
        d.gap = gaps[0].reason if gaps and r.status in ("ok", "findings") else None
        self.count("diagnoses", r.status)
        log.info(
            "diagnosis %s on %s: %s, %d findings in %.2f s",
            pb.name,
            host.name,
            r.status,
            len(r.findings),
            r.duration_s,
            extra={"event": "alert_diagnosis", "host": host.name, "playbook": pb.name, "status": r.status},
        )
        return d

    def verify(self, alert: Alert, host: Host | None, route: Route | None, before: Diagnosis | None) -> Verdict:
        """Is the condition really gone? Run the diagnosis again and look for what it found while firing."""
        if host is None or route is None:
            return self.verify_on_prometheus(alert)
        if before is not None and before.checked and not before.problems():
            # The playbook found nothing while the alert fired (its threshold, or what the labels made it look
            # at, is not the rule's): its finding nothing now would prove nothing. (A diagnosis that could not
            # look, or one lost in a restart: any problem the re-check finds keeps the incident open, below.)
            # Alertmanager's "resolved" may be hearsay too (an alert that expired because Prometheus stopped
            # sending it): the rule's own expression decides, and says "not checked" when it has no data.
            v = self.verify_on_prometheus(alert)
            lead = f"The {route.playbook.name} playbook did not see it while it fired; the rule's expression decides. "
            return Verdict(v.cleared, lead + v.note, v.evidence)
        now = self.diagnose(host, route, alert)
        failpoint("alert_recheck_ran")  # the crash test kills here: the SSH re-check ran, its verdict not applied
        if not now.checked:
            return Verdict(
                False,
                f"Alertmanager reports {alert.name} resolved, but the re-check on {host.name} could not run "
                f"({now.gap or f'{now.status}: {now.error}'}); the incident stays open.",
                now.evidence,
            )
        before_fps = {f.fingerprint for f in before.problems()} if before else set()
        still = [f for f in now.problems() if not before_fps or f.fingerprint in before_fps]
        if still:
            return Verdict(
                False,
                f"Alertmanager reports {alert.name} resolved, but the re-check ({now.playbook}) on {host.name} "
                "still finds: " + "; ".join(f.summary for f in still),
                now.evidence,
            )
        gone = ", ".join(sorted({f.check for f in before.problems()})) if before and before.problems() else "nothing"
        return Verdict(
            True,
            f"Resolved: Alertmanager reports {alert.name} resolved and the re-check ({now.playbook}) on "
            f"{host.name} confirms it: {gone} found before, no problem found now.",
            now.evidence,
        )

    def verify_on_prometheus(self, alert: Alert) -> Verdict:
        """The re-check for an alert without a playbook: its rule's expression, evaluated again by Prometheus."""
        from diag.alertmanager.recheck import RecheckError, expression, no_data, still_firing

        url = self.cfg.prometheus_url
        if url is None:
            return Verdict(
                False,
                f"Alertmanager reports {alert.name} resolved, but diag has no playbook or inventory host to "
                "re-check it with (and no prometheus_url), so the incident stays open for a person to confirm.",
            )
        try:
            series = still_firing(alert, url)
            expr = expression(alert)
            why = None if series else no_data(alert, url)
        except RecheckError as e:
            return Verdict(False, f"Alertmanager reports {alert.name} resolved, but the re-check failed: {e}")
        ev = Evidence("metric", f"re-check on Prometheus: {expr}", "\n".join(map(str, series)) or "(no series)")
        if series:
            return Verdict(False, f"Alertmanager reports {alert.name} resolved, but {expr} still returns it.", [ev])
        if why is not None:  # an expression over a target with no data returns nothing too: that is not "gone"
            return Verdict(
                False,
                f"Alertmanager reports {alert.name} resolved and {expr} returns nothing, but not checked: {why}; "
                "the incident stays open.",
                [ev],
            )
        return Verdict(True, f"Resolved: the rule's expression no longer returns {alert.name} ({url}).", [ev])

    def _finding(
        self, job: Job, host_name: str, diagnosis: Diagnosis | None, route: Route | None, host: Host | None
    ) -> Finding:
        evidence = list(diagnosis.evidence) if diagnosis else []
        findings = list(diagnosis.findings) if diagnosis else []
        if host is None:
            evidence.append(
                Evidence(
                    "text",
                    "not diagnosed",
                    f"no inventory host matches labels {', '.join(self.cfg.host_labels)} of this alert",
                )
            )
        return mapping.incident_finding(
            job.alert, host_name, job.external_url, findings, evidence, route.playbook.name if route else None
        )
