"""The HTTP API (``/api/v1/...``, ``/api/openapi.json``) as a Falcon WSGI app on the agent's port.

Why Falcon (measured, docs/api.md): it is WSGI, so it runs on the agent's threaded wsgiref server next to
``/metrics`` without a second server or an event loop, and it adds 3.3 MiB to the agent against 15.6 MiB for
FastAPI (+2.2 MiB for uvicorn). Bodies are validated by msgspec structs (already a dependency), which also
give the OpenAPI schemas (:mod:`diag.api.openapi`).

Every request passes :class:`Guard` first: a body over ``max_body_bytes`` is a 413 before it is read, and a
request without a valid token is a 401 before routing (an unknown path tells an anonymous client nothing).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import falcon
import msgspec

from diag.api import policy, schemas
from diag.api.service import Busy, Conflict, Invalid, NotFound, Service
from diag.api.tokens import Principal, token_prefix
from diag.wsgi import HTTPError, read_body

if TYPE_CHECKING:
    from diag.api.jobs import Job

log = logging.getLogger(__name__)

API = "/api/v1"
OPENAPI = "/api/openapi.json"
#: an id or event number: ASCII digits only ("¹".isdigit() is true, and int("¹") raises)
ASCII_INT = re.compile(r"[0-9]{1,18}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_encoder = msgspec.json.Encoder(enc_hook=str)  # parsed step values may hold anything; the CLI prints them with str


def send(resp: falcon.Response, obj: Any, status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encoder.encode(obj)


def decode(req: falcon.Request, typ: type[Any]) -> Any:
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise falcon.HTTPUnsupportedMediaType(description=f"Content-Type must be application/json, not {ctype!r}")
    try:
        return msgspec.json.decode(req.context.body or b"", type=typ)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise falcon.HTTPBadRequest(description=f"invalid body: {e}") from None


def _error_serializer(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encoder.encode({"error": exc.description or exc.title})


def bearer(req: falcon.Request) -> str | None:
    auth = req.get_header("Authorization") or ""
    scheme, _, value = auth.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Guard:
    """Body limit for every request; bearer-token authentication for ``/api/``."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.body = b""
        if req.path.startswith("/api/"):
            self._authenticate(req)  # 401 first: an anonymous client learns nothing about bodies or paths
        if req.method in _BODY_METHODS:
            try:
                req.context.body = read_body(req.env, self.svc.settings.max_body_bytes)
            except HTTPError as e:
                raise falcon.HTTPError(
                    e.status.replace("Content Too Large", "Payload Too Large"), description=e.reason
                ) from None

    def _authenticate(self, req: falcon.Request) -> None:
        token = bearer(req)
        if token is None:
            raise falcon.HTTPUnauthorized(description="a bearer token is required", challenges=["Bearer"])
        p = self.svc.tokens.authenticate(token)
        if p is None:
            self.svc.journal.append(
                f"remote:{req.remote_addr}",
                "login.failed",
                req.path,
                "invalid token",
                {"token": token_prefix(token), "via": "api"},
            )
            raise falcon.HTTPUnauthorized(description="invalid or revoked token", challenges=["Bearer"])
        req.context.principal = p


def principal(req: falcon.Request) -> Principal:
    p: Principal = req.context.principal
    return p


def job_out(job: Job) -> dict[str, Any]:
    return {
        **job.summary(),
        "links": {
            "self": f"{API}/checks/{job.id}",
            "events": f"{API}/checks/{job.id}/events",
            "result": f"{API}/checks/{job.id}/result",
        },
    }


class Whoami:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = principal(req)
        send(resp, schemas.WhoAmI(p.name, p.role, list(p.groups), list(p.playbooks)))


class Hosts:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, [h.public() for h in self.svc.hosts.values()])

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        h = self.svc.hosts.get(name)
        if h is None:
            raise falcon.HTTPNotFound(description=f"no host named {name!r}")
        send(resp, h.public())


def playbook_out(pb: Any) -> dict[str, Any]:
    return {
        "name": pb.name,
        "description": pb.description,
        "vars": {
            v.name: {"default": v.default, "required": v.required, "description": v.description}
            for v in pb.vars.values()
        },
        "steps": [
            {"id": s.id, "description": s.description, "command": s.run, "sudo": s.sudo, "changes": s.changes}
            for s in pb.steps
        ],
        "changes": any(s.changes for s in pb.steps),
    }


class Playbooks:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from diag.errors import ConfigError
        from diag.remote import playbook as pbmod

        out = []
        for name, path in pbmod.available().items():
            try:
                out.append(playbook_out(pbmod.load(path)))
            except ConfigError:
                log.warning("playbook %s is invalid; not listed", name)
        send(resp, out)

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        send(resp, playbook_out(self.svc.playbook(name)))


class Checks:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body: schemas.CheckRequest = decode(req, schemas.CheckRequest)
        job, approval = self.svc.start_check(principal(req), body.playbook, body.targets, body.vars, body.read_only)
        if job is not None:
            resp.set_header("Location", f"{API}/checks/{job.id}")
            send(resp, {"status": "started", "job": job_out(job), "approval": None}, falcon.HTTP_202)
        else:
            assert approval is not None
            resp.set_header("Location", f"{API}/approvals/{approval.id}")
            send(resp, {"status": "needs_approval", "job": None, "approval": approval.to_dict()}, falcon.HTTP_202)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, [job_out(j) for j in self.svc.jobs.recent()])

    def _job(self, job_id: str) -> Job:
        job = self.svc.jobs.get(job_id)
        if job is None:
            raise falcon.HTTPNotFound(description=f"no check job {job_id!r} (jobs are kept in memory; see the journal)")
        return job

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        send(resp, job_out(self._job(job_id)))

    def on_get_result(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self._job(job_id)
        if job.report is None:
            resp.set_header("Retry-After", "2")
            send(resp, job_out(job), falcon.HTTP_202)
            return
        send(resp, job.report)

    def on_get_events(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self._job(job_id)
        last = req.get_header("Last-Event-ID") or ""
        resp.content_type = "text/event-stream"
        resp.cache_control = ["no-cache"]
        resp.stream = self.svc.stream(job, int(last) if ASCII_INT.fullmatch(last) else 0)


class Approvals:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from diag.api.approvals import STATES

        state = req.get_param("state")
        if state is not None and state not in STATES:
            raise falcon.HTTPBadRequest(description=f"state must be one of {', '.join(STATES)}")
        send(resp, [a.to_dict() for a in self.svc.list_approvals(state)])

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, approval_id: str) -> None:
        send(resp, self.svc.get_approval(approval_id).to_dict())

    def _decide(self, req: falcon.Request, resp: falcon.Response, approval_id: str, approve: bool) -> None:
        if not req.context.body:
            raise falcon.HTTPBadRequest(description='a body {"comment": "..."} is required')
        body: schemas.ApprovalDecision = decode(req, schemas.ApprovalDecision)
        a, job = self.svc.decide(principal(req), approval_id, approve, body.comment)
        send(resp, {"approval": a.to_dict(), "job": job_out(job) if job else None})

    def on_post_approve(self, req: falcon.Request, resp: falcon.Response, approval_id: str) -> None:
        self._decide(req, resp, approval_id, True)

    def on_post_reject(self, req: falcon.Request, resp: falcon.Response, approval_id: str) -> None:
        self._decide(req, resp, approval_id, False)


class JournalResource:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def _lead(self, req: falcon.Request) -> None:
        p = principal(req)
        try:
            policy.require(p, "lead", "reading the journal")
        except policy.Forbidden as e:
            self.svc.deny(p, "journal.read", str(e))
            raise

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._lead(req)
        from diag.journal.period import parse_since

        since = req.get_param("since")
        ts = req.get_param_as_float("since_ts", min_value=0, max_value=1e11)
        if since is not None:
            if not re.fullmatch(r"[0-9]{1,6}[smhd]", since):
                raise falcon.HTTPBadRequest(description="since: give 30m, 2h or 7d (or since_ts, a Unix time)")
            ts = parse_since(since)
        limit = req.get_param_as_int("limit", min_value=1, max_value=10000) or 500
        recs = self.svc.journal.query(
            since=ts,
            action=_text_param(req, "action", 100),
            actor=_text_param(req, "actor", 200),
            target=_text_param(req, "target", 500),
            limit=limit,
            newest_first=True,
        )
        send(resp, [r.to_dict() for r in recs])

    def on_get_verify(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._lead(req)
        n, problems = self.svc.journal.verify()
        send(
            resp,
            {"ok": not problems, "records": n, "head": self.svc.journal.head(), "problems": [str(p) for p in problems]},
        )


def _text_param(req: falcon.Request, name: str, max_length: int) -> str | None:
    """A query parameter within the length the OpenAPI document gives it (400 beyond)."""
    value = req.get_param(name)
    if value is not None and len(value) > max_length:
        raise falcon.HTTPBadRequest(description=f"{name}: at most {max_length} characters")
    return value


class IncidentsResource:
    """``/api/v1/incidents`` and ``/api/v1/kb``: the incident engine's incidents and knowledge base."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def _inc(self) -> Any:
        if self.svc.incidents is None:
            raise falcon.HTTPNotFound(description="incidents are not configured on this agent (agent.incidents)")
        return self.svc.incidents

    def _id(self, incident_id: str) -> int:
        if not ASCII_INT.fullmatch(incident_id):
            raise falcon.HTTPNotFound(description=f"no incident {incident_id!r}")
        return int(incident_id)

    def _may(self, req: falcon.Request, what: str, iid: int) -> Principal:
        p = principal(req)
        inc = self._inc()
        host = inc.host_of(iid)
        try:
            policy.incident_action(p, what, host, inc.show(iid)["host"])
        except policy.Forbidden as e:
            self.svc.deny(p, what, str(e), f"incident:{iid}")
            raise
        return p

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state = _text_param(req, "state", 20)
        states = None
        if state is not None:
            if state not in _INCIDENT_STATES:
                raise falcon.HTTPBadRequest(description=f"state: one of {', '.join(_INCIDENT_STATES)}")
            states = [state]
        send(
            resp,
            self._inc().incidents(
                states,
                severity=_enum_param(req, "severity", ("info", "warning", "critical")),
                line=_enum_param(req, "line", ("L1", "L2", "L3")),
                host=_text_param(req, "host", 200),
                classification=_enum_param(req, "classification", ("typical", "atypical")),
            ),
        )

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, incident_id: str) -> None:
        send(resp, self._incident_call("show", self._id(incident_id)))

    def _incident_call(self, name: str, *args: Any) -> Any:
        from diag.api.incidents import IncidentError

        try:
            return getattr(self._inc(), name)(*args)
        except IncidentError as e:
            status = {404: falcon.HTTP_404, 409: falcon.HTTP_409}.get(e.status, falcon.HTTP_422)
            raise falcon.HTTPError(status, description=str(e)) from None

    def on_post_acknowledge(self, req: falcon.Request, resp: falcon.Response, incident_id: str) -> None:
        iid = self._id(incident_id)
        self._incident_call("show", iid)
        p = self._may(req, "incident.acknowledge", iid)
        send(resp, self._incident_call("acknowledge", iid, p.actor))

    def on_post_assign(self, req: falcon.Request, resp: falcon.Response, incident_id: str) -> None:
        iid = self._id(incident_id)
        body: schemas.Assign = decode(req, schemas.Assign)
        self._incident_call("show", iid)
        p = self._may(req, "incident.assign", iid)
        send(resp, self._incident_call("assign", iid, body.assignee, p.actor))

    def on_post_note(self, req: falcon.Request, resp: falcon.Response, incident_id: str) -> None:
        iid = self._id(incident_id)
        body: schemas.Note = decode(req, schemas.Note)
        self._incident_call("show", iid)
        p = self._may(req, "incident.note", iid)
        send(resp, self._incident_call("note", iid, body.text, p.actor))

    def on_post_resolve(self, req: falcon.Request, resp: falcon.Response, incident_id: str) -> None:
        iid = self._id(incident_id)
        body: schemas.Decision = decode(req, schemas.Decision) if req.context.body else schemas.Decision()
        self._incident_call("show", iid)
        p = self._may(req, "incident.resolve", iid)
        send(resp, self._incident_call("resolve", iid, p.actor, body.comment))

    def on_get_reports(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = principal(req)
        try:
            policy.require(p, "lead", "reading reports")
        except policy.Forbidden as e:
            self.svc.deny(p, "reports.read", str(e))
            raise
        days = req.get_param_as_float("days", min_value=1, max_value=3660) or 30.0
        send(resp, self._incident_call("report", days, "lead"))

    def on_get_kb(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, self._incident_call("kb"))

    def on_post_kb(self, req: falcon.Request, resp: falcon.Response) -> None:
        body: schemas.Proposal = decode(req, schemas.Proposal)
        if not body.incident.is_integer():
            raise falcon.HTTPNotFound(description=f"no incident {body.incident}")
        p = principal(req)
        try:
            policy.require(p, "engineer", "proposing a KB entry")
        except policy.Forbidden as e:
            self.svc.deny(p, "kb.propose", str(e))
            raise
        entry = self._incident_call(
            "propose", int(body.incident), p.actor, body.title, body.cause, body.instructions, body.typical, body.id
        )
        send(resp, entry, falcon.HTTP_201)

    def on_post_verify(self, req: falcon.Request, resp: falcon.Response, entry_id: str) -> None:
        p = principal(req)
        try:
            policy.require(p, "lead", "verifying a KB entry")
        except policy.Forbidden as e:
            self.svc.deny(p, "kb.verify", str(e), f"kb:{entry_id}")
            raise
        send(resp, self._incident_call("verify_entry", entry_id, p.actor))


_INCIDENT_STATES = ("pending", "open", "clearing", "resolved", "suppressed", "impact", "discarded")


def _enum_param(req: falcon.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = req.get_param(name)
    if value is not None and value not in allowed:
        raise falcon.HTTPBadRequest(description=f"{name}: one of {', '.join(allowed)}")
    return value


class OpenAPIDoc:
    """Built on its first request (0.8 MiB of schemas that most agents never need)."""

    def __init__(self) -> None:
        self.doc: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.doc is None:
            from diag.api import openapi

            self.doc = openapi.document()
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.doc


def _map_errors(app: falcon.App[Any, Any], svc: Service) -> None:
    def forbidden(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
        raise falcon.HTTPForbidden(description=str(ex))

    def not_found(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
        raise falcon.HTTPNotFound(description=str(ex))

    def invalid(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
        raise falcon.HTTPUnprocessableEntity(description=str(ex))

    def conflict(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
        raise falcon.HTTPConflict(description=str(ex))

    app.add_error_handler(policy.Forbidden, forbidden)
    app.add_error_handler(NotFound, not_found)
    app.add_error_handler(Invalid, invalid)
    app.add_error_handler(Conflict, conflict)

    def busy(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
        raise falcon.HTTPServiceUnavailable(description=str(ex), retry_after=5)

    app.add_error_handler(Busy, busy)


def base(svc: Service, middleware: list[Any]) -> falcon.App[Any, Any]:
    app = falcon.App(middleware=[Guard(svc), *middleware])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = True  # "since=" is a bad value, not an absent one
    app.set_error_serializer(_error_serializer)
    _map_errors(app, svc)
    return app


def build(svc: Service) -> falcon.App[Any, Any]:
    """The Falcon app serving the API (the console is another app on the same Service: Jinja2 loads only for it)."""
    app = base(svc, [])
    app.add_route(OPENAPI, OpenAPIDoc())
    app.add_route(f"{API}/whoami", Whoami())
    hosts, pbs, checks, approvals, journal = (
        Hosts(svc),
        Playbooks(svc),
        Checks(svc),
        Approvals(svc),
        JournalResource(svc),
    )
    app.add_route(f"{API}/inventory/hosts", hosts)
    app.add_route(f"{API}/inventory/hosts/{{name}}", hosts, suffix="one")
    app.add_route(f"{API}/playbooks", pbs)
    app.add_route(f"{API}/playbooks/{{name}}", pbs, suffix="one")
    app.add_route(f"{API}/checks", checks)
    app.add_route(f"{API}/checks/{{job_id}}", checks, suffix="one")
    app.add_route(f"{API}/checks/{{job_id}}/result", checks, suffix="result")
    app.add_route(f"{API}/checks/{{job_id}}/events", checks, suffix="events")
    app.add_route(f"{API}/approvals", approvals)
    app.add_route(f"{API}/approvals/{{approval_id}}", approvals, suffix="one")
    app.add_route(f"{API}/approvals/{{approval_id}}/approve", approvals, suffix="approve")
    app.add_route(f"{API}/approvals/{{approval_id}}/reject", approvals, suffix="reject")
    app.add_route(f"{API}/journal", journal)
    app.add_route(f"{API}/journal/verify", journal, suffix="verify")
    inc = IncidentsResource(svc)
    app.add_route(f"{API}/incidents", inc)
    app.add_route(f"{API}/incidents/{{incident_id}}", inc, suffix="one")
    for action in ("acknowledge", "assign", "note", "resolve"):
        app.add_route(f"{API}/incidents/{{incident_id}}/{action}", inc, suffix=action)
    app.add_route(f"{API}/kb", inc, suffix="kb")
    app.add_route(f"{API}/reports", inc, suffix="reports")
    app.add_route(f"{API}/kb/{{entry_id}}/verify", inc, suffix="verify")
    from diag.api.line1 import add_api_routes

    add_api_routes(app, svc)  # /api/v1/line1/...: standard changes (docs/line1.md)
    return app
