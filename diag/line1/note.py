"""The notes line-1 automation writes on a person's ticket: plain, professional language first, details below.

A non-technical reader gets three short paragraphs (what was checked, what was found, what happens next) in the
language they wrote in (Russian when the ticket is mostly Cyrillic, else English). Below a separator come the
technical details for line 2 (classification, line, SLA, the KB entry, findings with their evidence summaries,
ranked hypotheses); the full evidence goes into a JSON attachment. Everything is masked of secrets and personal
data (:mod:`diag.incidents.masking`). No exception text or stack trace is ever put here: failures are described
in a sentence by the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from diag.exporters.tickets.base import Attachment
from diag.incidents.masking import Masker
from diag.model import Finding

_MASK = Masker()

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "hello": "Hello,",
        "received": "Your request has been received and registered.",
        "checked": "What we checked: {what}.",
        "found": "What we found: {found}",
        "nothing": "What we found: the checks found no fault on {host}.",
        "next_l1": "What happens next: this is a known problem with a standard solution; we are applying it now and "
                   "will confirm here.",
        "next_l1_manual": "What happens next: this is a known problem; the support team follows the standard "
                          "instructions and will update this request.",
        "next_l2": "What happens next: your request has been passed to a second-line engineer, together with "
                   "everything we found. Expected response by {due}.",
        "unknown": "We could not match your description to a problem we know how to solve automatically.",
        "no_host": "We could not tell from the request which computer or server it is about.",
        "stopped": "The automatic check of your request could not be completed.",
        "refused": "Your request could not be processed automatically: {reason}. Nothing was run because of it.",
        "resolved": "Your request has been resolved.",
        "verified": "We checked again after the fix: {host} is working normally.",
        "reply": "If the problem is still there, simply reply to this request and it will be reopened.",
        "failed": "The standard fix did not solve the problem ({reason}). Your request has been passed to a "
                  "second-line engineer with the details.",
        "change_refused": "The standard fix could not be applied now ({reason}). Your request has been passed to a "
                          "second-line engineer with the details.",
        "reopened": "Thank you for your reply. The request has been reopened and passed to a second-line engineer.",
        "unreachable": "{host} did not answer our checks ({status}).",
        "details": "Technical details (for the support team)",
    },
    "ru": {
        "hello": "Здравствуйте!",
        "received": "Ваше обращение получено и зарегистрировано.",
        "checked": "Что мы проверили: {what}.",
        "found": "Что обнаружено: {found}",
        "nothing": "Что обнаружено: проверки не нашли неисправностей на {host}.",
        "next_l1": "Что дальше: это известная проблема со стандартным решением; мы применяем его сейчас и "
                   "сообщим о результате здесь.",
        "next_l1_manual": "Что дальше: это известная проблема; специалисты поддержки выполнят стандартную "
                          "инструкцию и сообщат о результате.",
        "next_l2": "Что дальше: обращение передано инженеру второй линии вместе со всеми собранными данными. "
                   "Ожидаемый срок ответа: {due}.",
        "unknown": "Мы не смогли сопоставить описание с известной проблемой, которую можно решить автоматически.",
        "no_host": "Из обращения не удалось понять, о каком компьютере или сервере идёт речь.",
        "stopped": "Автоматическую проверку по обращению выполнить не удалось.",
        "refused": "Обращение не может быть обработано автоматически: {reason}. Ничего по нему не запускалось.",
        "resolved": "Ваше обращение решено.",
        "verified": "После исправления мы проверили ещё раз: {host} работает нормально.",
        "reply": "Если проблема осталась, просто ответьте на это обращение, и оно будет открыто снова.",
        "failed": "Стандартное исправление не помогло ({reason}). Обращение передано инженеру второй линии.",
        "change_refused": "Стандартное исправление сейчас применить нельзя ({reason}). Обращение передано "
                          "инженеру второй линии.",
        "reopened": "Спасибо за ответ. Обращение открыто снова и передано инженеру второй линии.",
        "unreachable": "{host} не ответил на проверки ({status}).",
        "details": "Технические подробности (для службы поддержки)",
    },
}

_CYR = re.compile(r"[А-Яа-яЁё]")
_LAT = re.compile(r"[A-Za-z]")


def language(text: str) -> str:
    """``ru`` when the text has more Cyrillic than Latin letters, else ``en``."""
    return "ru" if len(_CYR.findall(text)) > len(_LAT.findall(text)) else "en"


def say(lang: str, key: str, **kw: Any) -> str:
    return PHRASES.get(lang, PHRASES["en"])[key].format(**kw)


@dataclass(slots=True)
class Note:
    """What goes on the ticket: the text, files, and the fields the desk sets (classification, line, SLA)."""

    text: str
    classification: str = "atypical"
    line: str = "L2"
    priority: str = "normal"
    sla_due: float | None = None
    kb_entry: str | None = None
    state: str = "open"  # open | resolved | escalated | reopened
    public: bool = True  # the requester sees it (RT: correspond; Redmine: a note)
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def due_iso(self) -> str:
        return datetime.fromtimestamp(self.sla_due, UTC).strftime("%Y-%m-%d %H:%M UTC") if self.sla_due else ""


def compose(lang: str, paragraphs: Sequence[str], details: Sequence[str]) -> str:
    """Greeting, plain paragraphs, then the technical details under a separator; masked."""
    plain = "\n\n".join([say(lang, "hello"), *[p for p in paragraphs if p]])
    if not details:
        return _MASK.text(plain)
    return _MASK.text(plain + "\n\n---\n" + say(lang, "details") + ":\n\n" + "\n".join(details))


def finding_lines(findings: Sequence[Finding], limit: int = 10) -> list[str]:
    out = []
    for f in findings[:limit]:
        out.append(f"- [{f.severity}] {f.host}: {f.check}: {f.summary}")
        for ev in f.evidence[:1]:
            text = ev.text.strip().splitlines()[-5:]
            if ev.title:
                out.append(f"    $ {ev.title[:200]}")
            out.extend(f"    {line[:200]}" for line in text)
    if len(findings) > limit:
        out.append(f"- ... {len(findings) - limit} more in the attachment")
    return out


def evidence_file(name: str, doc: dict[str, Any]) -> Attachment:
    """The full evidence as a JSON attachment, masked."""
    body = json.dumps(_MASK.data(doc), indent=1, ensure_ascii=False, default=str)
    return Attachment(name, body.encode(), "application/json")
