"""Apply a standard change from the catalogue: the one use case that changes a host without a human approval.

Order of the gates (each refusal is journaled and nothing runs on the host): the change exists in the
catalogue, a lead has not paused it, the host is in its scope, every parameter is allowed, a maintenance window
is open now, the rate limit leaves room. Then on the host: the pre-check (exit 0: the condition is there, else
nothing to do), the action, the verifying re-check (the change's own ``verify`` command and the caller's
``recheck``, e.g. the diagnosis playbook run again). A failed action or verification runs the rollback and the
result says so, so the caller escalates. Every application lands in the ledger with the evidence before and
after, and as one record in the event journal (actor ``line1:KB-ENTRY/CHANGE``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from diag.inventory import Host
from diag.journal import open_journal
from diag.line1.catalogue import Catalogue, Change, now_utc
from diag.line1.ledger import Ledger
from diag.model import StepRecord
from diag.services import check
from diag.services.backends import CheckBackend

log = logging.getLogger(__name__)

#: recheck() -> (condition gone, evidence): the caller's verifying re-check after the action.
Recheck = Callable[[], tuple[bool, list[dict[str, Any]]]]


@dataclass(slots=True)
class Application:
    """The outcome of one attempt; ``result`` is one of the values in docs/line1.md."""

    change_id: str
    host: str
    result: str  # verified | refused | precheck_failed | action_failed | verify_failed | rolled_back
    reason: str
    id: int = 0
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.result == "verified"

    @property
    def refused(self) -> bool:
        return self.result in ("refused", "precheck_failed")


def _evidence(rec: StepRecord) -> dict[str, Any]:
    return {"step": rec.id, "command": rec.command, "status": rec.status, "exit_status": rec.exit_status,
            "stdout": rec.stdout[-4000:], "stderr": rec.stderr[-2000:], "reason": rec.reason}


class StandardChanges:
    """Applies catalogue entries on inventory hosts through an SSH pool."""

    def __init__(self, catalogue: Catalogue, ledger: Ledger, backend: CheckBackend, data_dir: Path,
                 clock: Callable[[], datetime] = now_utc) -> None:
        self.catalogue = catalogue
        self.ledger = ledger
        self.backend = backend
        self.data_dir = data_dir
        self.clock = clock

    def gate(self, change_id: str, host: Host, params: Mapping[str, Any]) -> tuple[Change | None, str | None]:
        """The change and None when it may run now on ``host``; else the reason it may not."""
        change = self.catalogue.get(change_id)
        if change is None:
            return None, f"{change_id!r} is not in the catalogue of standard changes: it needs an approval"
        paused = self.ledger.paused().get(change_id)
        if paused is not None:
            return change, f"standard change {change_id} is paused by {paused['by']}"
        if not change.in_scope(host.name, host.groups):
            return change, f"host {host.name} is outside the scope of standard change {change_id}"
        bad = change.check_params(params)
        if bad:
            return change, bad
        now = self.clock()
        if not change.window_open(now):
            windows = "; ".join(str(w) for w in change.windows)
            return change, f"standard change {change_id} may run only in its windows ({windows}); now is outside"
        recent = self.ledger.runs_since(change_id, host.name, time.time() - change.rate_per)
        if recent >= change.rate_max:
            return change, (f"standard change {change_id} ran {recent} times on {host.name} in the last "
                            f"{change.rate_per / 60:g} min, its limit")
        return change, None

    def apply(self, change_id: str, host: Host, params: Mapping[str, Any], *, kb_entry: str | None = None,
              ticket_key: str | None = None, before: dict[str, Any] | None = None,
              recheck: Recheck | None = None) -> Application:
        """Gate, pre-check, act, verify, roll back on failure; journal the application. Never raises for a host."""
        params = dict(params)
        change, refusal = self.gate(change_id, host, params)
        app = Application(change_id, host.name, "refused", refusal or "", before=dict(before or {}))
        if change is not None and refusal is None:
            self._run(change, host, params, app, recheck, f"line1:{kb_entry or '-'}/{change_id}")
        return self._record(app, params, kb_entry, ticket_key)

    def _step(self, change: Change, kind: str, host: Host, params: dict[str, Any], actor: str) -> StepRecord:
        """One command of the change on the host, through the check use case (so the journal has the command)."""
        req = check.CheckRequest(change.steps[kind], [host], params, allow_changes=kind in ("action", "rollback"),
                                 actor=actor, job=f"change:{change.id}")
        report = check.run(req, self.backend, [check.JournalObserver(open_journal(self.data_dir), strict=False)])
        if not report.results:
            return StepRecord(kind, "error", reason="; ".join(s["reason"] for s in report.skipped) or "not run")
        res = report.results[0]
        if res.steps:
            rec = res.steps[0]
            if res.error and rec.status == "ok":
                rec.status, rec.reason = "error", res.error
            return rec
        return StepRecord(kind, "error", reason=res.error or f"{res.status}: nothing ran")

    def _run(self, change: Change, host: Host, params: dict[str, Any], app: Application,
             recheck: Recheck | None, actor: str) -> None:
        pre = self._step(change, "precheck", host, params, actor)
        app.before["precheck"] = _evidence(pre)
        if pre.status != "ok":
            app.result = "precheck_failed"
            app.reason = (f"the pre-check found nothing for standard change {change.id} to do on {host.name} "
                          f"({pre.reason or pre.status}); nothing was changed")
            return
        act = self._step(change, "action", host, params, actor)
        app.after["action"] = _evidence(act)
        if act.status != "ok":
            app.result, app.reason = "action_failed", f"the action failed on {host.name}: {act.reason or act.status}"
            self._rollback(change, host, params, app, actor)
            return
        ver = self._step(change, "verify", host, params, actor)
        app.after["verify"] = _evidence(ver)
        ok = ver.status == "ok"
        why = "" if ok else f"the verifying check failed ({ver.reason or ver.status})"
        if ok and recheck is not None:
            gone, evidence = recheck()
            app.after["recheck"] = evidence
            if not gone:
                ok, why = False, "the diagnosis run again still finds the problem"
        if ok:
            app.result, app.reason = "verified", f"standard change {change.id} applied on {host.name} and verified"
            return
        app.result, app.reason = "verify_failed", why
        self._rollback(change, host, params, app, actor)

    def _rollback(self, change: Change, host: Host, params: dict[str, Any], app: Application, actor: str) -> None:
        if "rollback" not in change.steps:
            app.reason += "; the change has no rollback (not reversible)"
            return
        rb = self._step(change, "rollback", host, params, actor)
        app.after["rollback"] = _evidence(rb)
        app.result = "rolled_back" if rb.status == "ok" else app.result
        app.reason += "; rolled back" if rb.status == "ok" else f"; the rollback failed too ({rb.reason or rb.status})"

    def _record(self, app: Application, params: dict[str, Any], kb_entry: str | None,
                ticket_key: str | None) -> Application:
        app.id = self.ledger.applied(ticket_key, kb_entry, app.change_id, app.host, params, app.result, app.reason,
                                     app.before, app.after)
        action = "change.refused" if app.refused else "change.applied"
        try:
            open_journal(self.data_dir).append(
                f"line1:{kb_entry or '-'}/{app.change_id}", action, app.host, app.result,
                {"application": app.id, "ticket": ticket_key, "params": params, "reason": app.reason},
            )
        except Exception:  # the ledger holds the full record; a journal that cannot be written is logged loudly
            log.exception("line1: could not journal standard change application %s", app.id)
        log.info("line1: %s %s on %s: %s (%s)", app.change_id, action, app.host, app.result, app.reason)
        return app
