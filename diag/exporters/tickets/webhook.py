"""Webhook ticket backend: every ticket event is one JSON POST, signed with HMAC-SHA256, with an idempotency key.

::

    webhook:
      url: https://hooks.example.org/diag
      secret: env:DIAG_WEBHOOK_SECRET   # the HMAC key, shared with the receiver
      timeout: 10

Each request carries::

    Content-Type: application/json
    X-Diag-Event: open | note | close | reopen
    X-Diag-Timestamp: 1763884800                      (Unix seconds when it was signed)
    X-Diag-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body bytes)>
    Idempotency-Key: <fingerprint>:<event>[:<sha256 of the note, 16 hex>]

A receiver recomputes the HMAC over the timestamp, a dot and the body exactly as received, compares it in
constant time (:func:`verify_signature` does both), refuses a timestamp older than its tolerance (replays), and
treats a second request with an Idempotency-Key it has seen as done (answer 2xx or 409). diag retries the same
event with the same key and body (a new timestamp and signature), so a crash between send and commit never
doubles a ticket. The body is documented in docs/tickets.md.

A webhook cannot be searched: ``find`` returns None and dedup is the receiver's, by the key. The ticket id is
the fingerprint; a ``{"url": ...}`` in the answer to ``open`` becomes the ticket's link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from diag.exporters.tickets.base import BACKENDS, Attachment, TicketDraft, TicketRef, TicketRejected
from diag.exporters.tickets.httpclient import HttpClient
from diag.exporters.tickets.options import parse, secret

NAME = "webhook"
SIGNATURE_HEADER = "X-Diag-Signature"
TIMESTAMP_HEADER = "X-Diag-Timestamp"
EVENT_HEADER = "X-Diag-Event"
KEY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300  # seconds a receiver should accept a signature for


class Options(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    secret: str
    timeout: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True
    #: extra, non-secret headers (a tenant id, say); the signature headers cannot be overridden
    headers: dict[str, str] = {}


def sign(secret_value: bytes, timestamp: int, body: bytes) -> str:
    """The X-Diag-Signature value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret_value, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret_value: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """A receiver's check: the signature matches (constant-time) and the timestamp is within ``tolerance``."""
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret_value, int(timestamp), body), signature)


def idempotency_key(fingerprint: str, event: str, text: str = "") -> str:
    """``fingerprint:event``, plus a digest of the note for events that can repeat with other words."""
    if event == "open":
        return f"{fingerprint}:open"
    return f"{fingerprint}:{event}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class WebhookBackend:
    """The :class:`~diag.exporters.tickets.base.TicketBackend` that POSTs signed events."""

    name = NAME

    def __init__(self, options: Options) -> None:
        key = secret(NAME, "secret", options.secret)
        if not key:
            raise TicketRejected("ticket backend webhook: secret is empty")
        self._secret = key.encode()
        self.options = options
        own = {h.lower() for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, EVENT_HEADER, KEY_HEADER, "content-type")}
        extra = {k: v for k, v in options.headers.items() if k.lower() not in own}
        self.http = HttpClient(NAME, options.url, headers=extra, timeout=options.timeout,
                               ca_file=options.ca_file, verify_tls=options.verify_tls)

    def find(self, fingerprint: str) -> TicketRef | None:
        return None  # nothing to search; the receiver dedups by Idempotency-Key

    def create(self, draft: TicketDraft) -> TicketRef:
        body = {
            "draft": {
                "subject": draft.subject,
                "description": draft.description,
                "host": draft.host,
                "severity": draft.severity,
                "priority": draft.priority,
                "line": draft.line,
                "classification": draft.classification,
                "fields": draft.fields,
            },
        }
        answer = self._post("open", draft.fingerprint, body, draft.attachments)
        url = answer.get("url")  # the receiver's link, when it answers with one
        # The id is the fingerprint, not the receiver's: a retried open answered with 409 has no body.
        return TicketRef(NAME, draft.fingerprint, str(url) if url else None)

    def add_note(self, ref: TicketRef, text: str, attachments: Sequence[Attachment] = ()) -> None:
        self._post("note", ref.id, {"text": text}, attachments, ref)

    def close(self, ref: TicketRef, note: str) -> None:
        self._post("close", ref.id, {"text": note}, (), ref)

    def reopen(self, ref: TicketRef, note: str) -> None:
        self._post("reopen", ref.id, {"text": note}, (), ref)

    def _post(
        self,
        event: str,
        fingerprint: str,
        fields: Mapping[str, Any],
        attachments: Sequence[Attachment],
        ref: TicketRef | None = None,
    ) -> dict[str, Any]:
        key = idempotency_key(fingerprint, event, str(fields.get("text", "")))
        payload: dict[str, Any] = {
            "version": 1,
            "event": event,
            "fingerprint": fingerprint,
            "idempotency_key": key,
            **fields,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type,
                 "content_base64": base64.b64encode(a.content).decode()}
                for a in attachments
            ],
        }
        if ref is not None:
            payload["ticket"] = {"id": ref.id, "url": ref.url}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, ts, body),
            KEY_HEADER: key,
        }
        r = self.http.request("POST", self.options.url, what=f"{event} {fingerprint}", ok=(200, 201, 202, 204, 409),
                              content=body, headers=headers)
        try:
            answer = r.json() if r.content else {}
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}

    def shutdown(self) -> None:
        self.http.shutdown()


@BACKENDS.register(NAME)
def factory(config: Mapping[str, Any]) -> WebhookBackend:
    return WebhookBackend(parse(NAME, config, Options))
