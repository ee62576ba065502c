"""The redmine ticket backend against a real Redmine 5.0 (labs/redminelab.py): dedup, notes, uploads, status, errors.

What the test checks on the issue is read with the lab's own plain REST client, not through the backend.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from diag.errors import ConfigError
from diag.exporters.tickets import build
from diag.exporters.tickets.base import Attachment, TicketDraft, TicketRejected, TicketUnavailable
from diag.exporters.tickets.redmine import RedmineBackend
from tests.conftest import free_port
from tests.labs.redminelab import PROJECT, RedmineLab

pytestmark = pytest.mark.integration

SILENT_PORTS = range(20340, 20345)


def fp() -> str:
    return "fp-" + uuid.uuid4().hex


def draft(fingerprint: str, **kw: Any) -> TicketDraft:
    base: dict[str, Any] = {
        "fingerprint": fingerprint,
        "subject": "Disk almost full on web1: / at 97%",
        "description": "**Summary**: the root filesystem of web1 is 97% full.\n\n- first seen: 2026-11-23T07:00Z",
        "host": "web1",
        "severity": "critical",
        "priority": "urgent",
        "line": "L1",
    }
    base.update(kw)
    return TicketDraft(**base)


@pytest.fixture(scope="module")
def backend(redmine_lab: RedmineLab) -> Iterator[RedmineBackend]:
    b = build("redmine", redmine_lab.backend_config())
    assert isinstance(b, RedmineBackend)
    yield b
    b.shutdown()


def test_create_carries_the_draft_and_its_attachment(redmine_lab: RedmineLab, backend: RedmineBackend) -> None:
    f = fp()
    evidence = b'{"commands": [{"cmd": "df -P /", "output": "/dev/sda1 ... 97% /"}]}'
    ref = backend.create(draft(f, attachments=[Attachment("evidence.json", evidence)]))
    assert ref.backend == "redmine" and ref.url == f"{redmine_lab.url}/issues/{ref.id}"
    issue = redmine_lab.issue(ref.id)
    assert issue["subject"] == "Disk almost full on web1: / at 97%"
    assert issue["description"].startswith("**Summary**: the root filesystem of web1")
    assert issue["priority"]["name"] == "Urgent"
    assert issue["tracker"]["name"] == "Bug"
    assert issue["project"]["id"] == redmine_lab.facts["project_id"]
    assert {"id": redmine_lab.fingerprint_field_id, "name": "diag fingerprint", "value": f} in issue["custom_fields"]
    [att] = issue["attachments"]
    assert att["filename"] == "evidence.json" and att["filesize"] == len(evidence)
    status, _ = redmine_lab.api("GET", f"/attachments/{att['id']}.json")
    assert status == 200


def test_find_by_fingerprint_never_returns_an_unrelated_issue(redmine_lab: RedmineLab, backend: RedmineBackend) -> None:
    mine, other = fp(), fp()
    # issues made by hand next to ours: one with another fingerprint, one with a prefix of ours, one with none
    fid = redmine_lab.fingerprint_field_id
    for value in (other, mine[:-1], None):
        issue: dict[str, Any] = {"project_id": PROJECT, "subject": f"unrelated {value}"}
        if value:
            issue["custom_fields"] = [{"id": fid, "value": value}]
        assert redmine_lab.api("POST", "/issues.json", {"issue": issue})[0] == 201
    assert backend.find(mine) is None
    ref = backend.create(draft(mine))
    assert backend.find(mine) == ref
    found_other = backend.find(other)
    assert found_other is not None and found_other.id != ref.id
    assert backend.find(fp()) is None


def test_create_again_returns_the_same_issue(redmine_lab: RedmineLab, backend: RedmineBackend) -> None:
    f = fp()
    ref = backend.create(draft(f))
    before = len(redmine_lab.issues())
    assert backend.create(draft(f, subject="a retry after a crash")) == ref
    assert len(redmine_lab.issues()) == before
    assert redmine_lab.issue(ref.id)["subject"] == "Disk almost full on web1: / at 97%"


def test_note_with_attachment_and_no_double_note(redmine_lab: RedmineLab, backend: RedmineBackend) -> None:
    ref = backend.create(draft(fp()))
    run2 = [Attachment("run-2.txt", b"97%\n", "text/plain")]
    backend.add_note(ref, "Seen again at 07:05 (occurrence 2).", run2)
    backend.add_note(ref, "Seen again at 07:05 (occurrence 2).", run2)  # retried with its attachment
    backend.add_note(ref, "Seen again at 07:10 (occurrence 3).")
    backend.add_note(ref, "Seen again at 07:10 (occurrence 3).")  # a retry of the same delivery
    issue = redmine_lab.issue(ref.id)
    notes = [j["notes"] for j in issue["journals"] if j["notes"]]
    assert notes == ["Seen again at 07:05 (occurrence 2).", "Seen again at 07:10 (occurrence 3)."]
    assert [a["filename"] for a in issue["attachments"]] == ["run-2.txt"]
    assert issue["attachments"][0]["content_type"] == "text/plain"


def test_close_and_reopen(redmine_lab: RedmineLab, backend: RedmineBackend) -> None:
    ref = backend.create(draft(fp()))
    backend.close(ref, "Cleared: the re-check at 07:30 found / at 61%.")
    issue = redmine_lab.issue(ref.id)
    assert issue["status"]["name"] == "Closed" and issue["status"]["is_closed"] is True
    assert issue["closed_on"]
    backend.close(ref, "Cleared: the re-check at 07:30 found / at 61%.")  # retried: no second note
    assert [j["notes"] for j in redmine_lab.issue(ref.id)["journals"] if j["notes"]] == [
        "Cleared: the re-check at 07:30 found / at 61%."
    ]
    backend.reopen(ref, "Back again within the reopen window: / at 96%.")
    issue = redmine_lab.issue(ref.id)
    assert issue["status"]["name"] == "New" and issue["status"]["is_closed"] is False
    assert issue["journals"][-1]["notes"] == "Back again within the reopen window: / at 96%."
    assert backend.find(draft(fp()).fingerprint) is None


def test_an_issue_moved_to_another_project(redmine_lab: RedmineLab, backend: RedmineBackend) -> None:
    f = fp()
    ref = backend.create(draft(f))
    assert redmine_lab.api("PUT", f"/issues/{ref.id}.json", {"issue": {"project_id": "other"}})[0] == 204
    assert redmine_lab.issue(ref.id)["project"]["name"] == "another team"
    assert backend.find(f) is None  # searched in the configured project only
    everywhere = build("redmine", redmine_lab.backend_config(search_all_projects=True))
    assert everywhere.find(f) == ref


def test_resolved_is_refused_as_closed_status(redmine_lab: RedmineLab) -> None:
    b = build("redmine", redmine_lab.backend_config(closed_status="Resolved"))
    with pytest.raises(TicketRejected, match=r"'Resolved' is not a closed status.*Closed, Rejected"):
        b.find(fp())


def test_field_that_is_not_a_filter_fails_loudly(redmine_lab: RedmineLab) -> None:
    fid = redmine_lab.unfiltered_field_id
    issue = {"project_id": PROJECT, "subject": "has a value in the non-filter field",
             "custom_fields": [{"id": fid, "value": "fp-someone-else"}]}
    assert redmine_lab.api("POST", "/issues.json", {"issue": issue})[0] == 201
    b = build("redmine", redmine_lab.backend_config(fingerprint_field=fid))
    with pytest.raises(TicketRejected, match=rf"Redmine ignored the filter.*field {fid}"):
        b.find(fp())
    with pytest.raises(TicketRejected, match="ignored the filter"):
        b.create(draft(fp()))


def test_field_by_name_with_an_admin_key(redmine_lab: RedmineLab) -> None:
    b = build("redmine", redmine_lab.backend_config(fingerprint_field="diag fingerprint"))
    f = fp()
    ref = b.create(draft(f))
    assert b.find(f) == ref


def test_rejections_carry_redmine_reason_and_never_the_key(
    redmine_lab: RedmineLab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DIAG_TEST_BAD_KEY", "0" * 40)
    bad = build("redmine", redmine_lab.backend_config(api_key="env:DIAG_TEST_BAD_KEY"))
    with pytest.raises(TicketRejected, match="HTTP 401: the API key is not valid") as e401:
        bad.find(fp())
    monkeypatch.setenv("DIAG_TEST_OUTSIDER_KEY", redmine_lab.outsider_key)
    outsider = build("redmine", redmine_lab.backend_config(api_key="env:DIAG_TEST_OUTSIDER_KEY"))
    with pytest.raises(TicketRejected, match="HTTP 403") as e403:
        outsider.find(fp())
    wrong_assignee = build("redmine", redmine_lab.backend_config(assignees={"L1": 999999}))
    with pytest.raises(TicketRejected, match="HTTP 422: Assignee is invalid"):
        wrong_assignee.create(draft(fp()))
    for text in (str(e401.value), str(e403.value), caplog.text):
        assert redmine_lab.api_key not in text and redmine_lab.outsider_key not in text
    with pytest.raises(ConfigError, match="api_key must be a reference"):
        build("redmine", redmine_lab.backend_config(api_key=redmine_lab.api_key))


def test_unreachable_and_silent_redmine_are_retryable(redmine_lab: RedmineLab, backend: RedmineBackend) -> None:
    ref = backend.create(draft(fp()))
    redmine_lab.stop_server()
    try:
        with pytest.raises(TicketUnavailable, match=r"redmine .*Connection refused"):
            backend.find(fp())
        with pytest.raises(TicketUnavailable):
            backend.add_note(ref, "while Redmine is down")
    finally:
        redmine_lab.start_server()
    backend.add_note(ref, "after Redmine is back")
    assert redmine_lab.issue(ref.id)["journals"][-1]["notes"] == "after Redmine is back"

    # a peer that accepts the connection and never answers: the client's timeout makes it retryable
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", free_port(SILENT_PORTS)))
        silent.listen(8)
        port = silent.getsockname()[1]
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
        b = build("redmine", redmine_lab.backend_config(url=f"http://127.0.0.1:{port}", timeout=0.5))
        with pytest.raises(TicketUnavailable, match=r"no answer within 0.5 s"):
            b.find(fp())
        for conn in accepted:
            conn.close()


def test_hostile_alert_text_is_literal_in_the_issue(
    redmine_lab: RedmineLab, backend: RedmineBackend, tmp_path: Any
) -> None:
    """Labels and annotations with <script>, <img onerror>, '|', fences, NUL and U+202E, through the engine into
    a real Redmine (CommonMark): read back, the description and notes render with none of it as markup."""
    from tests.integration.hostile import SCRIPT, assert_markdown_safe, assert_plain_safe, file_ticket

    svc = file_ticket(backend, tmp_path)
    try:
        (inc,) = svc.store.query()
        issue = redmine_lab.issue(str(inc.ticket_id))
        assert_markdown_safe(issue["description"])
        assert_plain_safe(issue["subject"])
        assert SCRIPT in issue["subject"]  # a plain-text field: the text itself (Redmine escapes it on display)
        notes = [j["notes"] for j in issue["journals"] if j.get("notes")]
        assert notes
        for note in notes:
            assert_markdown_safe(note)
    finally:
        svc.close()
