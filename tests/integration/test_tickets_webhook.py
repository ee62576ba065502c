"""The webhook ticket backend posting to a real HTTP receiver that verifies the signature as docs/tickets.md says.

The receiver below is what a user would write: it recomputes HMAC-SHA256 over "<timestamp>.<body>" with its own
code (not diag's helper), refuses stale timestamps, and treats a repeated Idempotency-Key as done.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from diag.exporters.tickets import build
from diag.exporters.tickets.base import Attachment, TicketDraft, TicketRejected, TicketUnavailable
from diag.exporters.tickets.webhook import WebhookBackend, verify_signature
from tests.conftest import free_port

pytestmark = pytest.mark.integration

PORTS = range(20330, 20335)
SECRET = "webhook-shared-secret-7f3a"


@dataclass
class Receiver:
    """A real HTTP server on loopback that verifies diag's signature and dedups by Idempotency-Key."""

    secret: bytes
    port: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # accepted, in order
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)  # every request as received
    keys: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)
    fail_with: int | None = None  # answer every request with this status (e.g. 503)

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        self.raw.append((headers, body))
        if self.fail_with:
            return self.fail_with, {"error": "maintenance"}
        ts, sig = headers.get("x-diag-timestamp", ""), headers.get("x-diag-signature", "")
        expected = "sha256=" + hmac.new(self.secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            self.refused.append("bad signature")
            return 401, {"error": "bad signature"}
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            self.refused.append("stale timestamp")
            return 401, {"error": "stale timestamp"}
        key = headers["idempotency-key"]
        event = json.loads(body)
        if key in self.keys:
            return 409, {"error": "already done"}
        self.keys.add(key)
        self.events.append(event)
        return (201, {"url": f"https://tickets.example.invalid/{event['fingerprint']}"}) if event[
            "event"
        ] == "open" else (200, {})

    def serve(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, answer = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port(PORTS)
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET.encode())
    server = r.serve()
    yield r
    server.shutdown()
    server.server_close()


def backend_for(r: Receiver, monkeypatch: pytest.MonkeyPatch, secret: str = SECRET) -> WebhookBackend:
    monkeypatch.setenv("DIAG_TEST_WEBHOOK_SECRET", secret)
    b = build("webhook", {"url": f"http://127.0.0.1:{r.port}/hooks/diag", "secret": "env:DIAG_TEST_WEBHOOK_SECRET",
                          "timeout": 5})
    assert isinstance(b, WebhookBackend)
    return b


def draft(fp: str) -> TicketDraft:
    return TicketDraft(fp, "Disk almost full on web1", "Root filesystem at 97%.", "web1", "critical",
                       priority="high", line="L2", classification="atypical",
                       attachments=[Attachment("evidence.json", b'{"df": "97%"}')], fields={"kb": "disk-full"})


def test_events_are_signed_and_carry_the_ticket(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend_for(receiver, monkeypatch)
    assert b.find("0123abcd0123abcd") is None
    ref = b.create(draft("0123abcd0123abcd"))
    assert ref.id == "0123abcd0123abcd"
    assert ref.url == "https://tickets.example.invalid/0123abcd0123abcd"
    b.add_note(ref, "Seen again (occurrence 2).", [Attachment("run-2.txt", b"97%\n", "text/plain")])
    b.close(ref, "Cleared after a re-check.")
    b.reopen(ref, "Back again.")
    assert receiver.refused == []
    assert [e["event"] for e in receiver.events] == ["open", "note", "close", "reopen"]
    opened = receiver.events[0]
    assert opened["draft"]["subject"] == "Disk almost full on web1"
    assert opened["draft"]["line"] == "L2" and opened["draft"]["fields"] == {"kb": "disk-full"}
    assert base64.b64decode(opened["attachments"][0]["content_base64"]) == b'{"df": "97%"}'
    note = receiver.events[1]
    assert note["text"] == "Seen again (occurrence 2)." and note["ticket"]["id"] == ref.id
    assert base64.b64decode(note["attachments"][0]["content_base64"]) == b"97%\n"
    headers = receiver.raw[0][0]
    assert headers["x-diag-event"] == "open" and headers["idempotency-key"] == "0123abcd0123abcd:open"
    # diag's own helper agrees with the receiver's hand-written check
    h, body = receiver.raw[1]
    assert verify_signature(SECRET.encode(), h["x-diag-timestamp"], body, h["x-diag-signature"])
    assert not verify_signature(SECRET.encode(), h["x-diag-timestamp"], body, h["x-diag-signature"],
                                now=int(h["x-diag-timestamp"]) + 301)


def test_retries_reuse_the_idempotency_key(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend_for(receiver, monkeypatch)
    ref = b.create(draft("feedfacefeedface"))
    assert b.create(draft("feedfacefeedface")).id == ref.id
    b.add_note(ref, "same words")
    b.add_note(ref, "same words")  # the retry after a crash: the receiver answers 409, diag takes it as done
    b.add_note(ref, "other words")
    assert [e["event"] for e in receiver.events] == ["open", "note", "note"]
    assert len(receiver.raw) == 5


def test_tampered_body_and_wrong_secret_are_refused(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend_for(receiver, monkeypatch)
    b.create(draft("a1a1a1a1a1a1a1a1"))
    headers, body = receiver.raw[0]
    tampered = body.replace(b"Disk almost full", b"All is fine here")
    assert tampered != body
    for payload, expected in ((tampered, 401), (body, 409)):  # the untouched replay is valid but already done
        req = urllib.request.Request(f"http://127.0.0.1:{receiver.port}/hooks/diag", data=payload, method="POST")
        for name in ("content-type", "x-diag-timestamp", "x-diag-signature", "x-diag-event", "idempotency-key"):
            req.add_header(name, headers[name])
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == expected
    assert receiver.refused == ["bad signature"]
    wrong = backend_for(receiver, monkeypatch, secret="not-the-shared-secret")
    with pytest.raises(TicketRejected, match="HTTP 401"):
        wrong.create(draft("b2b2b2b2b2b2b2b2"))
    assert SECRET not in str(receiver.raw)


def test_receiver_down_or_failing_is_retryable(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend_for(receiver, monkeypatch)
    receiver.fail_with = 503
    with pytest.raises(TicketUnavailable, match="HTTP 503"):
        b.create(draft("c3c3c3c3c3c3c3c3"))
    receiver.fail_with = None
    b.create(draft("c3c3c3c3c3c3c3c3"))
    closed = build("webhook", {"url": f"http://127.0.0.1:{free_port(range(20335, 20340))}/",
                               "secret": "env:DIAG_TEST_WEBHOOK_SECRET"})
    with pytest.raises(TicketUnavailable, match="Connection refused"):
        closed.create(draft("d4d4d4d4d4d4d4d4"))


def test_hostile_alert_text_is_clean_json(receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The hostile alert through the engine to a real webhook receiver: valid JSON, no control or bidi character
    in any field (a NUL makes a PostgreSQL-backed receiver answer 5xx, which would hold every later delivery)."""
    from tests.integration.hostile import SCRIPT, assert_clean, assert_markdown_safe, file_ticket

    svc = file_ticket(backend_for(receiver, monkeypatch), tmp_path)
    try:
        opened, noted = receiver.events
        assert (opened["event"], noted["event"]) == ("open", "note")
        for event in (opened, noted):
            assert_clean(event)
        assert SCRIPT in opened["draft"]["subject"]
        assert_markdown_safe(opened["draft"]["description"])  # documented as Markdown, like the other backends
    finally:
        svc.close()
