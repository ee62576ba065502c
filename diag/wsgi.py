"""The agent's small WSGI toolkit: an exact-path router (``/metrics``, ``/healthz``) and body reading.

The server that runs it is :mod:`diag.httpserver` (bounded: a connection cap, per-client limits, read
deadlines); other front doors (API, webhooks) mount more routes on :class:`App`. A route answers GET/HEAD
unless it names other methods; a POST handler reads its body with :func:`read_body`, which refuses bodies
over the route's limit (413) before reading them, so a client cannot make the agent buffer more than it allows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

Response = tuple[str, list[tuple[str, str]], bytes]
Handler = Callable[[dict[str, Any]], Response]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def json_response(obj: object, status: str = "200 OK") -> Response:
    return status, [("Content-Type", "application/json")], json.dumps(obj).encode()


class HTTPError(Exception):
    """Raised by a handler (or :func:`read_body`) to answer with ``status`` and a JSON ``{"error": reason}``."""

    def __init__(self, status: str, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or []


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, at most ``limit`` bytes: 411 without Content-Length, 413 when it says more."""
    raw = environ.get("CONTENT_LENGTH") or ""
    if not raw.strip() and environ.get("wsgi.input_terminated"):
        raw = "0"  # the server (waitress) framed the request: no length and no chunks means no body
    if not raw.strip().isdigit():
        # wsgiref does not decode chunked bodies, so a length is the only way to know where the body ends.
        raise HTTPError("411 Length Required", "a Content-Length header is required")
    length = int(raw)
    stream = environ["wsgi.input"]
    if length > limit:
        # Read (and drop) a moderate excess so the client, still sending, gets the 413 and not a reset.
        left = length if length <= 8 * limit else 0
        while left > 0:
            chunk = stream.read(min(1 << 16, left))
            if not chunk:
                break
            left -= len(chunk)
        raise HTTPError("413 Content Too Large", f"body of {length} bytes is over the limit of {limit} bytes")
    body = stream.read(length) if length else b""
    if len(body) != length:
        raise HTTPError("400 Bad Request", f"body ended after {len(body)} of {length} bytes")
    return bytes(body)


class App:
    """Routes exact paths to handlers; anything else is a 404 with a JSON reason."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.methods: dict[str, tuple[str, ...]] = {}
        self.mounts: list[tuple[str, WSGIApp]] = []

    def route(self, path: str, handler: Handler, methods: tuple[str, ...] = ("GET", "HEAD")) -> None:
        self.routes[path] = handler
        self.methods[path] = methods

    def mount(self, prefix: str, app: WSGIApp) -> None:
        """Hand every path under ``prefix`` (``/api/``) that has no exact route to another WSGI app (the API)."""
        self.mounts.append((prefix, app))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        handler = self.routes.get(path)
        if handler is None:
            for prefix, wsgi in self.mounts:
                if path.startswith(prefix) or path == prefix.rstrip("/"):
                    return wsgi(environ, start_response)
        if handler is None:
            status, headers, body = json_response({"error": "not found"}, "404 Not Found")
        elif environ.get("REQUEST_METHOD") not in self.methods[path]:
            status, headers, body = json_response({"error": "method not allowed"}, "405 Method Not Allowed")
            headers.append(("Allow", ", ".join(self.methods[path])))
        else:
            try:
                status, headers, body = handler(environ)
            except HTTPError as e:
                status, headers, body = json_response({"error": e.reason}, e.status)
                headers.extend(e.headers)
            except Exception:
                log.exception("handler for %s failed", environ.get("PATH_INFO"))
                status, headers, body = json_response({"error": "internal error"}, "500 Internal Server Error")
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]
