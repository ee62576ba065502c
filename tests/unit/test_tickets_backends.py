"""Ticket backends without a peer: config validation, secrets by reference, signing, quoting and mapping helpers.

Everything that talks to a ticket system is tested against the real one in tests/integration/test_tickets_*.py.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from diag.errors import ConfigError, RegistryError, SecretError
from diag.exporters.tickets import build
from diag.exporters.tickets.base import TicketRejected
from diag.exporters.tickets.email import EmailBackend
from diag.exporters.tickets.redmine import _field_value, _pick, _subject
from diag.exporters.tickets.rt import _sql_string
from diag.exporters.tickets.webhook import idempotency_key, sign, verify_signature
from diag.secrets import SecretRef, mask


def test_unknown_backend_suggests_the_closest() -> None:
    with pytest.raises(RegistryError, match="did you mean 'redmine'"):
        build("redmin", {})


def test_options_refuse_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(ConfigError, match=r"ticket backend redmine: .*unknown field `projekt`"):
        build("redmine", {"url": "http://x", "api_key": "env:X", "project": "p", "projekt": "p"})
    with pytest.raises(ConfigError, match=r"ticket backend webhook: Expected `float`.*timeout"):
        build("webhook", {"url": "http://x", "secret": "env:X", "timeout": "soon"})


def test_secrets_are_references_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="redmine: api_key must be a reference like env:NAME or file:PATH"):
        build("redmine", {"url": "http://x", "api_key": "0123456789abcdef", "project": "p"})
    monkeypatch.delenv("DIAG_TEST_UNSET", raising=False)
    with pytest.raises(SecretError, match=r"ticket backend rt: token: .*DIAG_TEST_UNSET is not set"):
        build("rt", {"url": "http://x", "queue": "General", "token": "env:DIAG_TEST_UNSET"})
    monkeypatch.setenv("DIAG_TEST_WEBHOOK_KEY", "a-secret-that-is-masked")
    build("webhook", {"url": "http://x", "secret": SecretRef("env:DIAG_TEST_WEBHOOK_KEY")})  # a SecretRef works
    assert mask("key=a-secret-that-is-masked") == "key=***"  # revealed values are masked in logs


def test_httpx_request_lines_are_not_logged() -> None:
    import logging

    import diag.exporters.tickets.httpclient  # noqa: F401 - importing it quiets httpx

    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_email_options_take_from_and_need_a_recipient() -> None:
    b = build("email", {"host": "127.0.0.1", "from": "diag@example.org", "to": ["ops@example.org"]})
    assert isinstance(b, EmailBackend) and b.domain == "example.org" and b.options.security == "starttls"
    with pytest.raises(TicketRejected, match="'to' needs at least one address"):
        build("email", {"host": "127.0.0.1", "from": "diag@example.org", "to": []})
    with pytest.raises(ConfigError, match="username/password need security: starttls or tls"):
        build("email", {"host": "127.0.0.1", "from": "diag@example.org", "to": ["ops@example.org"],
                        "security": "none", "username": "diag", "password": "env:X"})


def test_webhook_signature_is_hmac_over_timestamp_dot_body() -> None:
    body, secret = b'{"event":"open"}', b"s3cret"
    expected = hmac.new(secret, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(secret, 1700000000, body) == "sha256=" + expected
    sig = sign(secret, 1700000000, body)
    assert verify_signature(secret, "1700000000", body, sig, now=1700000100)
    assert not verify_signature(secret, "1700000000", body + b" ", sig, now=1700000100)  # tampered
    assert not verify_signature(b"other", "1700000000", body, sig, now=1700000100)  # wrong secret
    assert not verify_signature(secret, "1700000000", body, sig, now=1700000301)  # replayed too late
    assert not verify_signature(secret, "-5", body, sig, now=1700000100)


def test_idempotency_keys() -> None:
    assert idempotency_key("abc", "open") == "abc:open"
    note = idempotency_key("abc", "note", "seen again")
    assert note == "abc:note:" + hashlib.sha256(b"seen again").hexdigest()[:16]
    assert idempotency_key("abc", "note", "other") != note
    assert idempotency_key("abc", "close", "seen again") != note


def test_ticketsql_strings_are_quoted() -> None:
    assert _sql_string("3f9c") == "'3f9c'"
    assert _sql_string("a'b\\c") == "'a\\'b\\\\c'"


def test_redmine_helpers() -> None:
    assert _subject("Disk\nalmost   full") == "Disk almost full"
    long = _subject("x" * 300)
    assert len(long) == 255 and long.endswith("…")
    statuses = [{"id": 1, "name": "New"}, {"id": 5, "name": "Closed"}]
    assert _pick(statuses, "closed", "closed_status")["id"] == 5
    assert _pick(statuses, 5, "closed_status")["name"] == "Closed"
    assert _pick(statuses, "5", "closed_status")["name"] == "Closed"
    with pytest.raises(TicketRejected, match="closed_status 'Done' not found; known: New, Closed"):
        _pick(statuses, "Done", "closed_status")
    issue = {"custom_fields": [{"id": 2, "value": "other"}, {"id": 1, "value": "fp"}]}
    assert _field_value(issue, 1) == "fp" and _field_value(issue, 3) is None
    assert _field_value({"custom_fields": [{"id": 1, "value": ["a", "b"]}]}, 1) is None  # a multi-value field
