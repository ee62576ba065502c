"""The email ticket backend through a real Exim on loopback (tests/labs/smtplab.py), reading the delivered Maildir."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from diag.errors import ConfigError
from diag.exporters.tickets import build
from diag.exporters.tickets.base import Attachment, TicketDraft, TicketRejected, TicketUnavailable
from diag.exporters.tickets.email import EmailBackend
from tests.labs.smtplab import PASSWORD, USER, EximLab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exim() -> Iterator[EximLab]:
    with EximLab() as lab:
        yield lab


@pytest.fixture
def config(exim: EximLab, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("DIAG_TEST_SMTP_PASSWORD", PASSWORD)
    return {"host": "127.0.0.1", "port": exim.port, "security": "starttls", "ca_file": exim.ca_file,
            "username": USER, "password": "env:DIAG_TEST_SMTP_PASSWORD", "from": "diag@diaglab.invalid",
            "to": ["ops@diaglab.invalid"], "cc": ["lead@diaglab.invalid"], "timeout": 10}


def backend(config: dict[str, Any], **overrides: Any) -> EmailBackend:
    b = build("email", {**config, **overrides})
    assert isinstance(b, EmailBackend)
    return b


def fp() -> str:
    return uuid.uuid4().hex[:16]


def draft(fingerprint: str, **kw: Any) -> TicketDraft:
    base: dict[str, Any] = {"fingerprint": fingerprint, "subject": "Disk almost full on web1",
                            "description": "Root filesystem of web1 at 97%.\nFirst seen 07:00 UTC.", "host": "web1",
                            "severity": "critical", "priority": "high", "line": "L1", "classification": "typical"}
    base.update(kw)
    return TicketDraft(**base)


def delivered(exim: EximLab, fingerprint: str, n: int, to: str | None = None) -> list[EmailMessage]:
    """The ``n`` messages about ``fingerprint`` delivered (to ``to``), oldest first; waits for exim's delivery
    processes, and fails if there are more or fewer."""
    def mine() -> list[EmailMessage]:
        return [m for m in exim.messages()
                if m["X-Diag-Fingerprint"] == fingerprint and (to is None or m["Envelope-to"] == to)]

    deadline = time.monotonic() + 20
    while len(mine()) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # a surplus message would show up now
    msgs = mine()
    assert len(msgs) == n, [m["Subject"] for m in msgs]
    return msgs


def of(exim: EximLab, fingerprint: str, n: int) -> list[EmailMessage]:
    """The ``n`` messages about ``fingerprint`` as sent to the first recipient (each is delivered to to and cc)."""
    return delivered(exim, fingerprint, n, to="ops@diaglab.invalid")


def test_notes_thread_under_the_ticket(exim: EximLab, config: dict[str, Any]) -> None:
    b, f = backend(config), fp()
    assert b.find(f) is None
    ref = b.create(draft(f, attachments=[Attachment("evidence.json", b'{"df": "97%"}')]))
    assert ref.id == f
    b.add_note(ref, "Seen again (occurrence 2).\nStill 97%.", [Attachment("run-2.txt", b"97%\n", "text/plain")])
    b.close(ref, "Cleared: the re-check found 61%.")
    b.reopen(ref, "Back again: 96%.")
    opened, note, closed, reopened = of(exim, f, 4)
    root = f"<diag.{f}@diaglab.invalid>"
    assert opened["Message-ID"] == root and opened["In-Reply-To"] is None
    assert opened["Subject"] == f"[diag:{f}] Disk almost full on web1"
    assert (opened["X-Diag-Host"], opened["X-Diag-Line"], opened["X-Diag-Classification"]) == ("web1", "L1", "typical")
    assert opened.get_body(("plain",)).get_content().strip() == "Root filesystem of web1 at 97%.\nFirst seen 07:00 UTC."
    [att] = list(opened.iter_attachments())
    assert att.get_filename() == "evidence.json" and att.get_content() == b'{"df": "97%"}'
    for reply in (note, closed, reopened):
        assert reply["In-Reply-To"] == root and reply["References"] == root
        assert reply["Message-ID"] != root and reply["Subject"].startswith(f"Re: [diag:{f}] ")
    assert note["Subject"] == f"Re: [diag:{f}] Seen again (occurrence 2)."
    assert [a.get_filename() for a in note.iter_attachments()] == ["run-2.txt"]
    assert closed["Subject"] == f"Re: [diag:{f}] Closed: Cleared: the re-check found 61%."
    assert reopened["X-Diag-Event"] == "reopen"
    # STARTTLS and AUTH were used (exim records "esmtpsa"), for both recipients, and the password is nowhere
    assert "with esmtpsa" in str(opened["Received"])
    assert {m["Envelope-to"] for m in delivered(exim, f, 8) if m["Message-ID"] == root} == {
        "ops@diaglab.invalid", "lead@diaglab.invalid"}
    assert all(PASSWORD not in m.as_string() for m in exim.messages())


def test_a_retry_sends_the_same_message_id(exim: EximLab, config: dict[str, Any]) -> None:
    b, f = backend(config), fp()
    ref = b.create(draft(f))
    b.create(draft(f))
    b.add_note(ref, "same words")
    b.add_note(ref, "same words")
    ids = [m["Message-ID"] for m in of(exim, f, 4)]
    assert len(set(ids)) == 2  # four mails, two Message-IDs: a receiver can drop the copies


def test_smtp_answers_map_to_retry_or_reject(exim: EximLab, config: dict[str, Any]) -> None:
    with pytest.raises(TicketRejected, match="SMTP 550 no such user here"):
        backend(config, to=["rejectme@diaglab.invalid"], cc=[]).create(draft(fp()))
    with pytest.raises(TicketUnavailable, match="SMTP 451 mailbox busy"):
        backend(config, to=["later@diaglab.invalid"], cc=[]).create(draft(fp()))
    anonymous = {k: v for k, v in config.items() if k not in ("username", "password")}
    with pytest.raises(TicketRejected, match="SMTP 550 authentication required"):
        backend(anonymous, to=["ops@auth.diaglab.invalid"], cc=[]).create(draft(fp()))
    f = fp()
    backend(config, to=["ops@auth.diaglab.invalid"], cc=[]).create(draft(f))
    assert delivered(exim, f, 1)[0]["Envelope-to"] == "ops@auth.diaglab.invalid"


def test_credentials_and_tls_failures(
    exim: EximLab, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIAG_TEST_SMTP_BAD", "wrong-password")
    with pytest.raises(TicketRejected, match="login as 'diag' refused: SMTP 535") as e:
        backend(config, password="env:DIAG_TEST_SMTP_BAD").create(draft(fp()))
    assert "wrong-password" not in str(e.value)
    untrusted = {k: v for k, v in config.items() if k != "ca_file"}
    with pytest.raises(TicketRejected, match="TLS certificate not trusted"):
        backend(untrusted).create(draft(fp()))
    with pytest.raises(ConfigError, match="password must be a reference"):
        backend(config, password=PASSWORD)


def test_no_starttls_offered_and_server_down(config: dict[str, Any]) -> None:
    with EximLab(starttls=False) as plain:
        anonymous = {k: v for k, v in config.items() if k not in ("username", "password")}
        with pytest.raises(TicketRejected, match="does not offer STARTTLS"):
            backend(anonymous, port=plain.port).create(draft(fp()))
        f = fp()
        backend(anonymous, port=plain.port, security="none").create(draft(f))
        assert of(plain, f, 1)[0]["Subject"] == f"[diag:{f}] Disk almost full on web1"
        port = plain.port
    with pytest.raises(TicketUnavailable, match="Connection refused"):
        backend(config, port=port).create(draft(fp()))


def test_hostile_alert_text_is_escaped_in_the_html_part(exim: EximLab, config: dict[str, Any], tmp_path: Any) -> None:
    """The hostile alert through the engine as real mail (Exim, read from the Maildir): no control or bidi
    character in headers or text; the HTML part has every value as escaped text."""
    from tests.integration.hostile import SCRIPT, assert_plain_safe, file_ticket

    svc = file_ticket(backend(config), tmp_path)
    try:
        (inc,) = svc.store.query()
        msgs = of(exim, inc.ticket_key, 2)
        for m in msgs:
            assert "\n" not in str(m["Subject"]).strip() and "\u202e" not in str(m["Subject"])
            plain = m.get_body(("plain",))
            html = m.get_body(("html",))
            assert plain is not None and html is not None
            text, markup = plain.get_content(), html.get_content()
            assert_plain_safe(text)
            assert "<script" not in markup and "<img" not in markup and "<b>" not in markup
            assert "&lt;script&gt;" in markup and "&lt;U+202E&gt;" in markup
        assert SCRIPT in msgs[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    finally:
        svc.close()
