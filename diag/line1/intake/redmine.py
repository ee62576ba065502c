"""The Redmine desk: new issues filed by people in a project are triaged; notes, fields and status go back.

Issues diag opened itself (they carry the incident fingerprint field, or diag's own user is the author) are not
people's tickets and are skipped. The requester is the issue's author; their reply (a journal note by the
author) after diag resolved the issue reopens it. Options extend the ticket backend's (docs/tickets.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from diag.exporters.tickets.base import TicketError
from diag.exporters.tickets.options import parse
from diag.exporters.tickets.redmine import Options as BackendOptions
from diag.exporters.tickets.redmine import RedmineBackend, _pick
from diag.line1 import text as ttext
from diag.line1.model import HumanTicket, Reply
from diag.line1.note import Note

log = logging.getLogger(__name__)
NAME = "redmine"


class Options(BackendOptions, forbid_unknown_fields=True):
    host_field: int | None = None  # custom field (id) where people name the host or group
    classification_field: int | None = None  # typical / atypical
    line_field: int | None = None  # L1 / L2 / L3
    sla_field: int | None = None  # respond-by time (ISO 8601)
    kb_field: int | None = None  # the KB entry
    resolved_status: str | int = "Resolved"
    escalated_status: str | int | None = None
    max_text: int = ttext.MAX_TEXT


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class RedmineDesk:
    """Reads and answers people's issues in one Redmine project."""

    name = NAME

    def __init__(self, options: Options) -> None:
        self.options = options
        self.backend = RedmineBackend(options)
        self.http = self.backend.http
        self._me: int | None = None
        self._statuses: dict[str, int] | None = None
        self._priorities: dict[str, int] = {}
        self._authors: dict[str, int] = {}  # ticket id -> author id (for replies)
        self._logins: dict[int, str] = {}  # user id -> login (people file many tickets)
        self._lock = threading.Lock()

    def _get(self, path: str, what: str, **params: Any) -> Any:
        return self.http.request("GET", path, what=what, ok=(200,), params=params or None).json()

    def _ids(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            if self._me is None or self._statuses is None:
                self._me = int(self._get("/users/current.json", "who am I")["user"]["id"])
                sts = self._get("/issue_statuses.json", "list statuses")["issue_statuses"]
                o = self.options
                self._statuses = {"resolved": int(_pick(sts, o.resolved_status, "resolved_status")["id"]),
                                  "reopened": int(_pick(sts, o.reopen_status, "reopen_status")["id"])}
                if o.escalated_status is not None:
                    self._statuses["escalated"] = int(_pick(sts, o.escalated_status, "escalated_status")["id"])
                prios = self._get("/enumerations/issue_priorities.json", "list priorities")["issue_priorities"]
                self._priorities = {lvl: int(_pick(prios, want, f"priorities.{lvl}")["id"])
                                    for lvl, want in o.priorities.items()}
            return self._me, self._statuses

    def poll(self, seen: Callable[[str], bool]) -> list[HumanTicket]:
        me, _ = self._ids()
        body = self._get("/issues.json", "list new issues", project_id=self.options.project, status_id="open",
                         sort="id:desc", limit=100)
        fp = self.options.fingerprint_field
        out = []
        for issue in reversed(body.get("issues", [])):
            author = issue.get("author") or {}
            fields = {int(cf["id"]): cf.get("value") for cf in issue.get("custom_fields") or () if "id" in cf}
            if int(author.get("id", -1)) == me or (isinstance(fp, int) and fields.get(fp)):
                continue  # diag's own incident tickets
            if seen(str(issue["id"])):
                continue
            host = fields.get(self.options.host_field) if self.options.host_field else None
            subject, text, refused = ttext.prepare(str(issue.get("subject", "")), str(issue.get("description") or ""),
                                                   limit=self.options.max_text)
            tid = str(issue["id"])
            self._authors[tid] = int(author.get("id", -1))
            out.append(HumanTicket(NAME, tid, subject, text, self._login(author), _ts(issue["created_on"]),
                                   f"{self.backend.url}/issues/{tid}",
                                   {"host": str(host)} if isinstance(host, str) and host else {}, refused))
        return out

    def _login(self, author: Mapping[str, Any]) -> str:
        """The author's login (for the facts inventory); their display name when the key may not read users."""
        uid = int(author.get("id", -1))
        if uid not in self._logins:
            try:
                self._logins[uid] = str(self._get(f"/users/{uid}.json", "read the author")["user"]["login"])
            except (TicketError, KeyError, ValueError):  # a non-admin key gets 403 here: the name is the best there is
                self._logins[uid] = str(author.get("name", ""))
        return self._logins[uid]

    def respond(self, ticket_id: str, note: Note) -> None:
        _, statuses = self._ids()
        o = self.options
        change: dict[str, Any] = {"notes": note.text}
        cfs = []
        for fid, value in ((o.classification_field, note.classification), (o.line_field, note.line),
                           (o.sla_field, note.due_iso), (o.kb_field, note.kb_entry or "")):
            if fid:
                cfs.append({"id": fid, "value": value})
        if cfs:
            change["custom_fields"] = cfs
        if note.priority in self._priorities:
            change["priority_id"] = self._priorities[note.priority]
        if note.line in o.assignees:
            change["assigned_to_id"] = o.assignees[note.line]
        if note.state in statuses:
            change["status_id"] = statuses[note.state]
        if note.attachments:
            change["uploads"] = self.backend._upload(note.attachments)
        self.http.request("PUT", f"/issues/{int(ticket_id)}.json", what=f"answer issue #{ticket_id}",
                          ok=(200, 204), json={"issue": change})

    def replies(self, ticket_id: str, since: float) -> list[Reply]:
        me, _ = self._ids()
        issue = self._get(f"/issues/{int(ticket_id)}.json", f"read issue #{ticket_id}", include="journals")["issue"]
        author = int((issue.get("author") or {}).get("id", -1))
        out = []
        for j in issue.get("journals") or ():
            user = int((j.get("user") or {}).get("id", -1))
            at = _ts(j["created_on"])
            if not j.get("notes") or user == me or at < since - 1:  # Redmine keeps whole seconds
                continue
            out.append(Reply(str((j.get("user") or {}).get("name", "")), str(j["notes"]), at, user == author))
        return out


def factory(config: Mapping[str, Any]) -> RedmineDesk:
    return RedmineDesk(parse("line1 redmine desk", config, Options))
