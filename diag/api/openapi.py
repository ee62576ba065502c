"""The OpenAPI 3.1 document of the API (``GET /api/openapi.json``), built from the msgspec structs in schemas.py.

The operation table below is the one place that names each path, its role and its shapes; the document is
generated from it once per process. Schemas come from :func:`msgspec.json.schema_components`, so a body that
the document allows is a body the API decodes, and the other way round.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from diag import __version__
from diag.api import schemas as s

API = "/api/v1"


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    summary: str
    role: str
    response: Any  # a type, or None for a free-form body
    body: Any = None
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    status: str = "200"
    extra: tuple[str, ...] = ()  # more statuses this operation answers with
    stream: bool = False


_SINCE = ("since", {"type": "string", "pattern": r"^[0-9]{1,6}[smhd]$"}, "only the last 30m, 2h, 7d ...")
_SINCE_TS = ("since_ts", {"type": "number", "minimum": 0, "maximum": 1e11}, "only records at or after this Unix time")
OPS: tuple[Op, ...] = (
    Op("get", f"{API}/whoami", "The calling token's name, role and scope", "viewer", s.WhoAmI),
    Op("get", f"{API}/inventory/hosts", "Every inventory host", "viewer", list[s.HostOut]),
    Op("get", f"{API}/inventory/hosts/{{name}}", "One inventory host", "viewer", s.HostOut, extra=("404",)),
    Op("get", f"{API}/playbooks", "The playbooks this agent can run", "viewer", list[s.PlaybookOut]),
    Op(
        "get", f"{API}/playbooks/{{name}}", "One playbook: variables and steps", "viewer", s.PlaybookOut, extra=("404",)
    ),
    Op(
        "post",
        f"{API}/checks",
        "Start a check (a job), or request approval when the playbook changes hosts",
        "engineer",
        s.CheckAccepted,
        body=s.CheckRequest,
        status="202",
        extra=("400", "403", "404", "413", "415", "422"),
    ),
    Op("get", f"{API}/checks", "Recent check jobs (newest first)", "viewer", list[s.JobOut]),
    Op("get", f"{API}/checks/{{job_id}}", "A check job's state", "viewer", s.JobOut, extra=("404",)),
    Op(
        "get",
        f"{API}/checks/{{job_id}}/result",
        "The job's result: the `diag check --json` document (202 with the job while it runs)",
        "viewer",
        s.CheckReport,
        extra=("202", "404"),
    ),
    Op(
        "get",
        f"{API}/checks/{{job_id}}/events",
        "Live progress as server-sent events: start, host (a host's result), done",
        "viewer",
        None,
        extra=("404", "503"),
        stream=True,
    ),
    Op(
        "get",
        f"{API}/approvals",
        "Approval requests (newest first)",
        "viewer",
        list[s.ApprovalOut],
        query=(
            (
                "state",
                {"type": "string", "enum": ["pending", "approved", "rejected", "cancelled", "expired"]},
                "only this state",
            ),
        ),
        extra=("400",),
    ),
    Op("get", f"{API}/approvals/{{approval_id}}", "One approval request", "viewer", s.ApprovalOut, extra=("404",)),
    Op(
        "post",
        f"{API}/approvals/{{approval_id}}/approve",
        "Approve a request (a lead other than the requester, with a comment); its job starts with changes allowed."
        " The requester's token, role and scope are checked again: 409 and the request cancelled if they no longer fit",
        "lead",
        dict[str, Any],
        body=s.ApprovalDecision,
        extra=("400", "403", "404", "409", "413", "415", "422"),
    ),
    Op(
        "post",
        f"{API}/approvals/{{approval_id}}/reject",
        "Reject a request (with a comment)",
        "lead",
        dict[str, Any],
        body=s.ApprovalDecision,
        extra=("400", "403", "404", "409", "413", "415", "422"),
    ),
    Op(
        "get",
        f"{API}/journal",
        "Journal records, newest first",
        "lead",
        list[s.JournalRecordOut],
        query=(
            _SINCE,
            _SINCE_TS,
            ("action", {"type": "string", "maxLength": 100}, "an action or its family (check, approval, login...)"),
            ("actor", {"type": "string", "maxLength": 200}, "token:NAME, cli:USER, ..."),
            ("target", {"type": "string", "maxLength": 500}, "a host, job or incident"),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "at most this many (default 500)"),
        ),
        extra=("400", "403"),
    ),
    Op("get", f"{API}/journal/verify", "Check the journal's hash chain", "lead", s.JournalVerifyOut, extra=("403",)),
    Op(
        "get",
        f"{API}/incidents",
        "Incidents (open ones unless state says otherwise), worst and least SLA time left first",
        "viewer",
        list[dict[str, Any]],
        query=(
            (
                "state",
                {
                    "type": "string",
                    "enum": ["pending", "open", "clearing", "resolved", "suppressed", "impact", "discarded"],
                },
                "only this state",
            ),
            ("severity", {"type": "string", "enum": ["info", "warning", "critical"]}, "only this severity"),
            ("line", {"type": "string", "enum": ["L1", "L2", "L3"]}, "only this support line"),
            ("host", {"type": "string", "maxLength": 200}, "only this host"),
            ("classification", {"type": "string", "enum": ["typical", "atypical"]}, "typical or atypical"),
        ),
        extra=("400", "404"),
    ),
    Op(
        "get",
        f"{API}/incidents/{{incident_id}}",
        "An incident with its evidence, hypotheses, ticket and events",
        "viewer",
        dict[str, Any],
        extra=("404",),
    ),
    Op(
        "post",
        f"{API}/incidents/{{incident_id}}/acknowledge",
        "Take the incident (stops the respond clock)",
        "engineer",
        dict[str, Any],
        extra=("404",),
    ),
    Op(
        "post",
        f"{API}/incidents/{{incident_id}}/assign",
        "Assign the incident to someone (a ticket note)",
        "engineer",
        dict[str, Any],
        body=s.Assign,
        extra=("400", "404", "413", "415"),
    ),
    Op(
        "post",
        f"{API}/incidents/{{incident_id}}/note",
        "Add a note (the ticket gets it too)",
        "engineer",
        dict[str, Any],
        body=s.Note,
        extra=("400", "404", "413", "415"),
    ),
    Op(
        "post",
        f"{API}/incidents/{{incident_id}}/resolve",
        "Resolve after a verifying re-check (the playbook runs again on the host)",
        "engineer",
        dict[str, Any],
        body=s.Decision,
        extra=("400", "404", "409", "413", "415", "422"),
    ),
    Op(
        "get",
        f"{API}/kb",
        "Knowledge-base entries with their verification state",
        "viewer",
        list[dict[str, Any]],
        extra=("404", "422"),
    ),
    Op(
        "post",
        f"{API}/kb",
        "Propose a KB entry from a resolved incident",
        "engineer",
        dict[str, Any],
        body=s.Proposal,
        status="201",
        extra=("400", "404", "409", "413", "415", "422"),
    ),
    Op(
        "post",
        f"{API}/kb/{{entry_id}}/verify",
        "Verify a proposed KB entry",
        "lead",
        dict[str, Any],
        extra=("404", "409"),
    ),
    Op("get", f"{API}/line1/changes", "The catalogue of standard changes, with a lead's pause switch state",
       "viewer", list[dict[str, Any]], extra=("422",)),
    Op("post", f"{API}/line1/changes/{{change_id}}/pause", "Pause a standard change (line-1 automation refuses it)",
       "lead", dict[str, Any], body=s.Decision, extra=("400", "404", "413", "415", "422")),
    Op("post", f"{API}/line1/changes/{{change_id}}/resume", "Resume a paused standard change", "lead",
       dict[str, Any], body=s.Decision, extra=("400", "404", "413", "415", "422")),
    Op("get", f"{API}/line1/applications", "Standard changes applied, newest first, with evidence before and after",
       "viewer", list[dict[str, Any]],
       query=(("change", {"type": "string", "maxLength": 100}, "only this catalogue entry"),
              ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most this many (100)")),
       extra=("400",)),
    Op("get", f"{API}/line1/applications/{{app_id}}", "One application of a standard change", "viewer",
       dict[str, Any], extra=("404",)),
)

_REASONS = {
    "200": "OK",
    "201": "Created",
    "202": "Accepted",
    "400": "Bad request (the reason says what)",
    "401": "No token, or an invalid or revoked one",
    "403": "The token's role or scope does not allow this",
    "404": "No such thing",
    "409": "Already decided, cancelled or expired",
    "413": "Body over the limit",
    "415": "Body is not JSON",
    "422": "Unknown host, group or variable, or a required comment is blank",
    "503": "Too many event streams are open (agent.api.max_streams); retry after Retry-After seconds",
}


def document(extra_ops: tuple[Op, ...] = ()) -> bytes:
    ops = OPS + extra_ops
    types: list[Any] = [s.Error, s.SseStart, s.SseDone, s.HostResultOut]
    for op in ops:
        if op.response is not None:
            types.append(op.response)
        if op.body is not None:
            types.append(op.body)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(map(id, types), schemas, strict=True))
    error_ref = {"$ref": "#/components/schemas/Error"}
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 200}}
            for name in _path_params(op.path)
        ]
        params += [
            {"name": n, "in": "query", "required": False, "schema": sch, "description": d} for n, sch, d in op.query
        ]
        if op.stream:
            # The stream is text; each event's `data:` line is a JSON object, described per event name (an
            # OpenAPI 3.1 media type has no item schema; 3.2's itemSchema is the same idea).
            ok: dict[str, Any] = {
                "description": "text/event-stream: `event: start|host|done`, `id: N`, and `data:` one JSON object"
                " (start: SseStart, host: HostResultOut, the host's result as in CheckReport, done: SseDone)",
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "x-events": {
                            "start": {"$ref": "#/components/schemas/SseStart"},
                            "host": {"$ref": "#/components/schemas/HostResultOut"},
                            "done": {"$ref": "#/components/schemas/SseDone"},
                        },
                    }
                },
            }
        else:
            ok = {
                "description": _REASONS[op.status],
                "content": {"application/json": {"schema": by_type[id(op.response)]}},
            }
        responses: dict[str, Any] = {op.status: ok, "401": _err("401", error_ref)}
        if op.role != "viewer":
            responses["403"] = _err("403", error_ref)
        extra = list(op.extra)
        if op.method == "post":  # every body is read under the limit first; a declared body may be refused
            extra += ["413"] + (["400", "415", "422"] if op.body is not None else [])
        for code in extra:
            if code == "202" and op.status != "202":
                responses[code] = {
                    "description": "Still running",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobOut"}}},
                }
            elif code not in responses:
                responses[code] = _err(code, error_ref)
        operation: dict[str, Any] = {
            "summary": op.summary,
            "description": f"Role: {op.role} or above.",
            "operationId": _op_id(op),
            "parameters": params,
            "responses": responses,
        }
        if op.body is not None:
            operation["requestBody"] = {
                "required": op.body is not s.Decision,
                "content": {"application/json": {"schema": by_type[id(op.body)]}},
            }
        paths.setdefault(op.path, {})[op.method] = operation
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "diag API", "version": __version__, "description": "See docs/api.md."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "diag api token add"}},
        },
    }
    return json.dumps(doc, indent=1).encode()


def _err(code: str, ref: dict[str, Any]) -> dict[str, Any]:
    return {"description": _REASONS[code], "content": {"application/json": {"schema": ref}}}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _op_id(op: Op) -> str:
    words = [p.strip("{}") for p in op.path.removeprefix(API + "/").split("/")]
    return op.method + "_" + "_".join(words).replace("-", "_")
