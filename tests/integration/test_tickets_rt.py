"""The rt ticket backend against a real Request Tracker 5.0.3 (tests/labs/rtlab.py): dedup, notes, attachments, status.

What the test checks on the ticket is read with the lab's own REST2 client, not through the backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from diag.exporters.tickets import build
from diag.exporters.tickets.base import Attachment, TicketDraft, TicketRejected, TicketUnavailable
from diag.exporters.tickets.rt import RTBackend
from tests.labs.rtlab import RTLab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rt_lab() -> Iterator[RTLab]:
    lab = RTLab()
    try:
        yield lab.start()
    finally:
        lab.close()


@pytest.fixture(scope="module")
def backend(rt_lab: RTLab) -> Iterator[RTBackend]:
    b = build("rt", rt_lab.backend_config(line_queues={"L2": "Second line"}))
    assert isinstance(b, RTBackend)
    yield b
    b.shutdown()


def fp() -> str:
    return uuid.uuid4().hex[:16]


def draft(fingerprint: str, **kw: Any) -> TicketDraft:
    base: dict[str, Any] = {"fingerprint": fingerprint, "subject": "Disk almost full on web1",
                            "description": "Root filesystem of web1 at 97%.", "host": "web1",
                            "severity": "critical", "priority": "urgent", "line": "L1"}
    base.update(kw)
    return TicketDraft(**base)


def test_create_find_and_no_duplicate(rt_lab: RTLab, backend: RTBackend) -> None:
    f, other = fp(), fp()
    ref = backend.create(draft(f, attachments=[Attachment("evidence.json", b'{"df": "97%"}')]))
    assert ref.url == f"{rt_lab.url}/Ticket/Display.html?id={ref.id}"
    backend.create(draft(other))
    assert backend.find(f) == ref
    assert backend.find(fp()) is None
    assert backend.create(draft(f, subject="retry")) == ref  # search before create
    t = rt_lab.ticket(ref.id)
    assert t["Subject"] == "Disk almost full on web1" and t["Priority"] == "90"
    assert [(c["name"], c["values"]) for c in t["CustomFields"]] == [("diag fingerprint", [f])]
    [created] = rt_lab.messages(ref.id)
    assert created["type"] == "Create" and created["text"].strip() == "Root filesystem of web1 at 97%."
    assert created["files"] == [("evidence.json", b'{"df": "97%"}')]


def test_line_routes_to_a_queue(rt_lab: RTLab, backend: RTBackend) -> None:
    ref = backend.create(draft(fp(), line="L2"))
    queue_id = rt_lab.ticket(ref.id)["Queue"]["id"]
    assert rt_lab.api("GET", f"/queue/{queue_id}")[1]["Name"] == "Second line"


def test_notes_attachments_close_reopen(rt_lab: RTLab, backend: RTBackend) -> None:
    ref = backend.create(draft(fp()))
    run2 = [Attachment("run-2.txt", b"97%\n", "text/plain")]
    backend.add_note(ref, "Seen again (occurrence 2).", run2)
    backend.add_note(ref, "Seen again (occurrence 2).", run2)  # retried with its attachment
    backend.add_note(ref, "Seen again (occurrence 3).")
    backend.add_note(ref, "Seen again (occurrence 3).")  # a retried delivery
    backend.close(ref, "Cleared: the re-check found 61%.")
    assert rt_lab.ticket(ref.id)["Status"] == "resolved"
    backend.close(ref, "Cleared: the re-check found 61%.")
    backend.reopen(ref, "Back again: 96%.")
    assert rt_lab.ticket(ref.id)["Status"] == "open"
    msgs = [(m["type"], m["text"].strip(), [name for name, _ in m["files"]]) for m in rt_lab.messages(ref.id)]
    assert msgs[1:] == [
        ("Comment", "Seen again (occurrence 2).", ["run-2.txt"]),
        ("Comment", "Seen again (occurrence 3).", []),
        ("Comment", "Cleared: the re-check found 61%.", []),
        ("Comment", "Back again: 96%.", []),
    ]


def test_correspond_mode_writes_to_the_requestors(rt_lab: RTLab) -> None:
    b = build("rt", rt_lab.backend_config(note="correspond", requestors=["noc@diaglab.invalid"]))
    ref = b.create(draft(fp()))
    b.add_note(ref, "We are on it.")
    assert [r["id"] for r in rt_lab.ticket(ref.id)["Requestor"]] == ["noc@diaglab.invalid"]
    assert [(m["type"], m["text"].strip()) for m in rt_lab.messages(ref.id)][-1] == ("Correspond", "We are on it.")


def test_subject_tag_mode(rt_lab: RTLab) -> None:
    b = build("rt", rt_lab.backend_config(fingerprint_field=None, queue="No field"))
    f = fp()
    ref = b.create(draft(f))
    assert rt_lab.ticket(ref.id)["Subject"] == f"[diag:{f}] Disk almost full on web1"
    assert b.find(f) == ref
    assert b.find(f[:-1] + "0" if f[-1] != "0" else f[:-1] + "1") is None


def test_field_not_applied_to_the_queue_fails_loudly(rt_lab: RTLab) -> None:
    b = build("rt", rt_lab.backend_config(queue="No field"))
    with pytest.raises(TicketRejected, match=r"RT dropped the fingerprint.*'No field'"):
        b.create(draft(fp()))


def test_errors(rt_lab: RTLab, backend: RTBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIAG_TEST_RT_TOKEN", "1-14-00000000000000000000000000000000")
    bad = build("rt", rt_lab.backend_config(token="env:DIAG_TEST_RT_TOKEN"))
    with pytest.raises(TicketRejected, match="HTTP 401") as e:
        bad.find(fp())
    assert rt_lab.token not in str(e.value)
    nowhere = build("rt", rt_lab.backend_config(queue="No such queue"))
    with pytest.raises(TicketRejected, match="HTTP 403: No permission to create tickets in the queue"):
        nowhere.create(draft(fp()))
    ref = backend.create(draft(fp()))
    rt_lab.stop_server()
    try:
        with pytest.raises(TicketUnavailable, match="Connection refused"):
            backend.add_note(ref, "while RT is down")
    finally:
        rt_lab.start_server()
    backend.add_note(ref, "after RT is back")
    assert rt_lab.messages(ref.id)[-1]["text"].strip() == "after RT is back"


def test_hostile_alert_text_is_plain_text_in_the_ticket(rt_lab: RTLab, backend: RTBackend, tmp_path: Any) -> None:
    """The hostile alert through the engine into a real RT (text/plain): read back, the values are there as
    text (no Markdown escapes left in), with no control or bidi character."""
    from tests.integration.hostile import SCRIPT, assert_plain_safe, file_ticket

    svc = file_ticket(backend, tmp_path)
    try:
        (inc,) = svc.store.query()
        t = rt_lab.ticket(str(inc.ticket_id))
        assert SCRIPT in t["Subject"] and "\n" not in t["Subject"]
        messages = rt_lab.messages(str(inc.ticket_id))
        assert len(messages) == 2
        for m in messages:
            assert_plain_safe(m["text"])
        assert SCRIPT in messages[0]["text"] and "\\<script" not in messages[0]["text"]
        assert "| Host | web<b>|01 |" in messages[0]["text"]
    finally:
        svc.close()
