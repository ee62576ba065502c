"""The web console (``/ui/...``): server-rendered Jinja2 pages over the same Service as the API.

Log in with an API token: the console keeps a server-side session (diag.api.sessions: an idle timeout that
use and an open live page renew, an absolute cap per role, kept across restarts) whose id travels in a cookie
that is HttpOnly, SameSite=Strict, Path=/ui, and Secure when the request came over HTTPS (also through a
trusted TLS proxy, ``agent.http.trusted_proxy``) or ``agent.api.secure_cookies`` says so. Every form carries
the session's CSRF token, compared in constant time; the login form, which has no session yet, uses a
double-submit cookie; and every POST whose browser names its Origin (or Referer) must come from the console's
own origin. The token is re-checked on every request, so revoking it ends its sessions. A request refused
for want of a session says why in ``X-Diag-Signed-Out`` (expired, idle, revoked, signed-out) so that a live
page can say so. Pages use one small script (live updates over server-sent events); the Content Security
Policy allows scripts and styles from the agent only.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import falcon
import jinja2

from diag import __version__
from diag.api import fmt, hostview, policy
from diag.api.app import ASCII_INT
from diag.api.service import Conflict, Invalid, NotFound, Service
from diag.api.sessions import Session, SessionStore
from diag.api.tokens import Principal, token_prefix

log = logging.getLogger(__name__)

UI = "/ui"
COOKIE = "diag_session"
LOGIN_COOKIE = "diag_login_csrf"
_HERE = Path(__file__).parent
_PUBLIC = (f"{UI}/login", f"{UI}/static/")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with every POST, even to
    # the console itself, and the Origin check (same_origin) could not tell a forged form from ours.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
#: what the login page says when a page was sent to it because its session ended (``?ended=``)
ENDED = {
    "expired": "Signed out: session expired. Sign in again.",
    "idle": "Signed out: session expired (not used for a while). Sign in again.",
    "revoked": "Signed out: the token of this session was revoked.",
}
_INCIDENT_ACTIONS = ("acknowledge", "assign", "note", "resolve", "propose")
_SEV_ORDER = {"critical": 0, "warning": 1, "info": 2}


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def form(req: falcon.Request) -> dict[str, str]:
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise falcon.HTTPUnsupportedMediaType(description="forms must be application/x-www-form-urlencoded")
    try:
        fields = parse_qs((req.context.body or b"").decode(), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as e:
        raise falcon.HTTPBadRequest(description=f"unreadable form: {e}") from None
    return {k: v[0] for k, v in fields.items()}


def same_origin(req: falcon.Request) -> bool:
    """A browser's POST names where its form came from; it must be this console (no Origin/Referer: not a
    browser, and the CSRF token decides alone)."""
    own = f"{req.scheme}://{req.netloc}".lower()
    origin = req.get_header("Origin")
    if origin is not None:
        return origin.strip().lower() == own  # "null" (sandboxed frames, file:) never matches
    referer = req.get_header("Referer")
    if referer is not None:
        r = referer.strip().lower()
        return r == own or r.startswith(own + "/")
    return True


def session_store(svc: Service) -> SessionStore:
    """The console's sessions, made once per Service (the guard and the live stream share them)."""
    if svc.sessions is None:
        st = svc.settings

        def cap(role: str) -> float:
            return st.viewer_session_ttl_s if role == "viewer" else st.session_ttl_s

        svc.sessions = SessionStore(svc.data, st.session_idle_s, cap)
    store: SessionStore = svc.sessions
    return store


def session_state(svc: Service, sid: str) -> tuple[Session | None, Principal | None, str]:
    """A session, its token's principal and "" (renewing it); or why it is not valid (see diag.api.sessions)."""
    return session_store(svc).check(sid, svc.tokens.by_id)


#: where the login page may send a browser afterwards: a console path, never another site ("//evil", "/\\evil")
_NEXT = re.compile(r"/ui(/[A-Za-z0-9._~/%?=&+-]*)?")


def safe_next(value: str | None) -> str:
    v = (value or "").strip()
    return v if _NEXT.fullmatch(v) and "//" not in v else f"{UI}/"


class SessionGuard:
    """For ``/ui/``: the session cookie makes the principal; forms must carry the session's CSRF token."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        session_store(svc)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not (req.path == UI or req.path.startswith(UI + "/")):
            return
        if req.method == "POST" and not same_origin(req):
            self.svc.journal.append(
                f"remote:{req.remote_addr}",
                "access.denied",
                req.path,
                "csrf",
                {
                    "reason": "cross-origin form",
                    "origin": (req.get_header("Origin") or req.get_header("Referer") or "")[:200],
                },
            )
            raise falcon.HTTPForbidden(description="this form was sent from another site")
        if req.path.startswith(_PUBLIC):
            return
        s, p, why = session_state(self.svc, req.cookies.get(COOKIE, ""))
        if s is None or p is None:
            # a page's own live requests (its refresh, its stream, its poll) are told why, to say so on screen; and
            # not redirected: the login form's answer sets a new login cookie, which would make a login form open
            # in another tab of that browser fail ("the login form expired")
            live = req.get_header("X-Diag-Live") is not None or req.path.endswith("/events")
            if req.method == "GET" and not live:
                back = "" if req.path == UI else f"next={quote(req.path, safe='/')}"
                query = "&".join(x for x in (f"ended={why}" if why != "signed-out" else "", back) if x)
                raise falcon.HTTPSeeOther(f"{UI}/login" + (f"?{query}" if query else ""))
            raise falcon.HTTPUnauthorized(
                description="log in first", challenges=["Cookie"], headers={"X-Diag-Signed-Out": why}
            )
        req.context.principal = p
        req.context.session = s
        page = not req.path.endswith(("/events", "/result")) and req.get_header("X-Diag-Live") is None
        if req.method == "GET" and page and self.svc.live is not None:
            req.context.live_id = self.svc.live.current()  # before the page reads its data
        if req.method == "POST":
            sent = form(req).get("csrf", "")
            if not _same(sent, s.csrf):
                self.svc.journal.append(
                    p.actor, "access.denied", req.path, "csrf", {"reason": "missing or wrong CSRF token"}
                )
                raise falcon.HTTPForbidden(description="missing or wrong CSRF token; reload the page")

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, ok: bool) -> None:
        if req.path == UI or req.path.startswith(UI + "/"):
            for k, v in _SECURITY_HEADERS.items():
                if k == "Cache-Control" and req.path.startswith(f"{UI}/static/"):
                    continue
                if k == "Content-Security-Policy" and getattr(resp.context, "own_csp", False):
                    continue
                resp.set_header(k, v)


_left = fmt.left  # the unit tests' name for it
HISTORY_PAGE = 25  # incident history rows per page
JOURNAL_PAGE = 100  # journal records per page


def history_page(events: list[dict[str, Any]], page: int, per: int = HISTORY_PAGE) -> dict[str, Any]:
    """Newest first, runs of the same event (kind and text) folded into one row, ``per`` rows a page."""
    rows: list[dict[str, Any]] = []
    for ev in reversed(events):
        if rows and rows[-1]["kind"] == ev["kind"] and rows[-1]["text"] == ev["text"]:
            rows[-1]["repeat"] += 1
            continue
        rows.append({**ev, "repeat": 1})
    pages = max(1, -(-len(rows) // per))
    page = min(max(1, page), pages)
    return {"events": rows[(page - 1) * per : page * per], "page": page, "pages": pages, "total": len(events)}


class Pages:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
            autoescape=jinja2.select_autoescape(default=True),
        )
        self.env.filters["time"] = fmt.full
        self.env.filters["iso"] = fmt.iso
        self.env.filters["compact"] = fmt.compact
        self.env.filters["ago"] = fmt.ago
        self.env.filters["left"] = fmt.left

    def render(
        self, req: falcon.Request, resp: falcon.Response, name: str, status: str = falcon.HTTP_200, **ctx: Any
    ) -> None:
        p: Principal | None = getattr(req.context, "principal", None)
        s: Session | None = getattr(req.context, "session", None)
        resp.status = status
        resp.content_type = "text/html; charset=utf-8"
        open_incidents = self.open_incidents(req) if p is not None else []
        resp.text = self.env.get_template(name).render(
            me=p,
            csrf=s.csrf if s else "",
            version=__version__,
            path=req.path,
            incidents_enabled=self.svc.incidents is not None,
            counts=self.counts(req) if p is not None else None,
            live_id=getattr(req.context, "live_id", ""),
            soon=_strip(open_incidents),
            **ctx,
        )

    def session_state(self, sid: str) -> tuple[Session | None, Principal | None, str]:
        return session_state(self.svc, sid)

    def secure(self, req: falcon.Request) -> bool:
        """Secure cookies over HTTPS, through a trusted TLS proxy (waitress rewrote the scheme), or when told."""
        return req.scheme == "https" or self.svc.settings.secure_cookies

    def open_incidents(self, req: falcon.Request) -> list[dict[str, Any]]:
        """Open incidents, worst first; read once per request (the header, the strip and the page share them)."""
        cached: list[dict[str, Any]] | None = getattr(req.context, "open_incidents", None)
        if cached is None:
            cached = self.svc.incidents.open_incidents() if self.svc.incidents is not None else []
            req.context.open_incidents = cached
        return cached

    def counts(self, req: falcon.Request | None = None) -> dict[str, int]:
        from diag.api.live import summary

        incs = self.open_incidents(req) if req is not None else (
            self.svc.incidents.open_incidents() if self.svc.incidents is not None else []
        )  # fmt: skip
        return summary(incs, len(self.svc.approvals.list("pending")))

    # ---- login
    def on_get_login(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = secrets.token_urlsafe(24)
        resp.set_cookie(
            LOGIN_COOKIE, token, max_age=600, path=f"{UI}/login", secure=self.secure(req), same_site="Strict"
        )
        ended = req.get_param("ended")
        self.render(req, resp, "login.html", login_csrf=token, error=None, ended=ENDED.get(ended or ""),
                    next=safe_next(req.get_param("next")))  # fmt: skip

    def on_post_login(self, req: falcon.Request, resp: falcon.Response) -> None:
        f = form(req)
        cookie = req.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not _same(f.get("csrf", ""), cookie):
            raise falcon.HTTPForbidden(description="the login form expired; reload it")
        token = f.get("token", "").strip()
        p = self.svc.tokens.authenticate(token) if token else None
        if p is None:
            self.svc.journal.append(
                f"remote:{req.remote_addr}",
                "login.failed",
                UI,
                "invalid token",
                {"token": token_prefix(token), "via": "console"},
            )
            new = secrets.token_urlsafe(24)
            resp.set_cookie(
                LOGIN_COOKIE, new, max_age=600, path=f"{UI}/login", secure=self.secure(req), same_site="Strict"
            )
            self.render(req, resp, "login.html", falcon.HTTP_401, login_csrf=new, error="Invalid or revoked token.",
                        ended=None, next=safe_next(f.get("next")))  # fmt: skip
            return
        store = session_store(self.svc)
        sid, _ = store.new(p.token_id)
        resp.set_cookie(
            COOKIE,
            sid,
            # the server ends the session (at its cap, or sooner when idle); the cookie outlives it by an hour so
            # that a page asking after the end is told why ("expired") rather than only "signed out"
            max_age=int(store.cap(p.role)) + 3600,
            path=UI,
            secure=self.secure(req),
            http_only=True,
            same_site="Strict",
        )
        resp.unset_cookie(LOGIN_COOKIE, path=f"{UI}/login")
        self.svc.journal.append(p.actor, "login", UI, "ok", {"via": "console", "remote": req.remote_addr})
        raise falcon.HTTPSeeOther(safe_next(f.get("next")))

    def on_post_logout(self, req: falcon.Request, resp: falcon.Response) -> None:
        session_store(self.svc).drop(req.cookies.get(COOKIE, ""))
        resp.unset_cookie(COOKIE, path=UI)
        raise falcon.HTTPSeeOther(f"{UI}/login")

    # ---- hosts
    def on_get_index(self, req: falcon.Request, resp: falcon.Response) -> None:
        rows = hostview.overview(self.svc, self.open_incidents(req))
        self.render(req, resp, "hosts.html", rows=rows, host_counts=hostview.counts(rows))

    # ---- checks
    def on_get_checks(self, req: falcon.Request, resp: falcon.Response) -> None:
        from diag.remote import playbook as pbmod

        groups = sorted({g for h in self.svc.hosts.values() for g in h.groups})
        self.render(
            req,
            resp,
            "checks.html",
            playbooks=sorted(pbmod.available()),
            hosts=sorted(self.svc.hosts),
            groups=groups,
            jobs=self.svc.jobs.recent()[:50],
            error=None,
        )

    def on_post_checks(self, req: falcon.Request, resp: falcon.Response) -> None:
        f = form(req)
        targets = [t for t in f.get("targets", "").replace(",", " ").split() if t]
        variables: dict[str, Any] = {}
        for line in f.get("vars", "").splitlines():
            if line.strip():
                k, sep, v = line.partition("=")
                if not sep:
                    return self._check_error(req, resp, f"variable line {line.strip()!r}: write NAME=VALUE")
                variables[k.strip()] = v.strip()
        if not targets:
            return self._check_error(req, resp, "name at least one host or group")
        try:
            job, approval = self.svc.start_check(
                req.context.principal, f.get("playbook", ""), targets, variables, f.get("read_only") == "on"
            )
        except policy.Forbidden as e:
            return self._check_error(req, resp, str(e), falcon.HTTP_403)
        except (Invalid, NotFound) as e:
            return self._check_error(req, resp, str(e), falcon.HTTP_422)
        if job is not None:
            raise falcon.HTTPSeeOther(f"{UI}/checks/{job.id}")
        assert approval is not None
        raise falcon.HTTPSeeOther(f"{UI}/approvals#{approval.id}")

    def _check_error(self, req: falcon.Request, resp: falcon.Response, msg: str, status: str = falcon.HTTP_400) -> None:
        from diag.remote import playbook as pbmod

        groups = sorted({g for h in self.svc.hosts.values() for g in h.groups})
        self.render(
            req,
            resp,
            "checks.html",
            status,
            playbooks=sorted(pbmod.available()),
            hosts=sorted(self.svc.hosts),
            groups=groups,
            jobs=self.svc.jobs.recent()[:50],
            error=msg,
        )

    def on_get_job(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.svc.jobs.get(job_id)
        if job is None:
            raise falcon.HTTPNotFound(description="no such check job")
        self.render(req, resp, "job.html", job=job.summary(), report=job.report, targets=_targets(job))

    def on_get_job_events(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.svc.jobs.get(job_id)
        if job is None:
            raise falcon.HTTPNotFound(description="no such check job")
        last = req.get_header("Last-Event-ID") or ""
        resp.content_type = "text/event-stream"
        resp.cache_control = ["no-cache"]
        resp.stream = self.svc.stream(job, int(last) if ASCII_INT.fullmatch(last) else 0, running=True)

    def on_get_job_result(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        from diag.api.app import send

        job = self.svc.jobs.get(job_id)
        if job is None:
            raise falcon.HTTPNotFound(description="no such check job")
        send(
            resp,
            job.report if job.report is not None else job.summary(),
            falcon.HTTP_200 if job.report else falcon.HTTP_202,
        )

    # ---- approvals
    def on_get_approvals(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.render(req, resp, "approvals.html", approvals=self.svc.list_approvals(), error=None)

    def _decide(self, req: falcon.Request, resp: falcon.Response, approval_id: str, approve: bool) -> None:
        f = form(req)
        try:
            _, job = self.svc.decide(req.context.principal, approval_id, approve, f.get("comment", "")[:2000])
        except policy.Forbidden as e:
            return self.render(
                req, resp, "approvals.html", falcon.HTTP_403, approvals=self.svc.list_approvals(), error=str(e)
            )
        except Invalid as e:
            return self.render(
                req, resp, "approvals.html", falcon.HTTP_422, approvals=self.svc.list_approvals(), error=str(e)
            )
        except (NotFound, Conflict) as e:
            return self.render(
                req, resp, "approvals.html", falcon.HTTP_409, approvals=self.svc.list_approvals(), error=str(e)
            )
        raise falcon.HTTPSeeOther(f"{UI}/checks/{job.id}" if job else f"{UI}/approvals")

    def on_post_approve(self, req: falcon.Request, resp: falcon.Response, approval_id: str) -> None:
        self._decide(req, resp, approval_id, True)

    def on_post_reject(self, req: falcon.Request, resp: falcon.Response, approval_id: str) -> None:
        self._decide(req, resp, approval_id, False)

    # ---- incidents and knowledge base
    def _incidents(self, req: falcon.Request, resp: falcon.Response) -> Any:
        if self.svc.incidents is None:
            self.render(req, resp, "error.html", falcon.HTTP_404, message="Incidents are not configured on this agent.")
            return None
        return self.svc.incidents

    def on_get_incidents(self, req: falcon.Request, resp: falcon.Response) -> None:
        inc = self._incidents(req, resp)
        if inc is None:
            return
        state = req.get_param("state") or None
        states = [state] if state in ("resolved", "pending", "suppressed", "impact", "discarded") else None
        filters = {k: req.get_param(k) for k in ("severity", "line", "host")}
        if states is None and not any(filters.values()):
            rows = self.open_incidents(req)
        else:
            rows = inc.incidents(states, **filters)
        shown = ", ".join(f"{k} {v}" for k, v in filters.items() if v)
        self.render(req, resp, "incidents.html", incidents=rows, state=state or "open", filters=shown)

    def on_get_incident(self, req: falcon.Request, resp: falcon.Response, incident_id: str) -> None:
        from diag.api.incidents import IncidentError

        inc = self._incidents(req, resp)
        if inc is None:
            return
        try:
            d = inc.show(int(incident_id)) if ASCII_INT.fullmatch(incident_id) else None
        except IncidentError:
            d = None
        if d is None:
            self.render(req, resp, "error.html", falcon.HTTP_404, message=f"No incident {incident_id}.")
            return
        page = req.get_param_as_int("history", min_value=1, max_value=100000) or 1
        people = sorted(t.name for t in self.svc.tokens.list() if t.revoked is None)
        self.render(req, resp, "incident.html", inc=d, error=req.get_param("error"),
                    history=history_page(d["events"], page), people=people)  # fmt: skip

    def on_post_incident_action(
        self, req: falcon.Request, resp: falcon.Response, incident_id: str, action: str
    ) -> None:

        from diag.api.incidents import IncidentError

        inc = self._incidents(req, resp)
        if inc is None:
            return
        if not ASCII_INT.fullmatch(incident_id) or action not in _INCIDENT_ACTIONS:
            raise falcon.HTTPNotFound(description="no such incident action")
        iid, f, p = int(incident_id), form(req), req.context.principal
        try:
            if action == "propose":
                policy.require(p, "engineer", "proposing a KB entry")
                inc.propose(iid, p.actor, f.get("title", "")[:200], f.get("cause", "")[:2000],
                            f.get("instructions", "")[:4000], f.get("typical") == "on", "")  # fmt: skip
                raise falcon.HTTPSeeOther(f"{UI}/kb")
            policy.incident_action(p, f"incident.{action}", inc.host_of(iid), inc.show(iid)["host"])
            if action == "acknowledge":
                inc.acknowledge(iid, p.actor)
            elif action == "assign":
                inc.assign(iid, f.get("assignee", "").strip()[:100] or p.name, p.actor)
            elif action == "note" and f.get("text", "").strip():
                inc.note(iid, f["text"].strip()[:4000], p.actor)
            elif action == "resolve":
                inc.resolve(iid, p.actor, f.get("comment", "")[:2000])
        except (policy.Forbidden, IncidentError) as e:
            if isinstance(e, policy.Forbidden):
                self.svc.deny(p, f"incident.{action}", str(e), f"incident:{iid}")
            raise falcon.HTTPSeeOther(f"{UI}/incidents/{iid}?error={quote(str(e))}") from None
        raise falcon.HTTPSeeOther(f"{UI}/incidents/{iid}")

    def on_get_kb(self, req: falcon.Request, resp: falcon.Response) -> None:
        from diag.api.incidents import IncidentError

        inc = self._incidents(req, resp)
        if inc is None:
            return
        try:
            entries, error = inc.kb(), req.get_param("error")
        except IncidentError as e:
            entries, error = [], str(e)
        self.render(req, resp, "kb.html", entries=entries, error=error)

    def on_post_kb_verify(self, req: falcon.Request, resp: falcon.Response, entry_id: str) -> None:

        from diag.api.incidents import IncidentError

        inc = self._incidents(req, resp)
        if inc is None:
            return
        p = req.context.principal
        try:
            policy.require(p, "lead", "verifying a KB entry")
            inc.verify_entry(entry_id, p.actor)
        except (policy.Forbidden, IncidentError) as e:
            raise falcon.HTTPSeeOther(f"{UI}/kb?error={quote(str(e))}") from None
        raise falcon.HTTPSeeOther(f"{UI}/kb")

    # ---- journal
    def on_get_journal(self, req: falcon.Request, resp: falcon.Response) -> None:
        p: Principal = req.context.principal
        if not p.at_least("lead"):
            self.svc.deny(p, "journal.read", "the journal is for leads")
            return self.render(
                req,
                resp,
                "error.html",
                falcon.HTTP_403,
                message=f"The journal needs the lead role; {p.name} is a {p.role}.",
            )
        action = (req.get_param("action") or "").strip() or None
        page = req.get_param_as_int("page", min_value=1, max_value=1000) or 1
        # one page more than shown: whether there is an older page
        recs = self.svc.journal.query(action=action, limit=page * JOURNAL_PAGE + 1, newest_first=True)
        n, problems = self.svc.journal.verify()
        self.render(
            req,
            resp,
            "journal.html",
            records=recs[(page - 1) * JOURNAL_PAGE : page * JOURNAL_PAGE],
            page=page,
            older=len(recs) > page * JOURNAL_PAGE,
            action=action or "",
            chain_ok=not problems,
            chain_n=n,
            problems=problems,
        )


STRIP_ITEMS = 5


def _strip(incidents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The "breaching soon" strip: incidents about to breach first (the ones still worth racing), then breached."""
    soon = sorted((i for i in incidents if i.get("sla_level") == "soon"), key=lambda i: i["sla_left_s"])
    late = sorted((i for i in incidents if i.get("sla_level") == "breached"), key=lambda i: -i["sla_left_s"])
    if not soon and not late:
        return None
    return {"items": (soon + late)[:STRIP_ITEMS], "soon": len(soon), "breached": len(late)}


def _targets(job: Any) -> list[dict[str, Any]]:
    """Every host of a job with its phase (queued, running, done), time so far or taken, and outcome."""
    now = time.time()
    done = {e.data["host"]: e.data for e in job.events if e.name == "host"}
    out = []
    for h in job.hosts:
        r = done.get(h)
        started = job.started.get(h)
        if r is not None:
            out.append({"host": h, "phase": "done", "elapsed": r.get("duration_s"), "status": r.get("status"),
                        "findings": len(r.get("findings", [])), "worst": r.get("worst")})  # fmt: skip
        elif started is not None:
            out.append({"host": h, "phase": "running", "elapsed": now - started, "status": None})
        else:
            out.append({"host": h, "phase": "skipped" if job.state == "done" else "queued", "elapsed": None,
                        "status": None})  # fmt: skip
    return out


class Static:
    TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        path = _HERE / "static" / name
        if "/" in name or name.startswith(".") or path.suffix not in self.TYPES or not path.is_file():
            raise falcon.HTTPNotFound(description="no such file")
        resp.content_type = self.TYPES[path.suffix]
        resp.cache_control = ["max-age=3600"]
        resp.data = path.read_bytes()


def build(svc: Service) -> falcon.App[Any, Any]:
    """The console's Falcon app: the API's error mapping and body limit, plus the session guard."""
    from diag.api.app import base
    from diag.api.console_live import LivePages

    app = base(svc, [SessionGuard(svc)])
    pages = Pages(svc)
    app.add_route(f"{UI}/login", pages, suffix="login")
    app.add_route(f"{UI}/logout", pages, suffix="logout")
    app.add_route(UI, pages, suffix="index")
    app.add_route(f"{UI}/checks", pages, suffix="checks")
    app.add_route(f"{UI}/checks/{{job_id}}", pages, suffix="job")
    app.add_route(f"{UI}/checks/{{job_id}}/events", pages, suffix="job_events")
    app.add_route(f"{UI}/checks/{{job_id}}/result", pages, suffix="job_result")
    app.add_route(f"{UI}/approvals", pages, suffix="approvals")
    app.add_route(f"{UI}/approvals/{{approval_id}}/approve", pages, suffix="approve")
    app.add_route(f"{UI}/approvals/{{approval_id}}/reject", pages, suffix="reject")
    app.add_route(f"{UI}/journal", pages, suffix="journal")
    app.add_route(f"{UI}/incidents", pages, suffix="incidents")
    app.add_route(f"{UI}/incidents/{{incident_id}}", pages, suffix="incident")
    app.add_route(f"{UI}/incidents/{{incident_id}}/{{action}}", pages, suffix="incident_action")
    app.add_route(f"{UI}/kb", pages, suffix="kb")
    live = LivePages(pages)
    app.add_route(f"{UI}/reports", live, suffix="reports")
    app.add_route(f"{UI}/events", live, suffix="events")
    app.add_route(f"{UI}/wall", live, suffix="wall")
    app.add_route(f"{UI}/hosts/{{name}}", live, suffix="host")
    app.add_route(f"{UI}/kb/{{entry_id}}/verify", pages, suffix="kb_verify")
    app.add_route(f"{UI}/static/{{name}}", Static())
    from diag.api.line1 import add_console_routes

    add_console_routes(app, pages)  # /ui/line1: standard changes (docs/line1.md)
    return app
