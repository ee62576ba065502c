"""The API's view of the incident engine (diag.incidents): list, show, acknowledge, assign, note, resolve; the KB.

Everything goes through the engine's own calls where it has them (``acknowledge``, ``resolve`` with a
verifying re-check, ``observe_report`` for check results); assignment and notes are incident events plus a
ticket note in the same transaction, as ``acknowledge`` does it. Incident events (transitions, ticket
deliveries) reach the event journal through :mod:`diag.journal.incidents`, which the agent attaches.

Knowledge base: entries are read with :class:`diag.incidents.knowledge.KnowledgeBase`; an entry proposed from
a resolved incident is a KB file of its own under ``DATA/knowledge-proposed/`` (``verified: false``), which a
lead verifies (``verified: true, verified_by``). Add that directory to ``agent.incidents.knowledge`` so that
the engine reads the entries; only verified ones drive classification.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from diag.errors import ConfigError, DiagError
from diag.journal import Journal

if TYPE_CHECKING:
    from diag.incidents.service import IncidentService
    from diag.incidents.store import Incident
    from diag.inventory import Host
    from diag.model import Evidence, Finding, RunReport

log = logging.getLogger(__name__)

PROPOSED = "knowledge-proposed"
_SLUG = re.compile(r"[^a-z0-9]+")
_ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")


_OPEN = ("open", "clearing")
#: SLA time left below this share of the clock's window reads "breaching soon" (amber)
SOON_SHARE = 0.25
SOON_NO_WINDOW_S = 900.0


def sla_level(left: float | None, total: float | None) -> str | None:
    """``ok``, ``soon`` (amber: a quarter of the window or less left; 15 min without a known window) or
    ``breached`` (red). The console's script applies the same rule as the clock counts down."""
    if left is None:
        return None
    if left < 0:
        return "breached"
    return "soon" if left <= (SOON_SHARE * total if total else SOON_NO_WINDOW_S) else "ok"


class IncidentError(Exception):
    """A request the incident side refuses: ``status`` is the HTTP status (404, 409, 422)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class _Verdict:
    cleared: bool
    note: str
    evidence: list[Evidence] = field(default_factory=list)


class _ApiRecheck:
    """A person's "resolve" re-checked: the playbook that found it runs again; resumable after a restart."""

    def __init__(
        self, api: Incidents, playbook: str, host: Host, variables: dict[str, Any], fp: str, who: str, comment: str
    ) -> None:
        self.api, self.playbook, self.host, self.variables = api, playbook, host, variables
        self.fingerprint, self.who, self.comment = fp, who, comment
        self.resume_spec = {"who": who, "comment": comment}

    def __call__(self) -> _Verdict:
        findings = self.api.recheck(self.playbook, self.host, self.variables, actor=f"api:{self.who}")
        still = [f for f in findings if f.fingerprint == self.fingerprint]
        what = f"{self.playbook} on {self.host.name}"
        if still:
            return _Verdict(False, f"re-check by {self.who}: {what} still finds it: {still[0].summary}")
        return _Verdict(True, f"re-check by {self.who}: {what} no longer finds it. {self.comment}".strip())


class Incidents:
    def __init__(
        self,
        service: IncidentService,
        data: Path,
        hosts: dict[str, Host],
        journal: Journal,
        known_hosts: list[Path] | None,
        journal_feed: Any = None,
    ) -> None:
        self.service = service
        self.engine = service.engine
        self.store = service.store
        self.data = data
        self.hosts = hosts
        self.journal = journal
        self.known_hosts = known_hosts
        self.journal_feed = journal_feed
        # After a restart, the engine resumes re-checks from the scope (which names playbook, host and variables).
        self.engine.resumable_scope("playbook", self._scope_recheck)
        self.engine.resumable("api", self._resume_verifier)

    # ---- journal
    def sync(self) -> None:
        """Copy new incident events into the journal now (the agent's feed does it after every engine change)."""
        if self.journal_feed is not None:
            self.journal_feed.sync()

    # ---- reading
    def _sla(self, d: dict[str, Any], now: float) -> dict[str, Any]:
        due = d.get("resolve_due") if d.get("acked_at") else d.get("respond_due") or d.get("resolve_due")
        d["sla_clock"] = "resolve" if d.get("acked_at") else "respond"
        d["sla_left_s"] = round(due - now, 1) if isinstance(due, int | float) else None
        start = d.get("opened_at") or d.get("first_seen")
        total = due - start if isinstance(due, int | float) and isinstance(start, int | float) else None
        d["sla_total_s"] = round(total, 1) if total is not None and total > 0 else None
        d["sla_level"] = sla_level(d["sla_left_s"], d["sla_total_s"]) if d.get("state") in _OPEN else None
        return d

    def marker(self) -> tuple[int, int, int]:
        """Changes when any incident is opened, changed or gets an event (the console's live pages watch it)."""
        return self.store.change_marker()

    def incidents(
        self,
        states: Sequence[str] | None = None,
        severity: str | None = None,
        line: str | None = None,
        host: str | None = None,
        classification: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        from diag.incidents.store import OPEN_STATES

        now = time.time()
        out = []
        for inc in self.store.query(list(states) if states else list(OPEN_STATES), limit=5000):
            if severity and inc.severity != severity:
                continue
            if line and inc.line != line:
                continue
            if host and inc.host != host:
                continue
            if classification and inc.classification != classification:
                continue
            d = inc.to_dict()
            d.pop("evidence", None)  # the list stays small; show has it
            out.append(self._sla(d, now))
            if len(out) >= limit:
                break
        who = self.store.assignees([d["id"] for d in out])
        for d in out:
            d["assignee"] = who.get(d["id"])
        rank = {"critical": 0, "warning": 1, "info": 2}
        out.sort(key=lambda d: (rank.get(d["severity"], 3), d["sla_left_s"] if d["sla_left_s"] is not None else 1e18))
        return out

    def open_incidents(self) -> list[dict[str, Any]]:
        return self.incidents()

    def _must(self, incident_id: int) -> Any:
        inc = self.store.get(incident_id)
        if inc is None:
            raise IncidentError(404, f"no incident {incident_id}")
        return inc

    def _assignee(self, incident_id: int) -> str | None:
        return self.store.assignee(incident_id)

    def show(self, incident_id: int) -> dict[str, Any]:
        inc = self._must(incident_id)
        d = self._sla(inc.to_dict(), time.time())
        d["assignee"] = self._assignee(inc.id)
        d["events"] = [e.to_dict() for e in self.store.events(inc.id)]
        return d

    def host_of(self, incident_id: int) -> Host | None:
        return self.hosts.get(self._must(incident_id).host)

    # ---- changing
    def acknowledge(self, incident_id: int, who: str) -> dict[str, Any]:
        self._must(incident_id)
        self.engine.acknowledge(incident_id, who)
        return self.show(incident_id)

    def _event_and_note(self, incident_id: int, who: str, kind: str, text: str, note: str) -> dict[str, Any]:
        from diag.incidents import bundle

        inc = self._must(incident_id)
        now = time.time()
        with self.store.tx() as c:
            self.store.event(c, inc.id, who, kind, text, now)
            if inc.opened_at is not None and inc.ticket_key:
                self.store.enqueue(c, inc, "note", bundle.note_payload(note), now)
        self.sync()
        self.service.outbox.wake()
        return self.show(incident_id)

    def assign(self, incident_id: int, assignee: str, who: str) -> dict[str, Any]:
        return self._event_and_note(
            incident_id, who, "assigned", f"assigned to {assignee}", f"Assigned to {assignee} by {who}."
        )

    def note(self, incident_id: int, text: str, who: str) -> dict[str, Any]:
        return self._event_and_note(incident_id, who, "note", text, f"Note from {who}: {text}")

    def resolve(self, incident_id: int, who: str, comment: str) -> dict[str, Any]:
        """Resolve only through a verifying re-check: the playbook that found it runs again on the host."""
        inc = self._must(incident_id)
        if inc.state not in ("open", "clearing"):
            raise IncidentError(409, f"incident {incident_id} is {inc.state}, not open")
        verify = self._verifier(inc, who, comment)
        out = self.engine.resolve(f"api:{who}", inc.fingerprint, verify, asked=True)
        self.sync()
        d = self.show(incident_id)
        d["outcome"] = str(out)
        return d

    def _verifier(self, inc: Incident, who: str, comment: str) -> _ApiRecheck:
        """The re-check of a person's "resolve": the playbook that found it, on its host, with the same variables."""
        from diag.incidents.sources import parse_playbook_scope

        parsed = parse_playbook_scope(inc.scope or "")
        if parsed is None or parsed[1] not in self.hosts:
            raise IncidentError(
                409,
                f"incident {inc.id} came from {inc.scope or inc.source}; it resolves when that source re-checks it",
            )
        playbook, host, variables = parsed
        return _ApiRecheck(self, playbook, self.hosts[host], variables, inc.fingerprint, who, comment)

    def _resume_verifier(self, inc: Incident, spec: Any) -> _ApiRecheck | None:
        try:
            return self._verifier(inc, str(spec.get("who", "api")), str(spec.get("comment", "")))
        except IncidentError:
            return None

    def _scope_recheck(self, scope: str) -> Callable[[], Sequence[Finding]] | None:
        from diag.incidents.sources import parse_playbook_scope

        parsed = parse_playbook_scope(scope)
        if parsed is None or parsed[1] not in self.hosts:
            return None
        playbook, host, variables = parsed
        return lambda: self.recheck(playbook, self.hosts[host], variables)

    def recheck(
        self, playbook: str, host: Host, variables: dict[str, Any], actor: str = "api"
    ) -> Sequence[Finding]:
        """Run ``playbook`` on ``host`` again (its own SSH pool) and return what it finds now."""
        from diag.incidents.sources import NotChecked, recheck_findings
        from diag.remote import playbook as pbmod
        from diag.services import check as svc
        from diag.services.backends import LocalBackend, ssh_pool

        pb = pbmod.load(pbmod.find(playbook))
        req = svc.CheckRequest(pb, [host], variables, actor=actor, job="recheck")
        backend = LocalBackend.over(ssh_pool(self.data, self.hosts, self.known_hosts, 1), [host])
        try:  # the same use case and journal trail as `diag check`
            report = svc.run(req, backend, [svc.JournalObserver(self.journal)])
        finally:
            backend.close()
        if not report.results:  # the playbook does not apply to the host: nothing can be confirmed
            why = report.skipped[0]["reason"] if report.skipped else "the playbook did not run"
            raise NotChecked(f"{host.name}: {why}")
        return recheck_findings(report.results[0])

    def feed(self, report: RunReport, actor: str, variables: dict[str, Any]) -> None:
        """A check job's results go to the engine host by host (clearing works per playbook and host)."""
        from diag.incidents.sources import observe_report

        playbook = report.playbook
        observe_report(
            self.engine,
            report,
            recheck=lambda h: self.recheck(playbook, self.hosts[h], variables),
            source="api",
            variables=variables,
        )
        self.sync()

    # ---- reports (diag.reports: support-quality figures over the incident store)
    def report(self, days: float, role: str) -> dict[str, Any]:
        from diag.reports import data, figures

        end = time.time()
        opts = figures.Options(
            start=end - days * figures.DAY,
            end=end,
            role=role,
            groups={h.name: h.groups for h in self.hosts.values()},
            down_checks=frozenset(self.service.settings.down_checks),
        )
        return figures.compute(data.load(self.store, end), opts)

    # ---- knowledge base
    @property
    def proposed_dir(self) -> Path:
        return self.data / PROPOSED

    def kb(self) -> list[dict[str, Any]]:
        from diag.incidents.knowledge import KnowledgeBase

        dirs = list(self.service.settings.knowledge)
        if self.proposed_dir.is_dir() and self.proposed_dir.resolve() not in {d.resolve() for d in dirs}:
            dirs.append(self.proposed_dir)
        try:
            entries = KnowledgeBase.load(dirs).entries
        except ConfigError as err:
            raise IncidentError(422, "; ".join(err.problems[:3])) from None
        out: list[dict[str, Any]] = []
        for entry in entries:
            d = entry.summary()
            name, _, line = entry.file.rpartition(":")  # FILE:LINE
            path = Path(name if line.isdigit() else entry.file)
            d["proposed"] = path.parent.resolve() == self.proposed_dir.resolve()
            d["verified_by"] = self._verified_by(path, entry.id) if d["proposed"] else None
            out.append(d)
        return out

    def _verified_by(self, path: Path, entry_id: str) -> str | None:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for e in doc.get("entries", []):
            if e.get("id") == entry_id:
                by = e.get("verified_by")
                return str(by) if by else None
        return None

    def propose(
        self, incident_id: int, who: str, title: str, cause: str, instructions: str, typical: bool, entry_id: str
    ) -> dict[str, Any]:
        inc = self._must(incident_id)
        if inc.state != "resolved":
            raise IncidentError(409, f"incident {incident_id} is {inc.state}: propose KB entries from resolved ones")
        eid = entry_id or _SLUG.sub("-", f"{inc.check_id}-{incident_id}".lower()).strip("-")[:80]
        if not _ENTRY_ID.match(eid):
            raise IncidentError(422, f"entry id {eid!r}: lower-case letters, digits and -")
        if any(e["id"] == eid for e in self.kb()):
            raise IncidentError(409, f"a KB entry {eid!r} exists")
        entry = {
            "id": eid,
            "title": title or inc.summary or inc.check_id,
            "match": {"checks": [inc.check_id]},
            "cause": cause or str(inc.doc.get("cause") or "") or "to be written",
            "typical": typical,
            "line": "L1" if typical else inc.line,
            "priority": inc.priority,
            "instructions": instructions,
            "verified": False,
            "proposed_by": who,
            "from_incident": incident_id,
        }
        self.proposed_dir.mkdir(parents=True, exist_ok=True)
        path = self.proposed_dir / f"{eid}.yaml"
        self._check_entry(path, entry)
        self._write(path, entry)
        self.journal.append(who, "kb.proposed", f"kb:{eid}", "draft", {"incident": incident_id, "file": str(path)})
        return next(e for e in self.kb() if e["id"] == eid)

    def _check_entry(self, path: Path, entry: dict[str, Any]) -> None:
        """422 for an entry the knowledge base would refuse (a typical one without instructions), before it is
        written: once in the proposed directory, a bad entry made every later KB listing answer 422."""
        from diag import yamlsrc
        from diag.incidents.knowledge import parse

        meta = ("proposed_by", "from_incident")  # kept as comments by _write, not keys of an entry
        doc = yamlsrc.Doc(str(path), {"entries": [{k: v for k, v in entry.items() if k not in meta}]})
        parse(doc)
        if doc.problems:
            raise IncidentError(422, "; ".join(p.removeprefix(f"{path}:1: ") for p in doc.problems[:3]))

    def _write(self, path: Path, entry: dict[str, Any]) -> None:
        # the engine's KB format has no proposed_by/from_incident keys: keep them as a comment
        meta = {k: entry.pop(k) for k in ("proposed_by", "from_incident") if k in entry}
        head = "".join(f"# {k}: {v}\n" for k, v in meta.items())
        text = head + yaml.safe_dump({"entries": [entry]}, sort_keys=False, allow_unicode=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    def verify_entry(self, entry_id: str, who: str) -> dict[str, Any]:
        path = self.proposed_dir / f"{entry_id}.yaml"
        if not _ENTRY_ID.match(entry_id) or not path.is_file():
            known = any(e["id"] == entry_id for e in self.kb())
            raise IncidentError(
                409 if known else 404,
                f"KB entry {entry_id!r} is not a proposed one (edit its file to change it)"
                if known
                else f"no KB entry {entry_id!r}",
            )
        text = path.read_text(encoding="utf-8")
        head = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        doc = yaml.safe_load(text) or {}
        entry = doc["entries"][0]
        if entry.get("verified"):
            raise IncidentError(409, f"KB entry {entry_id!r} is already verified by {entry.get('verified_by')}")
        entry["verified"] = True
        entry["verified_by"] = who
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            head + yaml.safe_dump({"entries": [entry]}, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        tmp.replace(path)
        self.journal.append(who, "kb.verified", f"kb:{entry_id}", "verified", {"file": str(path)})
        return next(e for e in self.kb() if e["id"] == entry_id)


def adapter(
    service: Any,
    data: Path,
    hosts: dict[str, Host],
    journal: Journal,
    known_hosts: list[Path] | None,
    journal_feed: Any = None,
) -> Incidents | None:
    if service is None:
        return None
    try:
        return Incidents(service, data, hosts, journal, known_hosts, journal_feed)
    except DiagError:
        log.exception("the incident engine cannot be used by the API")
        return None
