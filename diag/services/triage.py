"""Line-1 triage of a ticket filed by a person: the one use case every intake (Redmine, RT, IMAP) calls.

``Triage.handle(ticket)``: register it once; refuse hostile or oversized text (line 2, nothing runs); find the
symptom (KB signatures) and the subject (inventory host); run the KB entry's diagnosis playbook; post one note in
plain language with the technical evidence below and attached, setting typical/atypical, the line and the SLA;
for a typical ticket whose entry names a standard change, apply it (:mod:`diag.services.standard_change`),
verify by running the diagnosis again, and resolve the ticket with the KB's standard answer; anything else goes
to line 2 with the context. ``Triage.follow_up(desk)`` reopens a resolved ticket when its requester replies.
The diagnosis runs through the "run a check" use case (:func:`diag.services.check.run`), journaled as ``line1``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from diag.errors import ConfigError, DiagError
from diag.exporters.tickets.base import TicketError
from diag.incidents.knowledge import Entry, Facts, KnowledgeBase
from diag.incidents.settings import DEFAULT_SLA
from diag.inventory import Host, Inventory
from diag.journal import open_journal
from diag.line1 import note as notes
from diag.line1 import subject as subj
from diag.line1.ledger import Ledger
from diag.line1.model import HumanTicket, Reply
from diag.model import UNCHECKED, Finding, RunReport
from diag.remote import playbook as pbmod
from diag.services import check
from diag.services.backends import CheckBackend, LocalBackend
from diag.services.standard_change import Application, StandardChanges

log = logging.getLogger(__name__)
ACTOR = "line1"


class Desk(Protocol):
    """What an intake offers to triage (diag/line1/intake/*.py)."""

    name: str

    def poll(self, seen: Callable[[str], bool]) -> list[HumanTicket]:
        """Open tickets filed by people; ``seen(id)`` says which triage handled already (the desk skips them
        before any costly read)."""
        ...

    def respond(self, ticket_id: str, note: notes.Note) -> None:
        """Add the note and set classification, line, SLA and status on the ticket."""
        ...

    def replies(self, ticket_id: str, since: float) -> list[Reply]:
        """Messages added to the ticket after ``since``, saying whether the requester wrote them."""
        ...


@dataclass(slots=True)
class Outcome:
    """What triage did with one ticket (for logs, tests and the CLI)."""

    key: str
    state: str  # resolved | escalated | open | refused | skipped
    classification: str = "atypical"
    line: str = "L2"
    kb_entry: str | None = None
    hosts: list[str] = field(default_factory=list)
    reason: str = ""
    application: Application | None = None


def best_entry(kb: KnowledgeBase, text: str) -> tuple[Entry | None, list[str]]:
    """The KB entry whose signatures match the ticket best (most signatures; verified first), and what matched."""
    best: tuple[int, bool, str] | None = None
    pick: tuple[Entry | None, list[str]] = (None, [])
    for e in kb.entries:
        if e.intake is None:
            continue
        hits = e.intake.matched(text)
        if not hits:
            continue
        rank = (len(hits), e.verified, e.id)
        if best is None or (rank[0], rank[1]) > (best[0], best[1]):
            best, pick = rank, (e, hits)
    return pick


class Triage:
    """Triage and close the loop for the tickets of any number of desks."""

    def __init__(self, inventory: Inventory, kb: KnowledgeBase, changes: StandardChanges, ledger: Ledger,
                 backend: CheckBackend, data_dir: Path, *, fallback_playbook: str | None = None, max_hosts: int = 5,
                 host_field: str = "host", find_playbook: Callable[[str], Path] = pbmod.find) -> None:
        self.inventory = inventory
        self.kb = kb
        self.changes = changes
        self.ledger = ledger
        self.backend = backend
        self.data_dir = data_dir
        self.fallback_playbook = fallback_playbook
        self.max_hosts = max_hosts
        self.host_field = host_field
        self.find_playbook = find_playbook

    # ---- the loop
    def poll(self, desk: Desk) -> list[Outcome]:
        """Triage every new ticket of ``desk``, then follow up on the ones it resolved."""
        out: list[Outcome] = []
        try:
            tickets = desk.poll(lambda tid: self.ledger.seen(f"{desk.name}:{tid}"))
        except TicketError as e:
            log.warning("line1: %s: cannot read new tickets: %s", desk.name, e)
            return out
        except Exception as e:  # a desk answering something unexpected: one line; the next poll tries again
            log.error("line1: %s: reading new tickets failed: %s", desk.name, _one_line(e))
            log.debug("line1: %s: poll failed", desk.name, exc_info=True)
            return out
        for t in tickets:
            if not self.ledger.seen(t.key):  # the desk lists open tickets; the ledger knows which were handled
                out.append(self.handle(desk, t))
        try:
            self.follow_up(desk)
        except Exception as e:
            log.error("line1: %s: following up replies failed: %s", desk.name, _one_line(e))
            log.debug("line1: %s: follow-up failed", desk.name, exc_info=True)
        return out

    def handle(self, desk: Desk, t: HumanTicket) -> Outcome:
        if not self.ledger.register(t.key, t.desk, t.id, t.subject, t.requester, t.filed_at):
            return Outcome(t.key, "skipped", reason="seen before")
        journal = open_journal(self.data_dir)
        journal.append(ACTOR, "ticket.received", t.key, "", {"subject": t.subject[:200], "desk": t.desk})
        try:
            outcome = self._triage(desk, t)
        except TicketError as e:
            row = self.ledger.ticket(t.key) or {}
            log.warning("line1: %s: %s", t.key, e)
            if not row.get("first_response_at"):  # nothing reached the person yet: try again on a later poll
                self._forget(t.key)
                return Outcome(t.key, "skipped", reason=str(e))
            # the first answer went out, a later one did not: the ticket stays where it is, for people to see
            self.ledger.update(t.key, reason=f"a later answer could not be posted: {e}")
            outcome = Outcome(t.key, str(row.get("state") or "open"), str(row.get("classification") or "atypical"),
                              str(row.get("line") or "L2"), row.get("kb_entry"), reason=str(e))
        except Exception as e:  # a configuration problem (DiagError) or a bug: the person still gets an answer
            reason = str(e) if isinstance(e, DiagError) else f"internal error ({type(e).__name__})"
            log.error("line1: %s: automation stopped: %s", t.key, _one_line(e))
            log.debug("line1: %s: triage failed", t.key, exc_info=True)
            outcome = self._stopped(desk, t, reason)
        journal.append(ACTOR, "ticket.triaged", t.key, outcome.state,
                       {"classification": outcome.classification, "line": outcome.line, "kb_entry": outcome.kb_entry,
                        "hosts": outcome.hosts, "reason": outcome.reason[:300],
                        "application": outcome.application.id if outcome.application else None})
        return outcome

    def _forget(self, key: str) -> None:
        self.ledger.forget(key)

    def _stopped(self, desk: Desk, t: HumanTicket, reason: str) -> Outcome:
        """Automation could not finish: a plain note, line 2, and the reason for the support team (no traceback)."""
        lang = notes.language(t.subject + " " + t.text)
        try:
            return self._escalate(desk, t, lang, [notes.say(lang, "stopped")], [f"- automation stopped: {reason}"],
                                  "escalated", reason)
        except TicketError as e:
            log.warning("line1: %s: %s", t.key, e)
            self.ledger.update(t.key, state="escalated", classification="atypical", line="L2", reason=reason)
            return Outcome(t.key, "escalated", reason=reason)

    # ---- triage proper
    def _triage(self, desk: Desk, t: HumanTicket) -> Outcome:
        lang = notes.language(t.subject + " " + t.text)
        if t.refused:
            return self._escalate(desk, t, lang, [notes.say(lang, "refused", reason=t.refused)],
                                  [f"- refused: {t.refused}"], "refused", t.refused)
        entry, hits = best_entry(self.kb, t.subject + "\n" + t.text)
        found = subj.find(self.inventory, t.subject, t.text, t.requester, t.fields, data_dir=self.data_dir,
                          field_name=self.host_field)
        if found is None:
            lines = [f"- symptom: {entry.id if entry else 'no KB entry matched'}", "- subject: no host found"]
            return self._escalate(desk, t, lang, [notes.say(lang, "no_host")], lines, "escalated",
                                  "no inventory host found in the ticket", entry)
        hosts = found.hosts[: self.max_hosts]
        if entry is None or entry.intake is None:
            paragraphs = [notes.say(lang, "unknown")]
            details = ["- symptom: no KB entry's signature matched", f"- subject: {found.how}"]
            evidence: dict[str, Any] = {"subject": found.how}
            if self.fallback_playbook:
                report = self._run(self.fallback_playbook, hosts, {})
                paragraphs.insert(0, notes.say(lang, "checked", what=_what(self.fallback_playbook, hosts)))
                details += _report_lines(report)
                details += _hypotheses(self.kb, [f for r in report.results for f in r.findings])
                evidence["diagnosis"] = report.to_dict()
            return self._escalate(desk, t, lang, paragraphs, details, "escalated", "unknown symptom", None,
                                  hosts, evidence)
        intake = entry.intake
        report = self._run(intake.playbook, hosts, intake.vars)
        findings = [f for r in report.results for f in r.findings]
        confirmed = [f for f in findings if entry.confirmed_by(f)]
        typical = bool(confirmed) and entry.verified and entry.typical
        details = [f"- symptom: KB entry {entry.id} ({entry.title}); signatures matched: {', '.join(hits)}",
                   f"- subject: {found.how}", *_report_lines(report)]
        evidence = {"kb_entry": entry.id, "signatures": hits, "subject": found.how, "diagnosis": report.to_dict()}
        checked = notes.say(lang, "checked", what=_what(intake.playbook, hosts))
        plain = [checked, _found(lang, report, findings, hosts)]
        if not typical:
            details += _hypotheses(self.kb, findings)
            return self._escalate(desk, t, lang, plain, details, "escalated",
                                  "diagnosis did not confirm a typical problem", entry, hosts, evidence)
        # Typical: first answer now (the first response), then the standard change and the resolution.
        priority = entry.priority
        due = t.filed_at + (entry.sla or DEFAULT_SLA.get(priority, DEFAULT_SLA["normal"]))[0]
        will_fix = intake.change is not None
        details.insert(0, f"- typical, line {entry.line}, priority {priority}, respond by {_iso(due)}")
        plain.append(notes.say(lang, "next_l1" if will_fix else "next_l1_manual"))
        if not will_fix and entry.instructions:
            details.append("- standard instructions:\n" + entry.instructions)
        details += _hypotheses(self.kb, confirmed)
        first = notes.Note(notes.compose(lang, plain, details), "typical", entry.line, priority, due, entry.id,
                           "open", attachments=[notes.evidence_file(f"diagnosis-{_safe(t.id)}.json", evidence)])
        desk.respond(t.id, first)
        self.ledger.responded(t.key)
        self.ledger.update(t.key, state="open", kb_entry=entry.id, classification="typical", line=entry.line,
                           host=",".join(h.name for h in hosts), sla_due=due)
        if not will_fix:
            return Outcome(t.key, "open", "typical", entry.line, entry.id, [h.name for h in hosts])
        return self._standard_change(desk, t, lang, entry, confirmed, report)

    def _standard_change(self, desk: Desk, t: HumanTicket, lang: str, entry: Entry, confirmed: list[Finding],
                         report: RunReport) -> Outcome:
        intake = entry.intake
        assert intake is not None and intake.change is not None
        host = self.inventory.hosts[confirmed[0].host]
        before = {"diagnosis": [f.to_dict() for f in confirmed]}

        def recheck() -> tuple[bool, list[dict[str, Any]]]:
            again = self._run(intake.playbook, [host], intake.vars)
            still = [f for r in again.results for f in r.findings if entry.confirmed_by(f)]
            unchecked = [r for r in again.results if r.status in UNCHECKED]
            return (not still and not unchecked), [r.to_dict() for r in again.results]

        app = self.changes.apply(intake.change, host, intake.params, kb_entry=entry.id, ticket_key=t.key,
                                 before=before, recheck=recheck)
        details = [f"- standard change {app.change_id} on {app.host}: {app.result}: {app.reason}",
                   f"- application #{app.id} (evidence before and after in the attachment)"]
        files = [notes.evidence_file(f"change-{app.id}.json", {"application": app.id, "change": app.change_id,
                                                                "host": app.host, "result": app.result,
                                                                "reason": app.reason, "before": app.before,
                                                                "after": app.after})]
        if app.verified:
            text = notes.compose(lang, [notes.say(lang, "resolved"), intake.answer.replace("{host}", host.name),
                                        notes.say(lang, "verified", host=host.name), notes.say(lang, "reply")],
                                 details)
            desk.respond(t.id, notes.Note(text, "typical", entry.line, entry.priority, None, entry.id, "resolved",
                                          attachments=files))
            self.ledger.update(t.key, state="resolved", resolved_at=time.time(), resolved_by_line1=1,
                               reason=app.reason)
            return Outcome(t.key, "resolved", "typical", entry.line, entry.id, [host.name], app.reason, app)
        key = "change_refused" if app.refused else "failed"
        due = t.filed_at + DEFAULT_SLA[entry.priority][0]
        text = notes.compose(lang, [notes.say(lang, key, reason=app.reason),
                                    notes.say(lang, "next_l2", due=_iso(due))], details)
        desk.respond(t.id, notes.Note(text, "typical", "L2", entry.priority, due, entry.id, "escalated",
                                      attachments=files))
        self.ledger.update(t.key, state="escalated", line="L2", reason=app.reason)
        return Outcome(t.key, "escalated", "typical", "L2", entry.id, [host.name], app.reason, app)

    def _escalate(self, desk: Desk, t: HumanTicket, lang: str, plain: list[str], details: list[str], state: str,
                  reason: str, entry: Entry | None = None, hosts: Sequence[Host] = (),
                  evidence: dict[str, Any] | None = None) -> Outcome:
        priority = entry.priority if entry else "normal"
        due = t.filed_at + DEFAULT_SLA[priority][0]
        details = [f"- atypical, line L2, priority {priority}, respond by {_iso(due)}", *details]
        text = notes.compose(lang, [*plain, notes.say(lang, "next_l2", due=_iso(due))], details)
        files = [notes.evidence_file(f"diagnosis-{_safe(t.id)}.json", evidence)] if evidence else []
        desk.respond(t.id, notes.Note(text, "atypical", "L2", priority, due, entry.id if entry else None,
                                      "escalated", attachments=files))
        self.ledger.responded(t.key)
        self.ledger.update(t.key, state=state, classification="atypical", line="L2",
                           kb_entry=entry.id if entry else None, host=",".join(h.name for h in hosts) or None,
                           sla_due=due, reason=reason)
        return Outcome(t.key, state, "atypical", "L2", entry.id if entry else None, [h.name for h in hosts], reason)

    def _run(self, playbook: str, hosts: Sequence[Host], variables: dict[str, Any]) -> RunReport:
        try:
            pb = pbmod.load(self.find_playbook(playbook))
        except ConfigError as e:
            raise ConfigError(f"line1: diagnosis playbook {playbook!r}: {'; '.join(e.problems)}") from None
        req = check.CheckRequest(pb, list(hosts), variables, actor=ACTOR)
        return check.run(req, self.backend, [check.JournalObserver(open_journal(self.data_dir), strict=False)])

    # ---- closing the loop
    def follow_up(self, desk: Desk) -> list[str]:
        """Reopen resolved tickets of ``desk`` whose requester replied; return their keys."""
        reopened = []
        for row in self.ledger.tickets(state="resolved", desk=desk.name):
            try:
                replies = desk.replies(row["ticket_id"], row["resolved_at"] or 0.0)
            except TicketError as e:
                log.warning("line1: %s: cannot read replies: %s", row["key"], e)
                continue
            if not any(r.by_requester for r in replies):
                continue
            lang = notes.language(" ".join(r.text for r in replies) + " " + row["subject"])
            text = notes.compose(lang, [notes.say(lang, "reopened")], [f"- the requester replied after "
                                                                        f"{row['kb_entry']} was applied"])
            try:
                desk.respond(row["ticket_id"], notes.Note(text, "atypical", "L2", "normal", None, row["kb_entry"],
                                                          "reopened"))
            except TicketError as e:
                log.warning("line1: %s: cannot reopen: %s", row["key"], e)
                continue
            self.ledger.update(row["key"], state="reopened", reopened=1, line="L2")
            open_journal(self.data_dir).append(ACTOR, "ticket.reopened", row["key"], "reopened", {})
            reopened.append(row["key"])
        return reopened


def _one_line(e: BaseException) -> str:
    from diag.secrets import mask

    return mask(" ".join(f"{type(e).__name__}: {e}".split())[:300])


def _safe(ticket_id: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in ticket_id)[:40]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _what(playbook: str, hosts: Sequence[Host]) -> str:
    return f"{', '.join(h.name for h in hosts)} ({playbook})"


def _found(lang: str, report: RunReport, findings: list[Finding], hosts: Sequence[Host]) -> str:
    down = [r for r in report.results if r.status in UNCHECKED]
    if down:
        return " ".join(notes.say(lang, "unreachable", host=r.host, status=r.status) for r in down)
    if not findings:
        return notes.say(lang, "nothing", host=", ".join(h.name for h in hosts))
    worst = sorted(findings, key=lambda f: {"critical": 0, "warning": 1}.get(f.severity, 2))[0]
    return notes.say(lang, "found", found=f"{worst.host}: {worst.summary}")


def _report_lines(report: RunReport) -> list[str]:
    out = [f"- {report.playbook} does not apply to {s['host']}: {s['reason']}" for s in report.skipped]
    for r in report.results:
        out.append(f"- {report.playbook} on {r.host}: {r.status}" + (f" ({r.error})" if r.error else ""))
    out += notes.finding_lines([f for r in report.results for f in r.findings])
    return out


def _hypotheses(kb: KnowledgeBase, findings: Sequence[Finding]) -> list[str]:
    if not findings:
        return []
    worst = sorted(findings, key=lambda f: {"critical": 0, "warning": 1}.get(f.severity, 2))[0]
    c = kb.classify(Facts.of(worst), providers=[])
    return ["- hypotheses, ranked:"] + [f"  {i}. {h.title} ({h.why})" for i, h in enumerate(c.hypotheses[:5], 1)]


@dataclass(slots=True)
class Line1:
    """Everything the watcher needs, built from ``agent.line1``: triage, its desks, and the SSH pool to close."""

    triage: Triage
    desks: list[Desk]
    backend: LocalBackend
    interval: float

    def poll_once(self) -> list[Outcome]:
        out: list[Outcome] = []
        for desk in self.desks:
            out.extend(self.triage.poll(desk))
        return out

    def close(self) -> None:
        self.backend.close()
        self.triage.ledger.close()


def from_settings(settings: Any, inventory: Inventory, data_dir: Path) -> Line1:
    """Build the line-1 watcher from validated settings (:mod:`diag.line1.settings`)."""
    from diag.line1.catalogue import Catalogue
    from diag.line1.intake import build as build_desk
    from diag.services.backends import ssh_pool

    kb = KnowledgeBase.load(settings.knowledge, shipped=settings.shipped_knowledge)
    catalogue = Catalogue.load(settings.changes, shipped=settings.shipped_changes)
    problems = []
    for e in kb.entries:
        if e.intake and e.intake.change and catalogue.get(e.intake.change) is None:
            problems.append(f"{e.file}:1: KB entry {e.id}: standard change {e.intake.change!r} is not in the catalogue")
    if problems:
        raise ConfigError(problems)
    backend = LocalBackend.over(ssh_pool(data_dir, inventory.hosts, settings.known_hosts or None),
                                inventory.hosts.values())
    ledger = Ledger(data_dir)
    changes = StandardChanges(catalogue, ledger, backend, data_dir)
    triage = Triage(inventory, kb, changes, ledger, backend, data_dir, fallback_playbook=settings.fallback_playbook,
                    max_hosts=settings.max_hosts, host_field=settings.host_field)
    desks = [build_desk(name, cfg) for name, cfg in settings.desks.items()]
    for desk in desks:
        if hasattr(desk, "ledger_row"):  # a desk that keeps tickets in memory (e-mail) asks the ledger after a restart
            desk.ledger_row = lambda tid, name=desk.name: ledger.ticket(f"{name}:{tid}")
    return Line1(triage, desks, backend, settings.interval)
