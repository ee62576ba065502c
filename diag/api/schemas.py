"""Request and response shapes of the HTTP API, as msgspec structs: they validate bodies and give the OpenAPI schemas.

``CheckReport`` mirrors :meth:`diag.model.RunReport.to_dict` (the ``diag check --json`` contract of
shared/DESIGN.md); the API returns that dict itself, and the struct only documents it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Name = Annotated[str, Meta(min_length=1, max_length=200)]
VarValue = str | int | float | bool


class CheckRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Run ``playbook`` on ``targets`` (host or group names, ``all`` for every host)."""

    playbook: Name
    targets: Annotated[list[Name], Meta(min_length=1, max_length=1000)]
    vars: dict[Annotated[str, Meta(max_length=100)], VarValue] = {}
    #: run now and hold back the steps that change hosts, instead of asking a lead to approve them
    read_only: bool = False


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    comment: Annotated[str, Meta(max_length=2000)] = ""


#: "Has at least one visible character": what a required comment must contain. Not ``\S``: the OpenAPI pattern is
#: read as an ECMAScript regex by clients (schemathesis, browsers), and ECMAScript's ``\s`` lacks U+001C-U+001F and
#: U+0085, which Python's has, and has U+FEFF, which Python's lacks; a client then sent "\x1f" as a valid comment
#: and got 400. Naming the control ranges and U+FEFF makes the class mean the same in both languages.
VISIBLE_TEXT = r"[^\s\x00-\x1f\x7f-\x9f\ufeff]"


class ApprovalDecision(msgspec.Struct, forbid_unknown_fields=True):
    """Approving or rejecting a change needs a reason in the journal."""

    comment: Annotated[str, Meta(min_length=1, max_length=2000, pattern=VISIBLE_TEXT)]


class Error(msgspec.Struct):
    error: str


class Evidence(msgspec.Struct):
    kind: str
    title: str
    text: str
    data: dict[str, Any]


class FindingOut(msgspec.Struct):
    check: str
    severity: Literal["info", "warning", "critical"]
    summary: str
    cause: str | None
    subject: str
    fingerprint: str
    evidence: list[Evidence]


class StepOut(msgspec.Struct):
    id: str
    status: str
    reason: str | None
    exit_status: int | None
    duration_s: float
    parsed: Any


class HostResultOut(msgspec.Struct):
    host: str
    status: Literal[
        "ok", "findings", "unreachable", "auth_failed", "hostkey_mismatch", "hostkey_unknown", "timeout", "error"
    ]
    error: str | None
    duration_s: float
    worst_severity: Literal["info", "warning", "critical"] | None
    findings: list[FindingOut]
    steps: list[StepOut]


class CheckReport(msgspec.Struct):
    """The ``diag check --json`` document."""

    playbook: str
    results: list[HostResultOut]
    skipped: list[dict[str, str]]
    duration_s: float
    exit_status: int


class JobOut(msgspec.Struct):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    actor: str
    playbook: str
    targets: list[str]
    hosts: list[str]
    allow_changes: bool
    approval: str | None
    created: float
    finished: float | None
    done_hosts: int
    error: str | None
    links: dict[str, str] = {}


class SseStart(msgspec.Struct):
    """The ``start`` event of a check's event stream."""

    job: str
    playbook: str
    hosts: list[str]


class SseDone(msgspec.Struct):
    """The ``done`` event: the job's final state and the exit status ``diag check`` would have."""

    job: str
    state: Literal["done", "failed"]
    exit_status: int | None


class ApprovalHost(msgspec.Struct):
    name: str
    groups: list[str]


class RenderedCommand(msgspec.Struct):
    """One changing step on one host, as it will be sent (or why the host cannot run it: ``error``)."""

    host: str
    step: str
    command: str
    sudo: bool
    when: str | None = None
    error: str | None = None


class ApprovalOut(msgspec.Struct):
    id: str
    requester: str
    playbook: str
    targets: list[str]
    vars: dict[str, Any]
    changing_steps: list[str]
    reason: str
    state: Literal["pending", "approved", "rejected", "cancelled", "expired"]
    created: float
    decided_by: str | None
    decided_at: float | None
    comment: str | None
    job: str | None
    hosts: list[ApprovalHost]
    commands: list[RenderedCommand]
    expires: float | None


class CheckAccepted(msgspec.Struct):
    """202: either a job started (``job``) or an approval request was made (``approval``)."""

    status: Literal["started", "needs_approval"]
    job: JobOut | None = None
    approval: ApprovalOut | None = None


class WhoAmI(msgspec.Struct):
    name: str
    role: Literal["viewer", "engineer", "lead", "admin"]
    groups: list[str]
    playbooks: list[str]


class HostOut(msgspec.Struct):
    name: str
    address: str
    port: int
    device_type: str
    groups: list[str]
    tags: list[str]
    parents: list[str]
    site: str | None


class StepInfo(msgspec.Struct):
    id: str
    description: str
    command: str
    sudo: bool
    changes: bool


class PlaybookOut(msgspec.Struct):
    name: str
    description: str
    vars: dict[str, Any]
    steps: list[StepInfo]
    changes: bool


class JournalRecordOut(msgspec.Struct):
    seq: int
    time: str
    ts: float
    actor: str
    action: str
    target: str
    result: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class JournalVerifyOut(msgspec.Struct):
    ok: bool
    records: int
    head: str
    problems: list[str]


class Assign(msgspec.Struct, forbid_unknown_fields=True):
    assignee: Annotated[str, Meta(min_length=1, max_length=100)]


class Note(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, max_length=4000)]


class Proposal(msgspec.Struct, forbid_unknown_fields=True):
    """A KB entry proposed from a resolved incident (a lead verifies it)."""

    #: a number, not an integer: JSON Schema counts 7.0 as an integer, and msgspec's strict int does not
    incident: Annotated[float, Meta(ge=1, le=1e15)]
    id: Annotated[str, Meta(max_length=80)] = ""
    title: Annotated[str, Meta(max_length=200)] = ""
    cause: Annotated[str, Meta(max_length=2000)] = ""
    instructions: Annotated[str, Meta(max_length=4000)] = ""
    typical: bool = False
