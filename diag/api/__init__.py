"""The HTTP API, the web console and their access control, mounted on the agent's port (docs/api.md, docs/console.md).

:func:`mount` only registers ``/api/`` and ``/ui`` on the agent's :class:`diag.wsgi.App`; Falcon, Jinja2 and the
stores are imported and opened on the first request there, so an agent that nobody calls keeps its memory
(the agent's RSS budget is 40 MiB). Exact routes (``/api/v1/alertmanager``) stay with their own handlers.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diag.api.service import Service
    from diag.config import AgentConfig
    from diag.inventory import Inventory
    from diag.wsgi import App, StartResponse, WSGIApp

log = logging.getLogger(__name__)


class LazyApi:
    """The Service (stores, jobs), built on the first request to the API or the console, and shared by both."""

    def __init__(
        self,
        cfg: AgentConfig,
        inv: Inventory | None,
        incidents: Any = None,
        journal_feed: Any = None,
        runner: Any = None,
        history: Any = None,
        poller: Any = None,
    ) -> None:
        self.cfg = cfg
        self.poller = poller  # the agent's SNMP poller: a device's page shows its last poll
        self.runner = runner  # the agent's probe runner: its host and probe states for the console
        self.history = history  # diag.probes.history.History: the host page's sparklines
        self.inv = inv
        self.incidents = incidents  # the agent's IncidentService when agent.incidents is configured
        self.journal_feed = journal_feed  # diag.journal.incidents.IncidentJournal
        self.service: Service | None = None
        self._lock = threading.Lock()
        self.api = _Lazy(self, "diag.api.app")
        self.console = _Lazy(self, "diag.api.console")

    def get_service(self) -> Service:
        with self._lock:
            if self.service is None:
                from diag.api.service import Service

                svc = Service(self.cfg.data, self.inv, self.cfg.api)
                if self.runner is not None:
                    svc.local_host, svc.runner, svc.history = self.runner.hostname, self.runner, self.history
                svc.poller = self.poller
                if self.incidents is not None:
                    from diag.api.incidents import adapter

                    svc.incidents = adapter(
                        self.incidents,
                        svc.data,
                        dict(svc.hosts),
                        svc.journal,
                        svc.settings.known_hosts,
                        self.journal_feed,
                    )
                    if svc.incidents is not None:
                        svc.jobs.sink = svc.incidents.feed  # check results become incidents
                self.service = svc
            return self.service

    def close(self) -> None:
        if self.service is not None:
            self.service.close()


class _Lazy:
    """A WSGI app that imports ``module`` and calls its ``build(service)`` on the first request."""

    def __init__(self, owner: LazyApi, module: str) -> None:
        self.owner = owner
        self.module = module
        self._app: WSGIApp | None = None
        self._lock = threading.Lock()

    def _build(self) -> WSGIApp:
        with self._lock:
            if self._app is None:
                import importlib

                svc = self.owner.get_service()
                self._app = importlib.import_module(self.module).build(svc)
            return self._app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            app = self._build()
        except Exception as e:  # a broken install or data directory: say so, and keep /metrics serving
            log.exception("the API cannot start")
            body = json.dumps({"error": f"the API cannot start: {type(e).__name__}: {e}"}).encode()
            start_response(
                "503 Service Unavailable", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        return app(environ, start_response)


#: Plain agent routes that stay open: Prometheus scrapes them. ``/snmp`` polls only inventory devices (no
#: default community is configured by the agent), so it cannot be pointed at an outside address.
OPEN_PATHS = frozenset({"/metrics", "/healthz", "/", "/snmp", "/snmp/inventory"})


def mount(
    app: App,
    cfg: AgentConfig,
    inv: Inventory | None,
    incidents: Any = None,
    journal_feed: Any = None,
    runner: Any = None,
    history: Any = None,
    poller: Any = None,
) -> LazyApi:
    lazy = LazyApi(cfg, inv, incidents, journal_feed, runner, history, poller)
    app.mount("/api/", lazy.api)
    app.mount("/ui/", lazy.console)  # and /ui itself
    return lazy


def guard_routes(app: App, lazy: LazyApi, webhooks: Iterable[str] = ()) -> list[str]:
    """Put every other plain route (``/traps`` and whatever comes later) behind an API token (any role).

    ``webhooks`` are routes with their own credential (the Alertmanager receiver). Returns the guarded paths.
    """
    guarded = []
    for path, handler in list(app.routes.items()):
        if path in OPEN_PATHS or path in webhooks:
            continue
        app.routes[path] = _TokenRequired(lazy, handler, path)
        guarded.append(path)
    return guarded


class _TokenRequired:
    """A plain route that answers 401 without a valid, unrevoked bearer token (journaled like the API's)."""

    def __init__(self, lazy: LazyApi, handler: Any, path: str) -> None:
        self.lazy, self.handler, self.path = lazy, handler, path

    def __call__(self, environ: dict[str, Any]) -> Any:
        from diag.api.tokens import token_prefix
        from diag.wsgi import json_response

        scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        svc = self.lazy.get_service()
        if token and svc.tokens.authenticate(token) is not None:
            return self.handler(environ)
        if token:
            svc.journal.append(
                f"remote:{environ.get('REMOTE_ADDR', '?')}",
                "login.failed",
                self.path,
                "invalid token",
                {"token": token_prefix(token), "via": "route"},
            )
        status, headers, body = json_response({"error": "a valid bearer token is required"}, "401 Unauthorized")
        return status, [*headers, ("WWW-Authenticate", "Bearer")], body
