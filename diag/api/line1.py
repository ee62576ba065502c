"""Line-1 automation over HTTP: the catalogue of standard changes (read), each application with its evidence
before and after, and a lead's switch to pause an entry; for the API (``/api/v1/line1/...``) and the console
(``/ui/line1``). The operations are written once here and journaled; both front ends are thin layers over them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import falcon
import msgspec

from diag.api import policy, schemas
from diag.api.service import NotFound, Service

if TYPE_CHECKING:
    from diag.api.tokens import Principal
    from diag.line1.catalogue import Catalogue

API = "/api/v1/line1"
UI = "/ui/line1"


class Line1Ops:
    """Reads the catalogue of ``agent.line1`` and the ledger of the agent's data directory."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def catalogue(self) -> Catalogue:
        from diag.line1 import settings as line1_settings
        from diag.line1.catalogue import Catalogue

        inv = self.svc.inv
        raw = inv.agent.get("line1") if inv is not None else None
        if raw is None:
            return Catalogue.load()
        s = line1_settings.from_doc(inv.doc if inv is not None else None, raw)
        return Catalogue.load(s.changes, shipped=s.shipped_changes)

    def _ledger(self) -> Any:
        from diag.line1.ledger import Ledger

        return Ledger(Path(self.svc.data))

    def changes(self) -> list[dict[str, Any]]:
        led = self._ledger()
        try:
            paused = led.paused()
            return [{**c.summary(), "paused": paused.get(c.id)} for c in self.catalogue().changes.values()]
        finally:
            led.close()

    def applications(self, change: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        led = self._ledger()
        try:
            rows: list[dict[str, Any]] = led.applications(change, limit)
            return rows
        finally:
            led.close()

    def application(self, app_id: int) -> dict[str, Any]:
        led = self._ledger()
        try:
            a: dict[str, Any] | None = led.application(app_id)
        finally:
            led.close()
        if a is None:
            raise NotFound(f"no standard change application {app_id}")
        return a

    def switch(self, p: Principal, change_id: str, pause: bool, reason: str = "") -> dict[str, Any]:
        """A lead pauses (or resumes) a catalogue entry; journaled, refused for anyone else."""
        what = "pausing a standard change" if pause else "resuming a standard change"
        try:
            policy.require(p, "lead", what)
        except policy.Forbidden as e:
            self.svc.deny(p, "line1.pause" if pause else "line1.resume", str(e), change_id)
            raise
        if self.catalogue().get(change_id) is None:
            raise NotFound(f"no standard change {change_id!r} in the catalogue")
        led = self._ledger()
        try:
            if pause:
                led.pause(change_id, p.actor, reason)
            else:
                led.resume(change_id)
            paused = led.paused().get(change_id)
        finally:
            led.close()
        self.svc.journal.append(p.actor, "change.pause" if pause else "change.resume", change_id, "ok",
                                {"reason": reason, "via": "api"})
        return {"id": change_id, "paused": paused}


def _ops(svc: Service) -> Line1Ops:
    return Line1Ops(svc)


# diag.api.app imports this module to mount the routes, so its helpers are not imported back (no cycle); these
# behave the same: JSON out, 415 for a non-JSON body, 400 for an invalid one.
_ID = re.compile(r"[0-9]{1,18}")
_encoder = msgspec.json.Encoder(enc_hook=str)


def _send(resp: falcon.Response, obj: Any) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encoder.encode(obj)


def _decision(req: falcon.Request) -> schemas.Decision:
    if not req.context.body:
        return schemas.Decision()
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise falcon.HTTPUnsupportedMediaType(description=f"Content-Type must be application/json, not {ctype!r}")
    try:
        return msgspec.json.decode(req.context.body, type=schemas.Decision)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise falcon.HTTPBadRequest(description=f"invalid body: {e}") from None


class Line1Resource:
    """``/api/v1/line1/changes``, ``.../changes/{id}/pause|resume``, ``/api/v1/line1/applications[/{id}]``."""

    def __init__(self, svc: Service) -> None:
        self.ops = _ops(svc)

    def on_get_changes(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, self.ops.changes())

    def on_get_applications(self, req: falcon.Request, resp: falcon.Response) -> None:
        change = req.get_param("change")
        if change is not None and len(change) > 100:
            raise falcon.HTTPBadRequest(description="change: at most 100 characters")
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 100
        _send(resp, self.ops.applications(change, limit))

    def on_get_application(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        if not _ID.fullmatch(app_id):
            raise falcon.HTTPNotFound(description=f"no standard change application {app_id[:40]!r}")
        _send(resp, self.ops.application(int(app_id)))

    def _switch(self, req: falcon.Request, resp: falcon.Response, change_id: str, pause: bool) -> None:
        body = _decision(req)
        _send(resp, self.ops.switch(req.context.principal, change_id, pause, body.comment))

    def on_post_pause(self, req: falcon.Request, resp: falcon.Response, change_id: str) -> None:
        self._switch(req, resp, change_id, True)

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, change_id: str) -> None:
        self._switch(req, resp, change_id, False)


def add_api_routes(app: falcon.App[Any, Any], svc: Service) -> None:
    r = Line1Resource(svc)
    app.add_route(f"{API}/changes", r, suffix="changes")
    app.add_route(f"{API}/changes/{{change_id}}/pause", r, suffix="pause")
    app.add_route(f"{API}/changes/{{change_id}}/resume", r, suffix="resume")
    app.add_route(f"{API}/applications", r, suffix="applications")
    app.add_route(f"{API}/applications/{{app_id}}", r, suffix="application")


class Line1Pages:
    """``/ui/line1``: the catalogue, recent applications, one application's evidence, and the pause switch."""

    def __init__(self, pages: Any) -> None:
        self.pages = pages
        self.ops = _ops(pages.svc)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.pages.render(req, resp, "line1.html", changes=self.ops.changes(), apps=self.ops.applications(limit=50),
                          error=req.get_param("error"))

    def on_get_application(self, req: falcon.Request, resp: falcon.Response, app_id: str) -> None:
        if not _ID.fullmatch(app_id):
            raise falcon.HTTPNotFound(description="no such application")
        try:
            a = self.ops.application(int(app_id))
        except NotFound:
            self.pages.render(req, resp, "error.html", falcon.HTTP_404, message=f"No application {app_id}.")
            return
        self.pages.render(req, resp, "line1_application.html", a=a)

    def on_post_switch(self, req: falcon.Request, resp: falcon.Response, change_id: str, action: str) -> None:
        if action not in ("pause", "resume"):
            raise falcon.HTTPNotFound(description="no such action")
        form = falcon.uri.parse_query_string((req.context.body or b"").decode("utf-8", "replace"))
        reason = str(form.get("reason") or "")[:500]
        try:
            self.ops.switch(req.context.principal, change_id, action == "pause", reason)
        except (policy.Forbidden, NotFound) as e:
            raise falcon.HTTPSeeOther(f"{UI}?error={quote(str(e))}") from None
        raise falcon.HTTPSeeOther(UI)


def add_console_routes(app: falcon.App[Any, Any], pages: Any) -> None:
    p = Line1Pages(pages)
    app.add_route(UI, p)
    app.add_route(f"{UI}/applications/{{app_id}}", p, suffix="application")
    app.add_route(f"{UI}/changes/{{change_id}}/{{action}}", p, suffix="switch")
