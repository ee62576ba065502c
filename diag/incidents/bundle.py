"""The evidence bundle: what a ticket says about an incident, in plain professional language, and its attachment.

:func:`draft` builds the :class:`~diag.exporters.tickets.base.TicketDraft` for a new ticket: a short summary,
host, first and last seen, severity, classification, support line, SLA due times, the knowledge base's
instructions (typical) or ranked hypotheses (atypical), evidence excerpts, links (Prometheus graph, runbook),
and the full evidence as a JSON attachment. Everything passes through the :class:`~diag.incidents.masking.Masker`.
The text is CommonMark in which everything that came from outside (alert labels and annotations, host names,
command output) is literal text (:mod:`diag.exporters.tickets.text`): escaped inline, fenced so that it cannot
close its fence, with control and bidi characters removed or shown; plain-text backends take the escapes out.
Drafts and notes are stored in the outbox as JSON (:func:`to_payload`), so a delivery after a restart sends
exactly what was decided before it.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from diag.exporters.tickets import text as tx
from diag.exporters.tickets.base import Attachment, TicketDraft
from diag.incidents.masking import Masker
from diag.incidents.settings import Settings
from diag.incidents.store import Incident

EXCERPT_LINES = 25
EXCERPT_CHARS = 3000


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def subject(inc: Incident) -> str:
    text = tx.one_line(f"[{inc.severity}] {inc.host}: {inc.summary or inc.check_id}")
    return text if len(text) <= 200 else text[:197] + "..."


def links(inc: Incident, settings: Settings) -> dict[str, str]:
    out: dict[str, str] = {}
    if settings.prometheus_url:
        expr = f'diag_finding{{check="{inc.check_id}"}}'
        out["Prometheus graph"] = (
            settings.prometheus_url.rstrip("/")
            + "/graph?"
            + urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": "6h"})
        )
    kb = inc.doc.get("kb") or {}
    if kb.get("runbook"):
        out["Runbook"] = str(kb["runbook"])
    elif settings.runbook_url:
        fields = {"kb_id": kb.get("id") or inc.check_id, "check": inc.check_id, "host": inc.host}
        out["Runbook"] = settings.runbook_url.format_map({k: urllib.parse.quote(v) for k, v in fields.items()})
    return out


def _excerpt(text: str) -> str:
    lines = text.splitlines()
    cut = "\n".join(lines[:EXCERPT_LINES])[:EXCERPT_CHARS]
    if len(lines) > EXCERPT_LINES or len(text) > len(cut):
        cut += "\n[... the rest is in the attachment]"
    return cut


def describe(inc: Incident, settings: Settings, impact: Sequence[str] = ()) -> str:
    d = inc.doc
    kb = d.get("kb") or {}
    md = tx.md_inline
    what = md(f"{inc.check_id}" + (f" ({inc.subject})" if inc.subject else ""))
    host = md(inc.host)
    if inc.classification == "typical":
        klass = f"typical: knowledge base entry {kb.get('id')} ({kb.get('title')})"
    else:
        klass = (
            "atypical: no verified knowledge-base entry covers it"
            if not kb
            else (f"atypical: knowledge base entry {kb.get('id')} ({kb.get('title')}) needs line {inc.line}")
        )
    out = [
        f"diag registered this problem on **{host}**: {md(inc.summary)}.",
        "",
        f"It is {klass}, and is assigned to support line {inc.line} with priority {inc.priority}.",
        "",
        "| | |",
        "|---|---|",
        f"| Host | {host} |",
        f"| Check | {what} |",
        f"| Severity | {md(inc.severity)} |",
        f"| Category | {md(str(d.get('category') or '-'))} |",
        f"| First seen | {when(inc.first_seen)} |",
        f"| Last seen | {when(inc.last_seen)} |",
        f"| Occurrences | {inc.occurrences} |",
        f"| Classification | {inc.classification} |",
        f"| Support line | {inc.line} |",
        f"| Priority | {inc.priority} |",
        f"| Respond by | {when(inc.respond_due)} |",
        f"| Resolve by | {when(inc.resolve_due)} |",
        f"| Fingerprint | {inc.fingerprint} |",
        "",
    ]
    if d.get("cause"):
        out += [f"**Reported cause:** {md(str(d['cause']))}", ""]
    if inc.classification == "typical" and kb.get("instructions"):
        out += ["**Standard instructions (knowledge base):**", "", str(kb["instructions"]), ""]
        if kb.get("remediation"):
            cmd = f"diag check {inc.host} -p {kb['remediation']}"
            out += [f"Remediation playbook: {md(cmd)}", ""]
    hyps = d.get("hypotheses") or []
    if hyps:
        out += ["**Likely root causes, most likely first:**", ""]
        for i, h in enumerate(hyps[:5], 1):
            cause = f" {md(str(h['cause']))}" if h.get("cause") else ""
            out.append(f"{i}. **{md(str(h['title']))}** (score {h['score']:.2f}).{cause} Why: {md(str(h['why']))}.")
            for ev in (h.get("evidence") or [])[:1]:  # a provider's backing, e.g. the config archive's diff
                out += ["", *evidence_blocks([ev]), ""]
        out.append("")
    if impact:
        out += [
            f"**Impact:** {len(impact)} host(s) behind {inc.host} cannot be reached either, most likely because of "
            f"this failure (UNREACHABLE, not DOWN): {md(', '.join(sorted(impact)))}.",
            "",
        ]
    if d.get("suppressed_by"):
        out += [f"Opening was held back earlier: {md(str(d['suppressed_by']))}.", ""]
    evidence = d.get("evidence") or []
    if evidence:
        out += ["**Evidence:**", "", *evidence_blocks(evidence[:8]), ""]
    lk = links(inc, settings)
    if lk:
        out += ["**Links:**", ""] + [f"- {k}: <{tx.one_line(v).replace('>', '%3E')}>" for k, v in lk.items()] + [""]
    out.append(f"The full evidence is attached as {attachment_name(inc)}.")
    return "\n".join(out)


def attachment_name(inc: Incident) -> str:
    return f"evidence-{inc.ticket_key}.json"


def evidence_document(inc: Incident, settings: Settings, impact: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "incident": {**inc.to_dict(), "first_seen_iso": iso(inc.first_seen), "last_seen_iso": iso(inc.last_seen)},
        "impact": list(impact),
        "links": links(inc, settings),
    }


def draft(inc: Incident, settings: Settings, masker: Masker, impact: Sequence[str] = ()) -> TicketDraft:
    kb = inc.doc.get("kb") or {}
    doc = masker.data(evidence_document(inc, settings, impact))
    fields = {
        "check": inc.check_id,
        "category": str(inc.doc.get("category") or ""),
        "kb_id": str(kb.get("id") or ""),
        "first_seen": iso(inc.first_seen),
        "respond_due": iso(inc.respond_due),
        "resolve_due": iso(inc.resolve_due),
        "incident_id": str(inc.id),
    }
    return TicketDraft(
        fingerprint=inc.ticket_key,
        subject=masker.text(subject(inc)),
        description=masker.text(describe(inc, settings, impact)),
        host=tx.one_line(inc.host),
        severity=inc.severity,  # type: ignore[arg-type]
        priority=inc.priority,
        line=inc.line,
        classification=inc.classification,
        attachments=[
            Attachment(attachment_name(inc), json.dumps(doc, indent=2, sort_keys=True).encode(), "application/json")
        ],
        fields={k: tx.one_line(v) for k, v in fields.items() if v},
    )


def evidence_blocks(evidence: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines for evidence items: the title as literal text, the excerpt in a fence it cannot close."""
    lines: list[str] = []
    for ev in evidence:
        lines.append(f"- {tx.md_inline(str(ev.get('title', '')))}:")
        if ev.get("text"):
            lines += ["", tx.md_code(_excerpt(str(ev["text"]))), ""]
    return lines


def evidence_note(inc: Incident, masker: Masker, header: str) -> str:
    """A note (Markdown): the prose ``header`` as literal text, then the incident's newest evidence."""
    return markdown_note(masker, header, (inc.doc.get("evidence") or [])[:4])


def markdown_note(masker: Masker, prose: str, evidence: Sequence[dict[str, Any]] = ()) -> str:
    """Prose (literal text) and evidence blocks, as a note's Markdown; pass it with ``note_payload(markdown=True)``."""
    lines = [tx.md_text(prose)]
    if evidence:
        lines += ["", *evidence_blocks(evidence)]
    return masker.text("\n".join(lines).rstrip())


# ---- outbox payloads: JSON that survives a restart
def _att(a: Attachment) -> dict[str, str]:
    return {"filename": a.filename, "content_type": a.content_type, "content": base64.b64encode(a.content).decode()}


def attachments_of(payload: dict[str, Any]) -> list[Attachment]:
    return [
        Attachment(a["filename"], base64.b64decode(a["content"]), a["content_type"])
        for a in payload.get("attachments", [])
    ]


def to_payload(d: TicketDraft) -> dict[str, Any]:
    return {
        "fingerprint": d.fingerprint,
        "subject": d.subject,
        "description": d.description,
        "host": d.host,
        "severity": d.severity,
        "priority": d.priority,
        "line": d.line,
        "classification": d.classification,
        "fields": d.fields,
        "attachments": [_att(a) for a in d.attachments],
    }


def from_payload(p: dict[str, Any]) -> TicketDraft:
    return TicketDraft(
        fingerprint=p["fingerprint"],
        subject=p["subject"],
        description=p["description"],
        host=p["host"],
        severity=p["severity"],
        priority=p["priority"],
        line=p["line"],
        classification=p["classification"],
        attachments=attachments_of(p),
        fields=dict(p.get("fields", {})),
    )


def note_payload(text: str, attachments: Sequence[Attachment] = (), *, markdown: bool = False) -> dict[str, Any]:
    """A note for the outbox. ``text`` is prose and is made literal Markdown text, unless ``markdown`` says it was
    built with :func:`markdown_note` (escaped pieces and fenced evidence) already."""
    body = tx.clean(text) if markdown else tx.md_text(text)
    return {"text": body, "attachments": [_att(a) for a in attachments]}
