"""Redmine ticket backend (REST/JSON, Redmine 4.2+/5.x): one issue per fingerprint, kept in a custom field.

::

    tickets:
      backend: redmine
      redmine:
        url: https://redmine.example.org
        api_key: env:DIAG_REDMINE_KEY            # or file:/etc/diag/redmine.key; sent as X-Redmine-API-Key
        project: infra                           # identifier or id
        fingerprint_field: 7                     # custom field id (a name needs an admin key to resolve)
        tracker: Bug                             # name or id; the project's default when unset
        closed_status: Closed                    # must be a closed status ("Resolved" is not, by default)
        reopen_status: New

Dedup: ``find`` asks ``/issues.json`` with an explicit ``cf_N = fingerprint`` filter over all statuses and then
checks that every issue returned carries exactly that fingerprint. Redmine silently drops a filter on a field that
is unknown, not "used as a filter" or not visible to the key's user, and then returns *every* issue; that is
reported as :class:`TicketRejected` naming the field, never taken as a match. ``create`` runs ``find`` first
and checks that the created issue kept the fingerprint (Redmine also drops a value for a field that is not
enabled for the project or tracker). Status changes are read back, because Redmine ignores a status the
workflow does not allow instead of refusing it. A note identical to the issue's latest note is not added
again (nor one with the same attachments), so a retry after a crash does not double it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
import msgspec

from diag.exporters.tickets import text as tx
from diag.exporters.tickets.base import (
    BACKENDS,
    Attachment,
    TicketDraft,
    TicketRef,
    TicketRejected,
    oldest,
)
from diag.exporters.tickets.httpclient import REASON_LIMIT, HttpClient
from diag.exporters.tickets.options import parse, secret

log = logging.getLogger(__name__)

NAME = "redmine"
SUBJECT_MAX = 255  # Redmine's column limit; a longer subject is a 422


class Options(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    api_key: str
    project: str | int
    fingerprint_field: int | str = "diag fingerprint"
    tracker: str | int | None = None
    closed_status: str | int = "Closed"
    reopen_status: str | int = "New"
    #: draft priority (low|normal|high|urgent) -> Redmine priority name or id
    priorities: dict[str, str | int] = msgspec.field(
        default_factory=lambda: {"low": "Low", "normal": "Normal", "high": "High", "urgent": "Urgent"}
    )
    #: draft.fields key (kb, category, due dates...) -> custom field id that receives its value
    custom_fields: dict[str, int] = {}
    #: support line (L1|L2|L3) -> user or group id the issue is assigned to
    assignees: dict[str, int] = {}
    #: search every project the key can see, so an issue moved out of ``project`` is still found
    search_all_projects: bool = False
    is_private: bool = False
    timeout: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True
    #: Redmine's text formatting (Administration > Settings > General). ``markdown`` (CommonMark or Markdown) gets
    #: diag's Markdown, in which everything from outside is literal text; ``textile`` gets the same text with its
    #: escapes taken out, HTML-escaped, in one ``<pre>`` block, where Textile makes no markup of it.
    text_formatting: Literal["markdown", "textile"] = "markdown"


def textile_text(markdown: str) -> str:
    """diag's Markdown for a Textile Redmine: literal text in a ``<pre>`` block (escaped, so it cannot close it)."""
    return f"<pre>\n{tx.html(tx.md_plain(markdown))}\n</pre>"


def _reason(response: httpx.Response) -> str:
    """Redmine's own words: 422 carries {"errors": [...]}; 401/403/404 carry nothing useful."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return "; ".join(str(e) for e in body["errors"])[:REASON_LIMIT]
    return {
        401: "the API key is not valid (or REST is not enabled in Administration > Settings > API)",
        403: "the API key's user may not do this in the project",
        404: "no such issue or project (or the key's user cannot see it)",
    }.get(response.status_code, response.reason_phrase)


class RedmineBackend:
    """The :class:`~diag.exporters.tickets.base.TicketBackend` for Redmine."""

    name = NAME

    def __init__(self, options: Options) -> None:
        self.options = options
        key = secret(NAME, "api_key", options.api_key)
        if not key:
            raise TicketRejected("ticket backend redmine: api_key is empty")
        self.url = options.url.rstrip("/")
        self.http = HttpClient(
            NAME,
            self.url,
            headers={"X-Redmine-API-Key": key, "Accept": "application/json"},
            timeout=options.timeout,
            ca_file=options.ca_file,
            verify_tls=options.verify_tls,
            reason=_reason,
        )
        self._ids: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # ---- names -> ids, resolved once on first use (not in __init__: Redmine may be down when diag starts) ----
    def _resolve(self) -> dict[str, Any]:
        with self._lock:
            if self._ids is None:
                self._ids = self._lookup()
            return self._ids

    def _lookup(self) -> dict[str, Any]:
        o = self.options
        statuses = self._get("/issue_statuses.json", "list statuses")["issue_statuses"]
        closed = _pick(statuses, o.closed_status, "closed_status")
        if not closed.get("is_closed"):
            names = ", ".join(s["name"] for s in statuses if s.get("is_closed"))
            raise TicketRejected(
                f"redmine: closed_status {closed['name']!r} is not a closed status in Redmine; closed ones: {names}"
            )
        reopen = _pick(statuses, o.reopen_status, "reopen_status")
        if reopen.get("is_closed"):
            raise TicketRejected(f"redmine: reopen_status {reopen['name']!r} is a closed status")
        priorities = self._get("/enumerations/issue_priorities.json", "list priorities")["issue_priorities"]
        prio = {lvl: int(_pick(priorities, want, f"priorities.{lvl}")["id"]) for lvl, want in o.priorities.items()}
        tracker = None
        if o.tracker is not None:
            tracker = int(_pick(self._get("/trackers.json", "list trackers")["trackers"], o.tracker, "tracker")["id"])
        field = o.fingerprint_field
        if isinstance(field, str) and not field.isdigit():
            # /custom_fields.json is admin-only in Redmine; a non-admin key must name the field by id
            fields = self._get("/custom_fields.json", "resolve fingerprint_field (needs an admin key)")
            field = _pick([f for f in fields["custom_fields"] if f.get("customized_type") == "issue"], field,
                          "fingerprint_field")["id"]
        return {"closed": int(closed["id"]), "reopen": int(reopen["id"]), "priorities": prio,
                "tracker": tracker, "field": int(field)}

    def _get(self, path: str, what: str, **params: Any) -> Any:
        return self.http.request("GET", path, what=what, ok=(200,), params=params or None).json()

    # ---- the TicketBackend protocol ----
    def find(self, fingerprint: str) -> TicketRef | None:
        ids = self._resolve()
        fid = ids["field"]
        # The explicit filter form: the short cf_N=VALUE form would read a leading '!', '~' or a '|' as operators.
        params: list[tuple[str, str | int]] = [
            ("set_filter", "1"),
            ("f[]", "status_id"), ("op[status_id]", "*"),
            ("f[]", f"cf_{fid}"), (f"op[cf_{fid}]", "="), (f"v[cf_{fid}][]", fingerprint),
            ("sort", "id"), ("limit", "25"),
        ]
        if not self.options.search_all_projects:
            params.append(("project_id", self.options.project))
        r = self.http.request("GET", "/issues.json", what=f"search fingerprint {fingerprint}", ok=(200,),
                              params=params)
        issues = r.json().get("issues", [])
        matches = []
        for issue in issues:
            value = _field_value(issue, fid)
            if value == fingerprint:
                matches.append(issue)
            elif value is None or value.lower() != fingerprint.lower():  # case-folding databases match more
                raise TicketRejected(
                    f"redmine: the fingerprint search returned issue #{issue['id']} which does not carry "
                    f"{fingerprint!r} in custom field {fid}: Redmine ignored the filter. Make field {fid} an issue "
                    f"field 'used as a filter', visible, and enabled for project {self.options.project!r}"
                )
        first = oldest("redmine", fingerprint, matches)
        return self._ref(first["id"]) if first is not None else None

    def create(self, draft: TicketDraft) -> TicketRef:
        existing = self.find(draft.fingerprint)
        if existing is not None:
            return existing
        ids = self._resolve()
        fields = [{"id": ids["field"], "value": draft.fingerprint}]
        fields += [{"id": cf, "value": draft.fields[k]} for k, cf in self.options.custom_fields.items()
                   if k in draft.fields]
        issue: dict[str, Any] = {
            "project_id": self.options.project,
            "subject": _subject(draft.subject),
            "description": self._text(draft.description),
            "is_private": self.options.is_private,
            "custom_fields": fields,
        }
        priority = ids["priorities"].get(draft.priority, ids["priorities"].get("normal"))
        if priority is not None:
            issue["priority_id"] = priority
        if ids["tracker"] is not None:
            issue["tracker_id"] = ids["tracker"]
        if draft.line in self.options.assignees:
            issue["assigned_to_id"] = self.options.assignees[draft.line]
        if draft.attachments:
            issue["uploads"] = self._upload(draft.attachments)
        r = self.http.request("POST", "/issues.json", what=f"create issue for {draft.fingerprint}", ok=(201,),
                              json={"issue": issue})
        created = r.json()["issue"]
        if _field_value(created, ids["field"]) != draft.fingerprint:
            raise TicketRejected(
                f"redmine: issue #{created['id']} was created but Redmine dropped the fingerprint: custom field "
                f"{ids['field']} is not enabled for project {self.options.project!r} or its tracker"
            )
        log.info("redmine: created issue #%s for %s", created["id"], draft.fingerprint)
        return self._ref(created["id"])

    def add_note(self, ref: TicketRef, text: str, attachments: Sequence[Attachment] = ()) -> None:
        text = self._text(text)
        issue = self._issue(ref)
        if _last_note(issue) == text and _last_files(issue) == sorted(a.filename for a in attachments):
            log.info("redmine: issue #%s already has this note; not adding it again", ref.id)
            return
        self._update(ref, {"notes": text}, attachments, "add note")

    def close(self, ref: TicketRef, note: str) -> None:
        self._set_status(ref, self._text(note) if note else note, self._resolve()["closed"], closed=True)

    def reopen(self, ref: TicketRef, note: str) -> None:
        self._set_status(ref, self._text(note) if note else note, self._resolve()["reopen"], closed=False)

    # ---- helpers ----
    def _text(self, markdown: str) -> str:
        return textile_text(markdown) if self.options.text_formatting == "textile" else markdown

    def _set_status(self, ref: TicketRef, note: str, status_id: int, *, closed: bool) -> None:
        verb = "close" if closed else "reopen"
        issue = self._issue(ref)
        if bool(issue["status"].get("is_closed")) == closed:  # done already (a retry, or a person did it)
            if note and _last_note(issue) != note:
                self._update(ref, {"notes": note}, (), f"{verb} (note only)")
            return
        change: dict[str, Any] = {"status_id": status_id}
        if note and _last_note(issue) != note:
            change["notes"] = note
        self._update(ref, change, (), verb)
        after = self._issue(ref)
        if bool(after["status"].get("is_closed")) != closed:
            raise TicketRejected(
                f"redmine: issue #{ref.id} stayed {after['status']['name']!r}: the workflow does not let the "
                f"key's user move it from {issue['status']['name']!r} to status id {status_id}"
            )

    def _issue(self, ref: TicketRef) -> dict[str, Any]:
        body = self._get(f"/issues/{int(ref.id)}.json", f"read issue #{ref.id}", include="journals")
        return dict(body["issue"])

    def _update(self, ref: TicketRef, change: dict[str, Any], attachments: Sequence[Attachment], what: str) -> None:
        if attachments:
            change["uploads"] = self._upload(attachments)
        self.http.request("PUT", f"/issues/{int(ref.id)}.json", what=f"{what} on issue #{ref.id}", ok=(200, 204),
                          json={"issue": change})

    def _upload(self, attachments: Sequence[Attachment]) -> list[dict[str, str]]:
        """POST each file to /uploads.json; the tokens are attached by the create or update that follows."""
        uploads = []
        for a in attachments:
            r = self.http.request(
                "POST", "/uploads.json", what=f"upload {a.filename}", ok=(201,), params={"filename": a.filename},
                content=a.content, headers={"Content-Type": "application/octet-stream"},
            )
            uploads.append({"token": r.json()["upload"]["token"], "filename": a.filename,
                            "content_type": a.content_type})
        return uploads

    def _ref(self, issue_id: int | str) -> TicketRef:
        return TicketRef(NAME, str(issue_id), f"{self.url}/issues/{issue_id}")

    def shutdown(self) -> None:
        self.http.shutdown()


def _pick(items: list[dict[str, Any]], want: str | int, key: str) -> dict[str, Any]:
    """The item whose id or name (case-insensitive) is ``want``; TicketRejected listing the known names."""
    for item in items:
        if (isinstance(want, int) or str(want).isdigit()) and int(item["id"]) == int(want):
            return item
        if isinstance(want, str) and str(item.get("name", "")).lower() == want.lower():
            return item
    names = ", ".join(str(i.get("name")) for i in items)
    raise TicketRejected(f"redmine: {key} {want!r} not found; known: {names}")


def _field_value(issue: Mapping[str, Any], field_id: int) -> str | None:
    for cf in issue.get("custom_fields") or ():
        if int(cf.get("id", -1)) == field_id:
            value = cf.get("value")
            return value if isinstance(value, str) else None
    return None


def _last_files(issue: Mapping[str, Any]) -> list[str]:
    """Names of the files attached by the latest journal that has a note (what a retried add_note would add)."""
    journals = [j for j in issue.get("journals") or () if j.get("notes")]
    if not journals:
        return []
    details = journals[-1].get("details") or ()
    return sorted(str(d.get("new_value")) for d in details if d.get("property") == "attachment")


def _last_note(issue: Mapping[str, Any]) -> str | None:
    notes = [j.get("notes") for j in issue.get("journals") or () if j.get("notes")]
    return str(notes[-1]) if notes else None


def _subject(subject: str) -> str:
    subject = " ".join(subject.split())  # no newlines in a subject line
    return subject if len(subject) <= SUBJECT_MAX else subject[: SUBJECT_MAX - 1] + "…"


@BACKENDS.register(NAME)
def factory(config: Mapping[str, Any]) -> RedmineBackend:
    return RedmineBackend(parse(NAME, config, Options))
