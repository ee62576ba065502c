"""The HTTP side of the receiver: ``POST /api/v1/alertmanager`` on the agent's port.

Order of the checks: the body is read within its size limit (413 beyond it), the credential is checked (401/403),
the content type must be JSON (415), the payload is decoded and validated (400 with the reason), and only then are
the alerts queued (202; 503 when the queue is full, which Alertmanager retries). The handler itself is a plain
function of the decoded message (:meth:`diag.alertmanager.receiver.Receiver.handle`), so another HTTP framework
can call it unchanged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from diag.alertmanager.auth import Credential, Denied
from diag.alertmanager.payload import PayloadError, decode
from diag.wsgi import HTTPError, Response, json_response, read_body

if TYPE_CHECKING:
    from diag.alertmanager.receiver import Receiver

log = logging.getLogger(__name__)


def handler(receiver: Receiver, credential: Credential, max_body: int) -> Any:
    """The WSGI-level handler for the agent's :class:`diag.wsgi.App`."""
    from diag.alertmanager.receiver import Busy

    def handle(environ: dict[str, Any]) -> Response:
        body = read_body(environ, max_body)
        try:
            credential.check(environ.get("HTTP_AUTHORIZATION"))
        except Denied as e:
            receiver.count("notifications", "denied")
            receiver.record(
                "login.failed", "/api/v1/alertmanager", e.status.split(" ", 1)[0], {"reason": str(e)},
                actor=f"remote:{environ.get('REMOTE_ADDR', '?')}",
            )  # fmt: skip
            log.warning(
                "alertmanager receiver: refused a request from %s: %s",
                environ.get("REMOTE_ADDR", "?"),
                e,
                extra={"event": "alertmanager_auth_refused"},
            )
            raise HTTPError(e.status, str(e), [("WWW-Authenticate", e.challenge)] if e.challenge else []) from None
        ctype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            receiver.count("notifications", "bad_payload")
            raise HTTPError("415 Unsupported Media Type", f"Content-Type must be application/json, not {ctype!r}")
        try:
            msg = decode(body)
        except PayloadError as e:
            receiver.count("notifications", "bad_payload")
            log.warning("alertmanager receiver: refused a payload: %s", e, extra={"event": "alertmanager_bad_payload"})
            raise HTTPError("400 Bad Request", str(e)) from None
        try:
            result = receiver.handle(msg)
        except Busy as e:
            raise HTTPError("503 Service Unavailable", str(e), [("Retry-After", "30")]) from None
        return json_response({"status": "accepted", **result}, "202 Accepted")

    return handle


def closed(environ: dict[str, Any]) -> Response:
    """The endpoint when ``agent.alertmanager`` is not configured: it exists, and it refuses."""
    read_body(environ, 1 << 20)  # read what was sent, so the client gets this answer and not a reset
    return json_response(
        {"error": "the Alertmanager receiver is not configured (agent.alertmanager in the inventory)"},
        "403 Forbidden",
    )
