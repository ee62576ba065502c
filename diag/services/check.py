"""The use case "run a check": a playbook on hosts now, written once for every front door.

``diag check`` (CLI), the API's check jobs, the Alertmanager receiver's diagnosis and its verifying re-check
all call :func:`run`. What differs between them -- where the trail goes, whether facts are kept, who sees
progress, whether findings become incidents -- is a list of :class:`Observer` objects, in the style of
nornir's ``Processor``: the runner calls them, they never change the run. Where the hosts are worked on is a
:class:`~diag.services.backends.CheckBackend` (this process over SSH, or Celery workers).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.model import HostResult, RunReport

if TYPE_CHECKING:
    from diag.inventory import Host
    from diag.journal import Journal
    from diag.remote.playbook import Playbook
    from diag.services.backends import CheckBackend

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CheckRequest:
    """What to run: a playbook with its variables on resolved hosts, on behalf of an actor."""

    playbook: Playbook
    hosts: list[Host]
    variables: Mapping[str, Any] = field(default_factory=dict)
    allow_changes: bool = False
    targets: list[str] = field(default_factory=list)  # as the caller named them (host or group names)
    actor: str = ""
    job: str = ""  # an API job id or ``alert:KEY``: ties journal records of one run together

    @property
    def target_names(self) -> list[str]:
        return self.targets or [h.name for h in self.hosts]


class Observer:
    """Sees a run happen; every hook is optional. Hooks run in the runner's threads, so they must be thread-safe.

    An observer whose hook fails is logged and the run goes on, unless it is ``required`` (a journal a person's
    command must leave): then the run's report is withheld and the error raised once every host is finished.
    """

    required = False

    def run_started(self, req: CheckRequest) -> None:
        """Before any host is contacted."""

    def host_started(self, req: CheckRequest, host: str) -> None:
        """A host is about to be worked on."""

    def host_done(self, req: CheckRequest, result: HostResult) -> None:
        """A host is finished (checked or not: see ``result.status``)."""

    def run_finished(self, req: CheckRequest, report: RunReport) -> None:
        """Every host is finished."""

    def run_failed(self, req: CheckRequest, error: BaseException) -> None:
        """The run itself broke (not a host: a host's failure is its result); the error is raised after this."""


class JournalObserver(Observer):
    """The trail in the event journal: check.started, each host's commands/findings/outcome, check.finished.

    A host's records are appended in one transaction (one fsync per host, not one per record). ``strict``
    (front doors a person waits on) lets a journal that cannot be written stop the run; a background receiver
    passes ``strict=False`` and logs the failure instead, so an alert is still diagnosed.
    """

    def __init__(self, journal: Journal, strict: bool = True) -> None:
        self.journal = journal
        self.strict = strict
        self.required = strict

    def _write(self, what: str, fn: Callable[[], object]) -> None:
        if self.strict:
            fn()
            return
        try:
            fn()
        except (OSError, sqlite3.Error) as e:
            log.error("event journal %s: cannot record %s: %s", self.journal.path, what, e)

    def run_started(self, req: CheckRequest) -> None:
        from diag.journal import checks

        self._write(
            "the start of a check",
            lambda: checks.started(
                self.journal, req.actor, req.playbook.name, req.target_names, req.allow_changes, req.job
            ),
        )

    def host_done(self, req: CheckRequest, result: HostResult) -> None:
        from diag.journal import checks

        self._write(
            f"the check of {result.host}",
            lambda: checks.host_done(self.journal, req.actor, req.playbook.name, result, req.job),
        )

    def run_finished(self, req: CheckRequest, report: RunReport) -> None:
        from diag.journal import checks

        self._write("the end of a check", lambda: checks.finished(self.journal, req.actor, report, req.job))

    def run_failed(self, req: CheckRequest, error: BaseException) -> None:
        details = {"job": req.job, "error": f"{type(error).__name__}: {error}"}
        targets = ",".join(h.name for h in req.hosts)
        self._write("a failed check", lambda: self.journal.append(req.actor, "check.failed", targets, "error", details))


class FactsObserver(Observer):
    """Keeps what a ``facts: true`` playbook parsed, per host, in the facts inventory of a data directory."""

    def __init__(self, data: Path) -> None:
        self.data = data

    def host_done(self, req: CheckRequest, result: HostResult) -> None:
        if req.playbook.facts and result.status in ("ok", "findings"):
            from diag.remote import facts

            facts.save(self.data, result.host, req.playbook.name, result.values())


class ProgressObserver(Observer):
    """Calls ``callback(event, host, result)`` with ``start`` / ``done``, as a terminal or an SSE stream wants."""

    def __init__(self, callback: Callable[[str, str, HostResult | None], None]) -> None:
        self.callback = callback

    def host_started(self, req: CheckRequest, host: str) -> None:
        self.callback("start", host, None)

    def host_done(self, req: CheckRequest, result: HostResult) -> None:
        self.callback("done", result.host, result)


class FindingsObserver(Observer):
    """Hands the finished report to a sink (the incident engine's ``observe_report``, or anything alike)."""

    def __init__(self, sink: Callable[[RunReport, str, dict[str, Any]], object]) -> None:
        self.sink = sink

    def run_finished(self, req: CheckRequest, report: RunReport) -> None:
        try:
            self.sink(report, req.actor, dict(req.variables))
        except Exception:  # the run is over and journaled; a broken sink must not turn it into a failure
            log.exception("check %s: handing findings to the incident engine failed", req.job or req.playbook.name)


def run(req: CheckRequest, backend: CheckBackend, observers: Sequence[Observer] = ()) -> RunReport:
    """Run the check on the backend, telling every observer as it goes; host failures are results, not errors."""
    for o in observers:
        o.run_started(req)
    failed: list[BaseException] = []  # a required observer's error, raised after the run (the runner ignores them)
    lock = threading.Lock()

    def progress(event: str, host: str, result: HostResult | None) -> None:
        for o in observers:
            try:
                if event == "start":
                    o.host_started(req, host)
                elif result is not None:
                    o.host_done(req, result)
            except Exception as e:
                if not o.required:
                    log.exception("check %s: observer %s failed on %s", req.job or req.playbook.name, o, host)
                    continue
                with lock:
                    failed.append(e)

    try:
        report = backend.run_check(req.hosts, req.playbook, req.variables, req.allow_changes, progress)
        if failed:
            raise failed[0]
    except BaseException as e:
        for o in observers:
            try:
                o.run_failed(req, e)
            except Exception:  # the original error is what the caller must see
                log.exception("check %s: observer %s failed recording the failure", req.job or req.playbook.name, o)
        raise
    for o in observers:
        o.run_finished(req, report)
    return report
