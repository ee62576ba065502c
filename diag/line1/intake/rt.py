"""The RT desk: new tickets people file in a queue are triaged; the answer is correspondence the requester gets.

Tickets diag opened itself carry the incident fingerprint (custom field or ``[diag:FP]`` subject tag) and are
skipped. The requester is the ticket's creator; a Correspond of theirs after diag resolved the ticket reopens it.
The answer is a correspondence (mailed to the requestors) with the evidence attached; classification, line, SLA
and KB entry go into the custom fields named in ``fields``, line 2 into its queue (``line_queues``). Options
extend the ticket backend's (docs/tickets.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from diag.exporters.tickets.options import parse
from diag.exporters.tickets.rt import Options as BackendOptions
from diag.exporters.tickets.rt import RTBackend, _attachments, _sql_string
from diag.line1 import text as ttext
from diag.line1.model import HumanTicket, Reply
from diag.line1.note import Note

log = logging.getLogger(__name__)
NAME = "rt"


class Options(BackendOptions, forbid_unknown_fields=True):
    host_field: str | None = None  # ticket custom field where people name the host or group
    #: classification | line | sla | kb -> ticket custom field name that receives it
    fields: dict[str, str] = msgspec.field(default_factory=dict)
    new_statuses: list[str] = msgspec.field(default_factory=lambda: ["new"])
    max_text: int = ttext.MAX_TEXT


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _cf(ticket: Mapping[str, Any], name: str | None) -> str:
    for cf in ticket.get("CustomFields") or ():
        if name and cf.get("name") == name:
            values = cf.get("values") or []
            return str(values[0]) if values else ""
    return ""


class RTDesk:
    """Reads and answers people's tickets in one RT queue."""

    name = NAME

    def __init__(self, options: Options) -> None:
        self.options = options
        self.backend = RTBackend(options)
        self.http = self.backend.http

    def _get(self, path: str, what: str, **params: Any) -> Any:
        return self.http.request("GET", path, what=what, ok=(200,), params=params or None).json()

    def poll(self, seen: Callable[[str], bool]) -> list[HumanTicket]:
        o = self.options
        statuses = " OR ".join(f"Status = {_sql_string(s)}" for s in o.new_statuses)
        query = f"Queue = {_sql_string(o.queue)} AND ({statuses})"
        body = self._get("/tickets", "list new tickets", query=query, orderby="id", order="ASC", per_page="100",
                         fields="Subject,Creator,Created,CustomFields")
        out = []
        for t in body.get("items", []):
            subject = str(t.get("Subject") or "")
            if (o.fingerprint_field and _cf(t, o.fingerprint_field)) or f"[{o.subject_tag}:" in subject:
                continue  # diag's own incident tickets
            if seen(str(t["id"])):
                continue
            raw, is_html = self._first_message(t["id"])
            subject, text, refused = ttext.prepare(subject, raw, is_html=is_html, limit=o.max_text)
            creator = t.get("Creator") or {}
            host = _cf(t, o.host_field)
            out.append(HumanTicket(NAME, str(t["id"]), subject, text, str(creator.get("id", "")), _ts(t["Created"]),
                                   f"{self.backend.url}/Ticket/Display.html?id={t['id']}",
                                   {"host": host} if host else {}, refused))
        return out

    def _first_message(self, ticket_id: int | str) -> tuple[str, bool]:
        """The text the requester wrote when filing (text/plain preferred, else HTML), and whether it is HTML."""
        hist = self._get(f"/ticket/{int(ticket_id)}/history", f"read history of #{ticket_id}", fields="Type",
                         orderby="id", order="ASC", per_page="5")
        txn = next((t for t in hist.get("items", []) if t.get("Type") == "Create"), None)
        if txn is None:
            return "", False
        return self._text(txn["id"])

    def _text(self, txn_id: int | str) -> tuple[str, bool]:
        parts = self._get(f"/transaction/{int(txn_id)}/attachments", "read a message", per_page="50",
                          fields="ContentType,Content,Filename").get("items", [])
        html = ""
        for p in parts:
            ctype = str(p.get("ContentType", ""))
            if p.get("Filename"):
                continue
            content = str(p.get("Content") or "")
            if ctype.startswith("text/plain") and content:
                return content, False
            if ctype.startswith("text/html") and content and not html:
                html = content
        return html, bool(html)

    def respond(self, ticket_id: str, note: Note) -> None:
        o = self.options
        fields = {name: value for key, value in (("classification", note.classification), ("line", note.line),
                                                 ("sla", note.due_iso), ("kb", note.kb_entry or ""))
                  if (name := o.fields.get(key))}
        update: dict[str, Any] = {}
        if note.priority in o.priorities:
            update["Priority"] = o.priorities[note.priority]
        if fields:
            update["CustomFields"] = fields
        queue = o.line_queues.get(note.line)
        if queue:
            update["Queue"] = queue
        if update:
            self.http.request("PUT", f"/ticket/{int(ticket_id)}", what=f"set fields of #{ticket_id}", ok=(200,),
                              json=update)
        body: dict[str, Any] = {"Content": note.text, "ContentType": "text/plain"}
        if note.attachments:
            body["Attachments"] = _attachments(note.attachments)
        status = {"resolved": o.resolved_status, "reopened": o.reopen_status}.get(note.state)
        if status:
            body["Status"] = status
        kind = "correspond" if note.public else "comment"
        self.http.request("POST", f"/ticket/{int(ticket_id)}/{kind}", what=f"answer ticket #{ticket_id}",
                          ok=(201,), json=body)

    def replies(self, ticket_id: str, since: float) -> list[Reply]:
        ticket = self._get(f"/ticket/{int(ticket_id)}", f"read ticket #{ticket_id}")
        requester = str((ticket.get("Creator") or {}).get("id", ""))
        hist = self._get(f"/ticket/{int(ticket_id)}/history", f"read history of #{ticket_id}",
                         fields="Type,Creator,Created", orderby="id", order="ASC", per_page="100")
        out = []
        for t in hist.get("items", []):
            if t.get("Type") != "Correspond" or _ts(str(t.get("Created"))) < since - 1:
                continue
            author = str((t.get("Creator") or {}).get("id", ""))
            if author != requester:
                continue
            text, is_html = self._text(t["id"])
            out.append(Reply(author, ttext.html_to_text(text) if is_html else text, _ts(str(t["Created"])), True))
        return out


def factory(config: Mapping[str, Any]) -> RTDesk:
    return RTDesk(parse("line1 rt desk", config, Options))
