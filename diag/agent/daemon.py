"""The ``diag agent`` daemon: probes on a schedule, ``/metrics`` and ``/healthz`` over HTTP, clean shutdown."""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag import __version__, config, inventory
from diag.probes.runner import ProbeRunner
from diag.wsgi import App, Response, json_response

if TYPE_CHECKING:  # imported when an Agent is built: load_config (validate, diag probe) needs neither
    from diag.agent.network import NetworkParts
    from diag.archive.schedule import ArchiveSchedule
    from diag.exporters.prometheus import Exposition
    from diag.probes.schedule import ProbeScheduler

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before the agent starts its threads.

    glibc gives threads that allocate at the same moment arenas of their own (up to 8 per core), and
    each keeps the memory it once held. The agent has many threads (HTTP requests, scheduler, probe
    workers), so over a day most arenas get created; under the GIL they seldom allocate at once, so two
    arenas cost nothing in speed and keep ~1 MiB of RSS off the agent's 40 MiB budget (measured: 37.9
    against 39.0 MiB after a minute).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if hasattr(libc, "mallopt"):  # glibc; musl and others have no arenas to cap
            libc.mallopt(_M_ARENA_MAX, arenas)
    except OSError as e:
        log.debug("cannot tune malloc: %s", e)


def _trim_malloc() -> None:
    """Give the heap that start-up freed (module compilation, YAML parsing) back to the system (glibc only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError as e:
        log.debug("cannot trim malloc: %s", e)


def _http_limits(cfg: config.AgentConfig) -> Any:
    """``agent.http`` with the server's own body limit set to the largest a route takes (API, webhook).

    waitress reads a body before the app sees it (to disk beyond 512 KiB), and refuses one whose
    Content-Length is over its limit from the header: at the routes' largest limit, an anonymous client can
    make the agent buffer no more than a route would take (64 MiB by default otherwise).
    """
    import dataclasses

    from diag.config.api import ApiSettings
    from diag.httpserver import Limits

    limits = cfg.http if cfg.http is not None else Limits()
    bodies = [(cfg.api or ApiSettings()).max_body_bytes]
    if cfg.alertmanager is not None:
        bodies.append(cfg.alertmanager.max_body_bytes)
    return dataclasses.replace(limits, max_body_bytes=max(bodies) + 1)  # waitress refuses a length == its limit


class Agent:
    """Wires inventory, probes, scheduler, exporter and HTTP together; usable without the CLI."""

    def __init__(self, cfg: config.AgentConfig, inv: inventory.Inventory | None = None) -> None:
        self.config = cfg
        self.inventory = inv
        self.started = time.time()
        from diag.datafiles import check_data_dir, private_dir

        private_dir(cfg.data)
        check_data_dir(cfg.data)  # stores readable by other users (an older diag, a copy) are made private again
        cfg.paths.state.mkdir(parents=True, exist_ok=True)
        from diag.exporters.exposition import CONTENT_TYPE
        from diag.exporters.prometheus import Exposition
        from diag.probes.schedule import ProbeScheduler

        self.runner = ProbeRunner(cfg)
        self.exposition: Exposition = Exposition(self.runner)
        self.scheduler: ProbeScheduler = ProbeScheduler(self.runner)
        self._content_type = CONTENT_TYPE
        self.app = App()
        self.app.route("/metrics", self._metrics)
        self.app.route("/healthz", self._healthz)
        self.app.route("/", self._index)
        self.anchorer: Any = None
        if cfg.journal is not None:  # key the journal now (a wrong key stops the agent) and anchor its head
            from diag.journal import open_journal
            from diag.journal.anchor import Anchorer

            self.anchorer = Anchorer(
                open_journal(cfg.data, cfg.journal.key), cfg.journal.anchor, cfg.journal.anchor_interval
            )
            self.exposition.extra.append(self.anchorer.render)  # diag_journal_head_*
        self.network: NetworkParts | None = None
        polled = cfg.snmp_poll.enabled and any(h.snmp.get("profiles") for h in (inv.hosts.values() if inv else ()))
        if cfg.traps is not None or polled:
            from diag.agent.network import NetworkParts  # trap receiver, SNMP poller: only when configured

            self.network = NetworkParts(cfg, inv, self.runner, self.app)
        from diag.agent.snmp_route import register_routes  # /snmp?target=...&module=... (imports SNMP on first use)

        register_routes(self.app, inv, poller=self.network.poller if self.network else None)
        self.incidents: Any = None
        self.incident_feed: Any = None
        self.incident_journal: Any = None
        if cfg.incidents is not None:  # findings -> incidents -> tickets; imported only when configured
            from diag.agent.incidents import attach

            poller = self.network.poller if self.network is not None else None  # the agent's own, when it polls
            self.incidents, self.incident_feed = attach(cfg.incidents, inv, self.runner, poller)
            self.exposition.extra.append(self.incidents.render)
            from diag.journal import open_journal
            from diag.journal.incidents import attach as journal_incidents  # transitions, deliveries -> journal

            self.incident_journal = journal_incidents(self.incidents, open_journal(cfg.data))
            if self.network is not None:
                self.network.connect(self.incidents.engine)  # trap findings -> incidents
            from diag.archive.hypotheses import register as archive_hypotheses  # "config changed just before"

            archive_hypotheses(cfg.data / "archive", cfg.archive.change_window if cfg.archive else 3600.0)
        self.line1: Any = None
        if cfg.line1 is not None and inv is not None:  # people's tickets (docs/line1.md): only when configured
            from diag.agent.line1 import Line1Watcher

            self.line1 = Line1Watcher(cfg.line1, inv, cfg.data)
        from diag.alertmanager import mount  # POST /api/v1/alertmanager; its parts import only when configured

        self.alerts = mount(self.app, cfg, inv, self.incidents.engine if self.incidents is not None else None)
        if self.alerts is not None:
            self.exposition.extra.append(self.alerts.render)  # diag_alertmanager_*
        self.archive_schedule: ArchiveSchedule | None = None
        if cfg.archive is not None and inv is not None:  # fetches run in a child process: no paramiko here
            from diag.archive.schedule import ArchiveSchedule

            self.archive_schedule = ArchiveSchedule(
                str(Path(inv.file).resolve()), cfg.data.resolve(), cfg.archive.interval, cfg.archive.timeout
            )
            self.exposition.extra.append(self.archive_schedule.render)
        from diag.api import mount as mount_api  # /api/ and /ui: Falcon and the stores load on the first request
        from diag.probes.history import History  # the console's sparklines of this host

        self.history = History()
        self.runner.on_result.append(self.history.on_probe)
        devices = self.network.poller if self.network is not None else getattr(self.incident_feed, "poller", None)
        self.api = mount_api(
            self.app, cfg, inv, self.incidents, self.incident_journal, self.runner, self.history, devices
        )
        from diag.alertmanager import PATH as ALERTMANAGER_PATH
        from diag.api import guard_routes

        # Everything but the scrape endpoints needs a token (/traps...); the webhook has its own credential.
        guard_routes(self.app, self.api, webhooks=(ALERTMANAGER_PATH,))
        host, port = config.parse_listen(cfg.listen)
        from diag.httpserver import BoundedServer

        self.server = BoundedServer(self.app, host, port, _http_limits(cfg))
        self.exposition.extra.append(self.server.stats.render)  # diag_http_connections_*
        self._stop = threading.Event()

    def _metrics(self, environ: dict[str, Any]) -> Response:
        if self.network is not None:
            self.network.refresh()
        headers = [("Content-Type", self._content_type), ("Vary", "Accept-Encoding")]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):  # Prometheus always asks for it
            return "200 OK", [*headers, ("Content-Encoding", "gzip")], self.exposition.render(gzip=True)
        return "200 OK", headers, self.exposition.render()

    def _healthz(self, environ: dict[str, Any]) -> Response:
        states = self.runner.states.values()
        failing = sorted(s.name for s in states if s.runs and not s.success)
        return json_response(
            {
                "status": "ok",
                "version": __version__,
                "uptime_s": round(time.time() - self.started, 1),
                "probes": len(self.runner.probes),
                "failing_probes": failing,
                "errors": {s.name: s.error for s in states if s.error and not s.no_data},
                "no_data": {s.name: s.error for s in states if s.no_data},
                "running_probes": self.runner.busy(),
                **({"alertmanager": self.alerts.status()} if self.alerts is not None else {}),
                **(self.network.status() if self.network is not None else {}),
            }
        )

    def _index(self, environ: dict[str, Any]) -> Response:
        body = f"<html><body><h1>diag {__version__}</h1><a href='/metrics'>metrics</a> <a href='/healthz'>healthz</a>"
        body += " <a href='/ui/'>console</a>"
        return "200 OK", [("Content-Type", "text/html; charset=utf-8")], (body + "</body></html>").encode()

    def start(self) -> None:
        _limit_malloc_arenas()
        # Everything alive now (modules, probes, config) lives as long as the process: the collector
        # need not walk it again on every full collection.
        gc.collect()
        gc.freeze()
        _trim_malloc()
        self.server.start()
        if self.incidents is not None:
            self.incidents.start()
            if self.incident_feed.poller is not None:
                self.incident_feed.poller.start()
        self.scheduler.start()
        if self.anchorer is not None:
            self.anchorer.start()
        if self.archive_schedule is not None:
            self.archive_schedule.start()
        if self.network is not None:
            self.network.start()
        if self.line1 is not None:
            self.line1.start()
        log.info(
            "diag agent %s listening on http://%s:%d/metrics",
            __version__,
            *self.server.server_address,
        )

    def stop(self) -> None:
        log.info("shutting down")
        self.scheduler.shutdown()
        if self.line1 is not None:
            self.line1.stop()
        if self.archive_schedule is not None:
            self.archive_schedule.stop()
        if self.network is not None:
            self.network.stop()
        self.server.stop()
        if self.alerts is not None:
            self.alerts.close()
        self.api.close()
        if self.anchorer is not None:
            self.anchorer.stop()
        self.runner.shutdown()
        if self.incidents is not None:
            if self.incident_feed.poller is not None:
                self.incident_feed.poller.stop()
            self.incidents.close()
        self._stop.set()

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down cleanly."""

        def on_signal(signum: int, frame: object) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        # Wait with a timeout: the kernel may deliver SIGTERM to any thread, and then a main thread blocked
        # in an untimed wait never wakes to run the Python handler (the agent ignored ~1 in 6 early SIGINTs
        # in tests). A timed wait returns to the interpreter, which runs the handler.
        while not self._stop.wait(0.5):
            pass
        self.stop()


def load_config(
    inventory_file: str | None, listen: str | None = None, data: str | None = None
) -> tuple[config.AgentConfig, inventory.Inventory | None]:
    """Validate an inventory file and its ``agent:`` section, with CLI overrides (ConfigError on problems).

    Every problem of the file at once (diag.config.whole); a bad ``--listen`` or ``--data`` is named by its option.
    """
    from diag.config import whole

    loaded = whole.load(inventory_file, {"listen": ("--listen", listen or None), "data": ("--data", data or None)})
    return loaded.config, loaded.inventory


def load(inventory_file: str | None, listen: str | None = None, data: str | None = None) -> Agent:
    """Build an Agent from an inventory file (its ``agent:`` section), with CLI overrides."""
    return Agent(*load_config(inventory_file, listen, data))
