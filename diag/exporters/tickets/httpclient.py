"""The HTTP side of the REST ticket backends (Redmine, RT, webhook): httpx with timeouts and one error mapping.

Retryable (:class:`TicketUnavailable`): connection refused or reset, DNS failure, timeouts, HTTP 408, 429 and 5xx.
Permanent (:class:`TicketRejected`): every other 3xx/4xx, with the reason the server gave (a backend passes a
function that digs it out of the body). Messages name the backend and the request, never a header (the keys
travel in headers), and are masked of every revealed secret in case a server echoes one back.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from diag.exporters.tickets.base import TicketRejected, TicketUnavailable
from diag.secrets import mask

# httpx logs every request's full URL at INFO; a webhook URL may carry a token in its path or query, and the
# backends log what they did themselves.
logging.getLogger("httpx").setLevel(logging.WARNING)

RETRYABLE_STATUS = frozenset({408, 425, 429})
REASON_LIMIT = 300  # a server's error page is not a log line


def _default_reason(response: httpx.Response) -> str:
    text = response.text.strip()
    return " ".join(text.split())[:REASON_LIMIT]


class HttpClient:
    """A keep-alive client for one base URL whose failures are ticket errors."""

    def __init__(
        self,
        backend: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        ca_file: str | None = None,
        verify_tls: bool = True,
        auth: httpx.Auth | tuple[str, str] | None = None,
        reason: Callable[[httpx.Response], str] = _default_reason,
    ) -> None:
        self.backend = backend
        self.timeout = timeout
        self._reason = reason
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else verify_tls
        # trust_env=False: no proxy, netrc credentials or CA bundle from the environment change where a
        # ticket (and its key) goes; the config says everything.
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=dict(headers or {}),
            timeout=timeout,
            verify=verify,
            auth=auth,
            follow_redirects=False,
            trust_env=False,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        ok: tuple[int, ...] = (200, 201, 204),
        **kw: Any,
    ) -> httpx.Response:
        """Send one request; a response whose status is in ``ok`` is returned, anything else raises."""
        shown = path.split("?", 1)[0]  # a query string may hold a token
        where = f"{self.backend} {what} ({method} {shown})"
        try:
            response = self._client.request(method, path, **kw)
        except httpx.TimeoutException:
            raise TicketUnavailable(f"{where}: no answer within {self.timeout:g} s") from None
        except httpx.TransportError as e:  # refused, reset, DNS, TLS handshake: the system is not reachable now
            detail = str(e) or type(e).__name__
            raise TicketUnavailable(mask(f"{where}: {detail}")) from None
        code = response.status_code
        if code in ok:
            return response
        reason = self._reason(response) or response.reason_phrase
        message = mask(f"{where}: HTTP {code}: {reason}")
        if code >= 500 or code in RETRYABLE_STATUS:
            raise TicketUnavailable(message)
        if 300 <= code < 400:
            location = response.headers.get("location", "")
            raise TicketRejected(mask(f"{where}: HTTP {code} redirect to {location!r}; check the url"))
        raise TicketRejected(message)

    def shutdown(self) -> None:
        """Close the connection pool (named so as not to clash with the backends' ``close(ticket)``)."""
        self._client.close()
