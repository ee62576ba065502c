"""The agent's HTTP server: a small WSGI app (``/metrics``, ``/healthz``) on a threading wsgiref server.

This is the same server prometheus_client's own ``start_http_server`` uses; other front doors (API,
webhooks) mount more routes on :class:`App`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

Response = tuple[str, list[tuple[str, str]], bytes]
Handler = Callable[[dict[str, Any]], Response]
StartResponse = Callable[..., Any]


def json_response(obj: object, status: str = "200 OK") -> Response:
    return status, [("Content-Type", "application/json")], json.dumps(obj).encode()


class App:
    """Routes exact paths to handlers; anything else is a 404 with a JSON reason."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        handler = self.routes.get(environ.get("PATH_INFO", "/"))
        if handler is None:
            status, headers, body = json_response({"error": "not found"}, "404 Not Found")
        elif environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, headers, body = json_response({"error": "method not allowed"}, "405 Method Not Allowed")
        else:
            try:
                status, headers, body = handler(environ)
            except Exception:
                log.exception("handler for %s failed", environ.get("PATH_INFO"))
                status, headers, body = json_response({"error": "internal error"}, "500 Internal Server Error")
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s would flood the log
        log.debug("%s " + format, self.address_string(), *args)


class Server:
    """Serves an App on HOST:PORT in a background thread until ``stop``."""

    def __init__(self, app: App, host: str, port: int) -> None:
        if ":" in host:
            import socket

            _ThreadingServer.address_family = socket.AF_INET6
        self.httpd = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="httpd", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
