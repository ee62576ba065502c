"""The knowledge base: sorts typical from atypical problems, and ranks root-cause hypotheses for the rest.

Entries live in YAML files (``knowledge/*.yaml`` shipped, more directories from ``agent.incidents.knowledge``);
the format is in docs/knowledge-base.md. A finding whose every symptom matches a *verified* entry marked
``typical`` is typical: it goes to that entry's line (usually L1) with the entry's standard instructions.
Anything else is atypical and goes to line 2 with hypotheses: every entry that matched at least one symptom,
plus what registered hypothesis providers suggest (:data:`PROVIDERS`; e.g. "the device's configuration
changed ten minutes before"), ranked by score, each saying which symptoms matched and which did not.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError
from diag.incidents.durations import SlaSpec, parse_duration
from diag.model import Evidence, Finding
from diag.registry import Registry

log = logging.getLogger(__name__)

Line = Literal["L1", "L2", "L3"]
Priority = Literal["low", "normal", "high", "urgent"]
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class MatchSpec(msgspec.Struct, forbid_unknown_fields=True):
    checks: list[str] = []  # the finding's check id is one of these
    labels: dict[str, str] = {}  # each label's value matches this regex (whole value)
    evidence: list[str] = []  # each regex is found in the summary, cause or evidence text


class IntakeSpec(msgspec.Struct, forbid_unknown_fields=True):
    """How a ticket filed by a person is recognised and handled by line-1 automation (docs/line1.md)."""

    signatures: list[str]  # regexes over the ticket's subject and text (Russian and English wording)
    playbook: str  # the diagnosis playbook diag runs on the ticket's subject
    vars: dict[str, Any] = {}  # its variables: fixed here, never taken from the ticket text
    change: str | None = None  # a standard change (changes/*.yaml) applied when the diagnosis confirms the entry
    params: dict[str, Any] = {}  # the change's parameters (checked against its allowed values)
    answer: str = ""  # the standard answer the requester gets when the change verified


class EntrySpec(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    title: str
    match: MatchSpec
    cause: str
    typical: bool = False
    line: Line = "L2"
    priority: Priority = "normal"
    sla: SlaSpec | None = None
    instructions: str = ""
    remediation: str | None = None  # a playbook name that fixes or digs further
    runbook: str | None = None
    category: str | None = None
    verified: bool = False
    verified_by: str | None = None
    intake: IntakeSpec | None = None


class FileSpec(msgspec.Struct, forbid_unknown_fields=True):
    entries: list[dict[str, Any]]


@dataclass(slots=True)
class Symptom:
    kind: str  # check | label | evidence
    text: str  # how it reads in an explanation
    test: Callable[[Facts], bool]


@dataclass(slots=True)
class Intake:
    """An entry's line-1 intake: compiled signatures and what to run."""

    signatures: list[tuple[str, re.Pattern[str]]]
    playbook: str
    vars: dict[str, Any]
    change: str | None
    params: dict[str, Any]
    answer: str

    def matched(self, text: str) -> list[str]:
        """The signatures found in a ticket's text (as written in the entry)."""
        return [src for src, rx in self.signatures if rx.search(text)]


@dataclass(slots=True)
class Entry:
    id: str
    title: str
    cause: str
    typical: bool
    line: str
    priority: str
    sla: tuple[float, float] | None
    instructions: str
    remediation: str | None
    runbook: str | None
    category: str | None
    verified: bool
    symptoms: list[Symptom]
    file: str
    intake: Intake | None = None

    def confirmed_by(self, finding: Finding) -> bool:
        """Every symptom of the entry matches this finding (what makes a person's ticket typical)."""
        facts = Facts.of(finding)
        return bool(self.symptoms) and all(s.test(facts) for s in self.symptoms)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "cause": self.cause,
            "typical": self.typical,
            "line": self.line,
            "priority": self.priority,
            "verified": self.verified,
            "instructions": self.instructions,
            "remediation": self.remediation,
            "runbook": self.runbook,
            "file": self.file,
        }


@dataclass(slots=True)
class Facts:
    """What is known about a problem, in the form the matchers read."""

    check: str
    labels: dict[str, str]
    text: str  # summary, cause and evidence, joined
    host: str = ""
    subject: str = ""
    severity: str = "warning"
    first_seen: float = 0.0

    @classmethod
    def of(cls, f: Finding) -> Facts:
        parts = [f.summary, f.cause or ""]
        for ev in f.evidence:
            parts.extend((ev.title, ev.text))
        return cls(f.check, dict(f.labels), "\n".join(parts), f.host, f.subject, f.severity, f.observed_at)


@dataclass(slots=True)
class Hypothesis:
    """A candidate root cause, its score (0..1) and the reason it ranks where it does."""

    title: str
    score: float
    source: str  # "kb", "finding", or a provider's name
    cause: str = ""
    kb_id: str | None = None
    matched: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    why: str = ""
    instructions: str = ""
    #: What backs a provider's hypothesis (the config archive's diff); kept with it in the incident and ticket.
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "title": self.title,
            "score": round(self.score, 3),
            "source": self.source,
            "cause": self.cause,
            "kb_id": self.kb_id,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "why": self.why,
        }
        if self.evidence:
            d["evidence"] = [e.to_dict() for e in self.evidence]
        return d


@dataclass(slots=True)
class Classification:
    classification: str  # typical | atypical
    line: str
    priority: str | None  # None: derive from severity
    entry: Entry | None
    hypotheses: list[Hypothesis]
    sla: tuple[float, float] | None
    category: str | None


#: Hypothesis providers: ``fn(facts) -> [Hypothesis]``. diag.archive registers one that proposes a recent
#: configuration change of the host; a provider that raises is logged and skipped.
HypothesisProvider = Callable[[Facts], Sequence[Hypothesis]]
PROVIDERS: Registry[HypothesisProvider] = Registry("hypotheses")


def _compile(doc: yamlsrc.Doc, path: yamlsrc.PathKey, pattern: str, whole: bool = False) -> re.Pattern[str] | None:
    try:
        return re.compile(f"(?:{pattern})\\Z" if whole else pattern, re.IGNORECASE | re.MULTILINE)
    except re.error as e:
        doc.problem(path, f"bad regex {pattern!r}: {e}")
        return None


def _symptoms(doc: yamlsrc.Doc, path: yamlsrc.PathKey, m: MatchSpec) -> list[Symptom]:
    out: list[Symptom] = []
    if m.checks:
        out.append(Symptom("check", "check " + " or ".join(m.checks), _check_test(frozenset(m.checks))))
    for key, pattern in m.labels.items():
        rx = _compile(doc, (*path, "labels", key), pattern, whole=True)
        if rx is not None:
            out.append(Symptom("label", f"label {key}={pattern}", _label_test(key, rx)))
    for i, pattern in enumerate(m.evidence):
        rx = _compile(doc, (*path, "evidence", i), pattern)
        if rx is not None:
            out.append(Symptom("evidence", f"evidence /{pattern}/", _text_test(rx)))
    return out


def _check_test(checks: frozenset[str]) -> Callable[[Facts], bool]:
    return lambda f: f.check in checks


def _label_test(key: str, rx: re.Pattern[str]) -> Callable[[Facts], bool]:
    return lambda f: key in f.labels and bool(rx.match(f.labels[key]))


def _text_test(rx: re.Pattern[str]) -> Callable[[Facts], bool]:
    return lambda f: bool(rx.search(f.text))


def parse(doc: yamlsrc.Doc, seen: dict[str, tuple[yamlsrc.Doc, yamlsrc.PathKey]] | None = None) -> list[Entry]:
    """Entries of one loaded file; problems (``FILE:LINE: message``) go to ``doc.problems``.

    Line numbers are looked up only for problems: ``doc.where`` composes the file again with PyYAML (~1.5 MiB
    that the agent's RSS budget cannot spare for a valid knowledge base).
    """
    seen = {} if seen is None else seen
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        doc.problem((), "a knowledge file is a mapping with a list under 'entries'")
        return []
    if doc.check_type((), data, FileSpec) is None:
        return []
    out = []
    for i, raw in enumerate(data["entries"]):
        path: yamlsrc.PathKey = ("entries", i)
        spec = doc.check_type(path, raw, EntrySpec)
        if spec is None:
            continue
        if not _ID.match(spec.id):
            doc.problem((*path, "id"), f"id {spec.id!r} may hold only lower-case letters, digits and _.-")
        if spec.id in seen:
            first_doc, first_path = seen[spec.id]
            doc.problem((*path, "id"), f"duplicate id {spec.id!r} (first in {first_doc.where(first_path)})")
            continue
        seen[spec.id] = (doc, (*path, "id"))
        symptoms = _symptoms(doc, (*path, "match"), spec.match)
        if not (spec.match.checks or spec.match.labels or spec.match.evidence):
            doc.problem((*path, "match"), "match needs at least one of checks, labels, evidence")
        if spec.typical and not spec.instructions.strip():
            doc.problem((*path, "instructions"), "a typical entry needs instructions (what line 1 tells the user)")
        intake = _intake(doc, (*path, "intake"), spec) if spec.intake is not None else None
        sla = None
        if spec.sla is not None:
            try:
                sla = (parse_duration(spec.sla.respond), parse_duration(spec.sla.resolve))
            except ValueError as e:
                doc.problem((*path, "sla"), str(e))
        out.append(
            Entry(
                id=spec.id,
                title=spec.title,
                cause=spec.cause.strip(),
                typical=spec.typical,
                line=spec.line,
                priority=spec.priority,
                sla=sla,
                instructions=spec.instructions.strip(),
                remediation=spec.remediation,
                runbook=spec.runbook,
                category=spec.category,
                verified=spec.verified,
                symptoms=symptoms,
                file=doc.file,
                intake=intake,
            )
        )
    return out


def _intake(doc: yamlsrc.Doc, path: yamlsrc.PathKey, spec: EntrySpec) -> Intake | None:
    i = spec.intake
    assert i is not None
    sigs = []
    for n, pattern in enumerate(i.signatures):
        rx = _compile(doc, (*path, "signatures", n), pattern)
        if rx is not None:
            sigs.append((pattern, rx))
    if not i.signatures:
        doc.problem((*path, "signatures"), "intake needs at least one signature (words people use for it)")
    if i.change and not (spec.verified and spec.typical):
        # a standard change runs without a human: only a lead-verified, typical entry may ask for one
        doc.problem((*path, "change"), "only a verified, typical entry may apply a standard change")
    if i.change and not i.answer.strip():
        doc.problem((*path, "answer"), "an entry that applies a standard change needs the standard answer")
    return Intake(sigs, i.playbook, dict(i.vars), i.change, dict(i.params), i.answer.strip())


def shipped_dir() -> Path | None:
    """The shipped knowledge base: ``knowledge/`` next to the package, or ``<prefix>/share/diag/knowledge``."""
    for d in (
        Path(__file__).resolve().parent.parent.parent / "knowledge",
        Path(sys.prefix) / "share" / "diag" / "knowledge",
    ):
        if d.is_dir():
            return d
    return None


def files(dirs: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if d.is_file():
            out.append(d)
        elif d.is_dir():
            out.extend(sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")))
        else:
            raise ConfigError(f"{d}:1: no such knowledge file or directory")
    return out


class KnowledgeBase:
    """Loaded entries and the classifier over them."""

    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        self.entries = list(entries)

    @classmethod
    def load(cls, dirs: Iterable[Path] = (), shipped: bool = True) -> KnowledgeBase:
        """Every entry of the shipped KB and ``dirs``; ConfigError lists every ``FILE:LINE`` problem."""
        all_dirs = list(dirs)
        if shipped and (d := shipped_dir()) is not None:
            all_dirs.insert(0, d)
        problems: list[str] = []
        seen: dict[str, tuple[yamlsrc.Doc, yamlsrc.PathKey]] = {}
        entries: list[Entry] = []
        for f in files(all_dirs):
            try:
                doc = yamlsrc.load_file(f)
            except ConfigError as e:
                problems.extend(e.problems)
                continue
            entries.extend(parse(doc, seen))
            problems.extend(doc.problems)
        if problems:
            raise ConfigError(problems)
        return cls(entries)

    def get(self, entry_id: str) -> Entry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def classify(self, facts: Facts, providers: Iterable[HypothesisProvider] | None = None) -> Classification:
        scored: list[tuple[Entry, list[str], list[str]]] = []
        for e in self.entries:
            matched = [s.text for s in e.symptoms if s.test(facts)]
            if matched:
                scored.append((e, matched, [s.text for s in e.symptoms if s.text not in matched]))
        full = [(e, m) for e, m, u in scored if not u]
        # The most specific full match wins: more symptoms matched means the entry says more about this case.
        full.sort(key=lambda x: (not x[0].verified, -len(x[1]), x[0].id))
        hyps = [_hypothesis(e, m, u) for e, m, u in scored]
        for fn in providers if providers is not None else _providers():
            try:
                hyps.extend(fn(facts))
            except Exception:  # one broken provider must not stop an incident from being registered
                log.exception("hypothesis provider failed for %s on %s", facts.check, facts.host)
        hyps.sort(key=lambda h: (-h.score, h.title))
        typical = next(((e, m) for e, m in full if e.verified), None)
        if typical is not None and typical[0].typical:
            e = typical[0]
            return Classification("typical", e.line, e.priority, e, _ranked(hyps), e.sla, e.category)
        if typical is not None:  # known and verified, but not something line 1 handles alone
            e = typical[0]
            line = e.line if e.line != "L1" else "L2"
            return Classification("atypical", line, e.priority, e, _ranked(hyps), e.sla, e.category)
        if not hyps:
            hyps.append(
                Hypothesis(
                    f"{facts.check}: {facts.text.splitlines()[0] if facts.text else 'no detail'}",
                    0.1,
                    "finding",
                    cause="",
                    why="no knowledge-base entry matched any symptom; this is only what the check itself reported",
                )
            )
        return Classification("atypical", "L2", None, None, _ranked(hyps), None, None)


def _providers() -> list[HypothesisProvider]:
    return [PROVIDERS.get(n) for n in PROVIDERS.names()]


def _hypothesis(e: Entry, matched: list[str], unmatched: list[str]) -> Hypothesis:
    total = len(matched) + len(unmatched)
    # Unverified entries rank below verified ones with the same matches: a lead has not confirmed them yet.
    score = len(matched) / total * (1.0 if e.verified else 0.8)
    why = f"{len(matched)} of {total} symptoms matched ({'; '.join(matched)})"
    if unmatched:
        why += f"; not matched: {'; '.join(unmatched)}"
    if not e.verified:
        why += "; the entry is not verified yet, so it ranks lower"
    return Hypothesis(
        e.title, score, "kb", e.cause, e.id, matched, unmatched, why, e.instructions if e.verified else ""
    )


def _ranked(hyps: list[Hypothesis]) -> list[Hypothesis]:
    for i, h in enumerate(hyps, 1):
        if not h.why.startswith("rank "):
            h.why = f"rank {i}: {h.why}"
    return hyps
