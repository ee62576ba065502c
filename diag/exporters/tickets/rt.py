"""Request Tracker ticket backend (REST2, built into RT 5): one ticket per fingerprint, by custom field or subject tag.

::

    rt:
      url: https://rt.example.org              # RT's web root; REST2 is {url}/REST/2.0
      token: env:DIAG_RT_TOKEN                 # an auth token (Settings > Auth Tokens): "Authorization: token ..."
      queue: General
      fingerprint_field: diag fingerprint      # a ticket custom field; null = a "[diag:FP]" tag in the subject
      note: comment                            # comment (internal) or correspond (mailed to requestors)

Dedup: ``find`` runs the TicketSQL ``'CF.{diag fingerprint}' = 'FP'`` (or ``Subject LIKE '[diag:FP]'``) over
every queue and status and keeps only tickets that really carry the fingerprint; a returned ticket that does
not is a :class:`TicketRejected` (the search did not do what was asked), never a match. ``create`` searches
first and reads the new ticket back: RT silently drops a custom field that is not applied to the queue. Status
changes go with the note (``POST /ticket/N/comment`` with ``Status``) and are read back, because RT reports a
refused transition only as a message. A note identical to the ticket's latest comment/correspondence (text and
attachment names) is not added again.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
import msgspec

from diag.exporters.tickets import text as tx
from diag.exporters.tickets.base import BACKENDS, Attachment, TicketDraft, TicketRef, TicketRejected, oldest
from diag.exporters.tickets.httpclient import REASON_LIMIT, HttpClient
from diag.exporters.tickets.options import parse, secret

log = logging.getLogger(__name__)

NAME = "rt"
API = "/REST/2.0"


class Options(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    queue: str
    token: str | None = None
    username: str | None = None
    password: str | None = None  # with username: HTTP basic auth instead of a token
    fingerprint_field: str | None = "diag fingerprint"
    subject_tag: str = "diag"
    note: Literal["comment", "correspond"] = "comment"
    resolved_status: str = "resolved"
    reopen_status: str = "open"
    inactive_statuses: list[str] = msgspec.field(default_factory=lambda: ["resolved", "rejected", "deleted"])
    #: draft priority -> RT's numeric priority (0-99 in a default RT)
    priorities: dict[str, int] = msgspec.field(
        default_factory=lambda: {"low": 20, "normal": 50, "high": 70, "urgent": 90}
    )
    #: support line -> queue (e.g. L2: "Second line"); other lines go to ``queue``
    line_queues: dict[str, str] = {}
    #: draft.fields key -> ticket custom field name that receives its value
    custom_fields: dict[str, str] = {}
    requestors: list[str] = []
    timeout: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True


def _reason(response: httpx.Response) -> str:
    """RT's REST2 errors are {"message": "..."}."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:REASON_LIMIT]
    if response.status_code == 401:
        return "authentication failed (check the token or username/password)"
    return response.reason_phrase


def _sql_string(value: str) -> str:
    """A TicketSQL string literal: single-quoted, with quote and backslash escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _attachments(attachments: Sequence[Attachment]) -> list[dict[str, str]]:
    return [{"FileName": a.filename, "FileType": a.content_type,
             "FileContent": base64.b64encode(a.content).decode()} for a in attachments]


class RTBackend:
    """The :class:`~diag.exporters.tickets.base.TicketBackend` for Request Tracker 5."""

    name = NAME

    def __init__(self, options: Options) -> None:
        self.options = options
        self.url = options.url.rstrip("/")
        headers = {"Accept": "application/json"}
        auth: tuple[str, str] | None = None
        token = secret(NAME, "token", options.token)
        if token:
            headers["Authorization"] = f"token {token}"
        elif options.username:
            password = secret(NAME, "password", options.password) or ""
            auth = (options.username, password)
        else:
            raise TicketRejected("ticket backend rt: give token, or username and password")
        self.http = HttpClient(NAME, self.url + API, headers=headers, timeout=options.timeout,
                               ca_file=options.ca_file, verify_tls=options.verify_tls, auth=auth, reason=_reason)

    # ---- the TicketBackend protocol ----
    def find(self, fingerprint: str) -> TicketRef | None:
        o = self.options
        if o.fingerprint_field:
            query = f"'CF.{{{o.fingerprint_field}}}' = {_sql_string(fingerprint)}"
        else:
            query = f"Subject LIKE {_sql_string(self._tag(fingerprint))}"
        r = self.http.request("GET", "/tickets", what=f"search fingerprint {fingerprint}", ok=(200,),
                              params={"query": query, "fields": "Subject,Status,CustomFields", "orderby": "id",
                                      "order": "ASC", "per_page": "20"})
        matches = []
        for ticket in r.json().get("items", []):
            if self._carries(ticket, fingerprint):
                matches.append(ticket)
            else:
                raise TicketRejected(
                    f"rt: the search {query} returned ticket #{ticket['id']} which does not carry {fingerprint!r}; "
                    f"check that {o.fingerprint_field or 'the subject tag'} is what diag writes"
                )
        first = oldest("rt", fingerprint, matches)
        return self._ref(first["id"]) if first is not None else None

    def create(self, draft: TicketDraft) -> TicketRef:
        existing = self.find(draft.fingerprint)
        if existing is not None:
            return existing
        o = self.options
        subject = tx.one_line(draft.subject)
        if not o.fingerprint_field:
            subject = f"{self._tag(draft.fingerprint)} {subject}"
        fields = {o.custom_fields[k]: v for k, v in draft.fields.items() if k in o.custom_fields}
        if o.fingerprint_field:
            fields[o.fingerprint_field] = draft.fingerprint
        ticket: dict[str, Any] = {
            "Queue": o.line_queues.get(draft.line, o.queue),
            "Subject": subject,
            "Content": tx.md_plain(draft.description),  # text/plain: RT shows it as it is, markup and all
            "ContentType": "text/plain",
            "Priority": o.priorities.get(draft.priority, o.priorities.get("normal", 50)),
        }
        if fields:
            ticket["CustomFields"] = fields
        if o.requestors:
            ticket["Requestor"] = o.requestors
        if draft.attachments:
            ticket["Attachments"] = _attachments(draft.attachments)
        r = self.http.request("POST", "/ticket", what=f"create ticket for {draft.fingerprint}", ok=(201,),
                              json=ticket)
        ticket_id = r.json()["id"]
        created = self._ticket(ticket_id)
        if not self._carries(created, draft.fingerprint):
            raise TicketRejected(
                f"rt: ticket #{ticket_id} was created but RT dropped the fingerprint: custom field "
                f"{o.fingerprint_field!r} is not applied to queue {ticket['Queue']!r}"
            )
        log.info("rt: created ticket #%s for %s", ticket_id, draft.fingerprint)
        return self._ref(ticket_id)

    def add_note(self, ref: TicketRef, text: str, attachments: Sequence[Attachment] = ()) -> None:
        text = tx.md_plain(text)
        if self._last_message(ref) == (text.strip(), sorted(a.filename for a in attachments)):
            log.info("rt: ticket #%s already has this note; not adding it again", ref.id)
            return
        self._message(ref, text, attachments, None)

    def close(self, ref: TicketRef, note: str) -> None:
        self._set_status(ref, tx.md_plain(note), self.options.resolved_status, inactive=True)

    def reopen(self, ref: TicketRef, note: str) -> None:
        self._set_status(ref, tx.md_plain(note), self.options.reopen_status, inactive=False)

    # ---- helpers ----
    def _set_status(self, ref: TicketRef, note: str, status: str, *, inactive: bool) -> None:
        current = str(self._ticket(ref.id)["Status"])
        if (current in self.options.inactive_statuses) == inactive:  # done already: a retry, or a person did it
            if note and self._last_message(ref) != (note.strip(), []):
                self._message(ref, note, (), None)
            return
        answer = self._message(ref, note, (), status)
        after = str(self._ticket(ref.id)["Status"])
        if after != status:
            said = "; ".join(str(m) for m in answer) if isinstance(answer, list) else ""
            raise TicketRejected(f"rt: ticket #{ref.id} stayed {after!r} instead of {status!r}: {said}"[:400])

    def _message(self, ref: TicketRef, text: str, attachments: Sequence[Attachment], status: str | None) -> Any:
        body: dict[str, Any] = {"Content": text, "ContentType": "text/plain"}
        if attachments:
            body["Attachments"] = _attachments(attachments)
        if status:
            body["Status"] = status
        r = self.http.request("POST", f"/ticket/{int(ref.id)}/{self.options.note}",
                              what=f"{self.options.note} on ticket #{ref.id}", ok=(201,), json=body)
        return r.json()

    def _ticket(self, ticket_id: int | str) -> dict[str, Any]:
        r = self.http.request("GET", f"/ticket/{int(ticket_id)}", what=f"read ticket #{ticket_id}", ok=(200,))
        return dict(r.json())

    def _last_message(self, ref: TicketRef) -> tuple[str, list[str]] | None:
        """Text and file names of the ticket's latest comment or correspondence (the no-double-note guard)."""
        r = self.http.request("GET", f"/ticket/{int(ref.id)}/history", what=f"read history of #{ref.id}",
                              ok=(200,), params={"fields": "Type", "orderby": "id", "order": "DESC",
                                                 "per_page": "20"})
        txn = next((t for t in r.json().get("items", []) if t.get("Type") in ("Comment", "Correspond")), None)
        if txn is None:
            return None
        r = self.http.request("GET", f"/transaction/{int(txn['id'])}/attachments", what="read the latest note",
                              ok=(200,), params={"fields": "ContentType,Filename,Content", "per_page": "100"})
        text, files = "", []
        for part in r.json().get("items", []):
            if part.get("Filename"):
                files.append(str(part["Filename"]))
            elif str(part.get("ContentType", "")).startswith("text/plain") and not text:
                # REST2 lists Content as text here (only /attachment/N encodes it in base64)
                text = str(part.get("Content") or "").strip()
        return text, sorted(files)

    def _carries(self, ticket: Mapping[str, Any], fingerprint: str) -> bool:
        field = self.options.fingerprint_field
        if not field:
            return self._tag(fingerprint) in str(ticket.get("Subject", ""))
        for cf in ticket.get("CustomFields") or ():
            if cf.get("name") == field:
                return fingerprint in (cf.get("values") or [])
        return False

    def _tag(self, fingerprint: str) -> str:
        return f"[{self.options.subject_tag}:{fingerprint}]"

    def _ref(self, ticket_id: int | str) -> TicketRef:
        return TicketRef(NAME, str(ticket_id), f"{self.url}/Ticket/Display.html?id={ticket_id}")

    def shutdown(self) -> None:
        self.http.shutdown()


@BACKENDS.register(NAME)
def factory(config: Mapping[str, Any]) -> RTBackend:
    return RTBackend(parse(NAME, config, Options))
