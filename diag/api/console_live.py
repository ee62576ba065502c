"""The NOC side of the console: the live event stream, the wallboard, a host's page and Reports in the layout.

``/ui/events`` streams what changed (diag.api.live); ``/ui/wall`` is a read-only board in large type for a
viewer token on a NOC screen; ``/ui/hosts/NAME`` puts together what the agent knows about one host; and
``/ui/reports`` shows ``diag report``'s figures inside the console, its pygal charts as SVG images.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import falcon

from diag.api import hostview
from diag.api.live import LiveFeed

if TYPE_CHECKING:
    from diag.api.tokens import Principal

#: the Reports page's own policy: the console's, plus images from data: URIs (the charts). An SVG shown as an
#: image runs no script and loads nothing, so its inline style is harmless there, and no inline script is allowed
REPORTS_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
REPORT_TTL_S = 60.0
KINDS = {
    "agent": "this agent's own host (probes)",
    "server": "inventory host (SSH)",
    "device": "network device (SNMP, SSH)",
    "other": "named by an incident (not in the inventory)",
}


class LivePages:
    """Routes of the console (diag.api.console.Pages renders; typed Any here: console imports this module)."""

    def __init__(self, pages: Any) -> None:
        self.pages = pages
        self.svc = pages.svc
        self.live = LiveFeed(self.svc)
        self.svc.live = self.live  # the session guard stamps each page with the state's id (LiveFeed.current)
        self._reports: dict[float, tuple[dict[str, Any], list[tuple[str, str, str]], float]] = {}
        self._lock = threading.Lock()
        self.svc.jobs.on_change = self.live.poke
        if self.svc.incidents is not None:
            self.svc.incidents.engine.on_change.append(self.live.poke)

    # ---- the live stream
    def on_get_events(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The stream; or, with ``?poll=ID`` (a page whose stream was refused), one JSON answer at once.

        A page that reconnects names the last event it saw (``Last-Event-ID``, or ``?last=`` when it opened a new
        stream itself after a silent one) and is sent what moved since, or told to resync after a restart."""
        from diag.api.live import parse_id

        poll = req.get_param("poll")
        if poll is not None:
            from diag.api.app import send

            send(resp, {**self.live.poll(parse_id(poll)), "counts": self.pages.counts(req)})
            return
        sid = req.cookies.get("diag_session", "")
        after = parse_id(req.get_header("Last-Event-ID") or req.get_param("last"))

        def alive() -> str:  # also renews the session: a page on screen keeps it (within its cap)
            why: str = self.pages.session_state(sid)[2]
            return why

        resp.content_type = "text/event-stream"
        resp.cache_control = ["no-cache"]
        # a ping at least every 5 s (and 4 within the idle timeout): a page that was left frees its slot
        # (max_streams) within 5 s, and a page sees a dead stream within a few pings
        keepalive = max(0.5, min(5.0, self.svc.settings.session_idle_s / 4))
        counts = lambda: self.pages.counts(None)  # noqa: E731
        owner = hashlib.sha256(sid.encode()).hexdigest()[:16]
        resp.stream = self.svc.held(self.live.follow(counts, alive, keepalive=keepalive, after=after), owner=owner)

    # ---- wallboard
    def on_get_wall(self, req: falcon.Request, resp: falcon.Response) -> None:
        incidents = self.pages.open_incidents(req)
        rows = hostview.overview(self.svc, incidents)
        self.pages.render(
            req, resp, "wall.html", incidents=incidents, host_counts=hostview.counts(rows), now=time.time()
        )

    # ---- one host
    def on_get_host(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        from diag.remote import facts as factsmod
        from diag.remote import playbook as pbmod

        open_incs = self.pages.open_incidents(req)
        if not hostview.knows(self.svc, name, open_incs):
            self.pages.render(req, resp, "error.html", falcon.HTTP_404, message=f"This agent knows no host {name!r}.")
            return
        rows = [r for r in hostview.overview(self.svc, [i for i in open_incs if i["host"] == name]) if r.name == name]
        row = rows[0] if rows else hostview.HostRow(name, hostview.kind_of(self.svc, name))
        host = self.svc.hosts.get(name)
        recent: list[dict[str, Any]] = []
        if self.svc.incidents is not None:
            recent = self.svc.incidents.incidents(["resolved"], host=name, limit=10)
        metrics, probes = [], []
        if row.kind == "agent" and self.svc.runner is not None:
            from diag.probes.history import SERIES

            probes = sorted(self.svc.runner.states.values(), key=lambda s: s.name)
            for s in SERIES:
                pts = self.svc.history.points(s.key) if self.svc.history is not None else []
                if pts:
                    line = hostview.sparkline(pts)
                    metrics.append({"title": s.title, "unit": s.unit, "last": pts[-1][1], "line": line})
        snmp = None
        if self.svc.poller is not None and name in getattr(self.svc.poller, "results", {}):
            snmp = hostview.snmp_summary(self.svc.poller.results[name])
        grafana = self.svc.settings.grafana_url
        doc = factsmod.latest(self.svc.data, name)
        p: Principal = req.context.principal
        can_check = host is not None and p.at_least("engineer")
        self.pages.render(
            req,
            resp,
            "host.html",
            row=row,
            host=host,
            kinds=KINDS,
            open_incidents=row.incidents,
            recent_incidents=recent,
            metrics=metrics,
            probes=probes,
            snmp=snmp,
            snmp_interval=getattr(self.svc.poller, "interval", None),
            grafana=grafana.replace("{host}", quote(name, safe="")) if grafana else None,
            runs=hostview.check_runs(self.svc, name),
            facts=doc,
            facts_summary={k: v for k, v in factsmod.summary(doc).items() if v not in (None, "") and k != "host"}
            if doc
            else {},
            can_check=can_check,
            playbooks=sorted(pbmod.available()) if can_check else [],
        )

    # ---- reports
    def on_get_reports(self, req: falcon.Request, resp: falcon.Response) -> None:
        from diag.reports import render

        inc = self.pages._incidents(req, resp)
        if inc is None:
            return
        p: Principal = req.context.principal
        if not p.at_least("lead"):
            self.svc.deny(p, "reports.read", "reports are for leads")
            self.pages.render(
                req, resp, "error.html", falcon.HTTP_403, message=f"Reports need the lead role; {p.name} is a {p.role}."
            )
            return
        days = req.get_param_as_float("days", min_value=1, max_value=3660) or 30.0
        report, charts, at = self._report(inc, days)
        self.pages.render(
            req, resp, "reports.html", r=report, kpis=render.kpis(report), charts=charts,
            sections=render.sections(report), computed=at,
        )  # fmt: skip
        resp.set_header("Content-Security-Policy", REPORTS_CSP)
        resp.context.own_csp = True

    def _report(self, inc: Any, days: float) -> tuple[dict[str, Any], list[tuple[str, str, str]], float]:
        """The figures and charts of a period, kept for :data:`REPORT_TTL_S`: computing them over the whole
        incident store and drawing five charts takes ~100 ms, and a 30-day report does not move in a minute."""
        from diag.reports import render

        now = time.time()
        with self._lock:
            hit = self._reports.get(days)
            if hit is not None and now - hit[2] < REPORT_TTL_S:
                return hit
        report = inc.report(days, "lead")
        titles = {
            "by_cause": "Incidents by cause",
            "by_line_group": "Incidents by line and group",
            "typical": "Typical against atypical incidents",
            "sla": "SLA compliance by line",
            "forecast": "Incidents opened per day, and forecast",
        }
        charts = [
            (k, titles.get(k, k), "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode())
            for k, svg in render.charts(report).items()
        ]
        with self._lock:
            if len(self._reports) > 20:
                self._reports.clear()
            self._reports[days] = (report, charts, now)
        return report, charts, now
