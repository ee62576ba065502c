"""Approvals bound to people: the requester is re-checked when a lead decides, revoking or narrowing a token
cancels its pending requests (journaled), requests expire, a decision needs a comment, and a request shows
the rendered commands of its changing steps.

The Service and the stores are the real ones on a temporary data directory; nothing connects to a host
(a request that is refused never starts a job, and the one approved runs against an address nobody serves).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from diag import inventory
from diag.api.jobs import Event
from diag.api.schemas import ApprovalDecision
from diag.api.service import ApiSettings, Conflict, Invalid, Service
from diag.api.tokens import Principal
from tests.labs.apienv import CHANGE_PLAYBOOK


@pytest.fixture
def svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "change-marker.yaml").write_text(CHANGE_PLAYBOOK)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "groups: {web: {}, db: {}}\n"
        "hosts:\n"
        "  w1: {address: 127.0.0.1, port: 1, groups: [web]}\n"
        "  d1: {address: 127.0.0.1, port: 1, groups: [db]}\n"
    )
    s = Service(tmp_path / "data", inventory.load(str(inv)), ApiSettings(approval_ttl_s=3600))
    yield s
    s.close()


def _token(svc: Service, name: str, role: str, groups: list[str], playbooks: list[str]) -> Principal:
    svc.tokens.add(name, role, groups, playbooks)
    p = svc.tokens.by_name(name)
    assert p is not None
    return p


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "diag.cli", "api", "token", *args, "--data", str(data)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def _request(svc: Service, p: Principal, marker: str = "/etc/cron.d/evil") -> str:
    job, a = svc.start_check(p, "change-marker", ["w1"], {"marker": marker}, read_only=False)
    assert job is None and a is not None and a.state == "pending"
    return a.id


def test_a_request_shows_its_variables_and_rendered_commands(svc: Service) -> None:
    eng = _token(svc, "eng3", "engineer", ["web"], ["change-marker"])
    a = svc.get_approval(_request(svc, eng, "/etc/cron.d/x y"))
    assert a.vars == {"marker": "/etc/cron.d/x y"}
    assert a.hosts == [{"name": "w1", "groups": ["web"]}]
    assert a.commands == [
        {
            "host": "w1",
            "step": "touch",
            "command": "touch '/etc/cron.d/x y'",
            "sudo": False,
            "when": None,
            "error": None,
        }
    ]
    assert a.requester_token == eng.token_id and a.expires is not None
    d = a.to_dict()
    assert d["commands"][0]["command"] == "touch '/etc/cron.d/x y'"


def test_approval_after_revoke_is_refused_and_journaled(svc: Service) -> None:
    eng = _token(svc, "eng3", "engineer", ["web"], ["change-marker"])
    lead = _token(svc, "lead1", "lead", ["*"], ["*"])
    aid = _request(svc, eng)
    assert svc.tokens.revoke("eng3")  # revoked behind the agent's back (no CLI, so nothing cancelled it yet)
    with pytest.raises(Conflict, match=r"cancelled: the requester's token .* was revoked"):
        svc.decide(lead, aid, True, "looks fine")
    a = svc.get_approval(aid)
    assert a.state == "cancelled" and a.job is None
    assert svc.jobs.recent() == []  # nothing ran as token:eng3
    rec = svc.journal.query(action="approval.cancelled")
    assert len(rec) == 1 and rec[0].actor == "token:lead1" and rec[0].details["approval"] == aid
    assert "revoked" in rec[0].details["reason"]
    with pytest.raises(Conflict):  # and it stays closed
        svc.decide(lead, aid, True, "again")


def test_revoking_with_the_cli_cancels_pending_requests_at_once(svc: Service) -> None:
    eng = _token(svc, "eng3", "engineer", ["web"], ["change-marker"])
    other = _token(svc, "eng4", "engineer", ["web"], ["change-marker"])
    aid, keep = _request(svc, eng), _request(svc, other)
    r = _cli(svc.data, "revoke", "eng3")
    assert r.returncode == 0, r.stderr
    assert f"approval request {aid}" in r.stdout and "cancelled" in r.stdout
    assert svc.get_approval(aid).state == "cancelled"
    assert svc.get_approval(keep).state == "pending"  # another engineer's request is untouched
    rec = [x for x in svc.journal.query(action="approval.cancelled") if x.details["approval"] == aid]
    assert len(rec) == 1 and rec[0].actor.startswith("cli:")


def test_scope_narrowing_cancels_what_no_longer_fits_and_decisions_recheck_it(svc: Service) -> None:
    eng = _token(svc, "eng4", "engineer", ["web"], ["change-marker", "facts"])
    lead = _token(svc, "lead1", "lead", ["*"], ["*"])
    aid = _request(svc, eng)
    r = _cli(svc.data, "scope", "eng4", "--groups", "db")  # w1 is in web
    assert r.returncode == 0, r.stderr
    assert svc.get_approval(aid).state == "cancelled"
    assert "no longer in the groups" in svc.journal.query(action="approval.cancelled")[-1].details["reason"]
    # narrowing the playbooks behind the CLI's back: the decision itself refuses
    assert _cli(svc.data, "scope", "eng4", "--groups", "web").returncode == 0
    aid2 = _request(svc, eng)
    svc.tokens.change("eng4", playbooks=["facts"])
    with pytest.raises(Conflict, match="no longer granted"):
        svc.decide(lead, aid2, False, "rejecting anyway")
    assert svc.get_approval(aid2).state == "cancelled"
    # demoted to viewer
    svc.tokens.change("eng4", role="engineer", playbooks=["change-marker"])
    aid3 = _request(svc, eng)
    assert _cli(svc.data, "scope", "eng4", "--role", "viewer").returncode == 0
    assert svc.get_approval(aid3).state == "cancelled"


def test_a_decision_needs_a_comment_and_a_request_expires(svc: Service) -> None:
    eng = _token(svc, "eng3", "engineer", ["web"], ["change-marker"])
    lead = _token(svc, "lead1", "lead", ["*"], ["*"])
    aid = _request(svc, eng)
    for blank in ("", "   \n", "\x1f", "\ufeff", "\x01\x85"):
        with pytest.raises(Invalid, match="comment is required"):
            svc.decide(lead, aid, False, blank)
    assert svc.get_approval(aid).state == "pending"
    svc.settings.approval_ttl_s = 0.05
    late = _request(svc, eng)
    time.sleep(0.1)
    assert svc.get_approval(late).state == "expired"
    assert [r.details["approval"] for r in svc.journal.query(action="approval.expired")] == [late]
    with pytest.raises(Conflict, match="already expired"):
        svc.decide(lead, late, True, "too late")
    a, job = svc.decide(lead, aid, False, "not in a maintenance window")
    assert a.state == "rejected" and a.comment == "not in a maintenance window" and job is None


def test_event_streams_are_capped_so_they_cannot_hold_every_http_worker(svc: Service) -> None:
    from diag.api.jobs import Job
    from diag.api.service import Busy

    svc.settings.max_streams = 1
    svc._streams = threading.BoundedSemaphore(1)
    job = Job("j1", "token:x", "facts", ["w1"], ["w1"], False, state="done")
    job.events.append(Event(1, "done", {"job": "j1", "state": "done", "exit_status": 0}))
    first = svc.stream(job, 0)
    with pytest.raises(Busy, match="1 event streams are open"):
        svc.stream(job, 0)
    assert b"event: done" in b"".join(first)  # read to its end: the slot is free again
    assert b"event: done" in b"".join(svc.stream(job, 0))


# ECMAScript's WhiteSpace and LineTerminator (ECMA-262 §12.2, §12.3): what ``\s`` means to a client that reads the
# OpenAPI pattern (schemathesis, a browser), which is not Python's ``\s``.
_ECMA_SPACE = {0x09, 0x0B, 0x0C, 0x20, 0xA0, 0xFEFF, 0x0A, 0x0D, 0x2028, 0x2029} | {
    cp for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Zs"
}


def test_the_comment_rule_means_the_same_to_the_api_schema_the_service_and_an_ecmascript_client(svc: Service) -> None:
    """A comment is accepted alike by the OpenAPI pattern read as ECMAScript, msgspec's check of the body and the
    service (console and API): schemathesis once sent "\x1f", valid to it, and the API answered 400."""
    decode = msgspec.json.Decoder(ApprovalDecision).decode
    eng = _token(svc, "eng4", "engineer", ["web"], ["change-marker"])
    lead = _token(svc, "lead2", "lead", ["*"], ["*"])
    aid = _request(svc, eng)
    controls = set(range(0x20)) | set(range(0x7F, 0xA0))
    for cp in [*range(0x3100), *range(0xFE00, 0x10000)]:
        if 0xD800 <= cp < 0xE000:
            continue  # lone surrogates are not JSON text
        ch = chr(cp)
        ecma_visible = cp not in _ECMA_SPACE and cp not in controls
        body = msgspec.json.encode({"comment": ch})
        try:
            decode(body)
            schema_visible = True
        except msgspec.ValidationError:
            schema_visible = False
        assert schema_visible == ecma_visible, f"U+{cp:04X}: msgspec {schema_visible}, ECMAScript {ecma_visible}"
        if not ecma_visible:
            with pytest.raises(Invalid, match="comment is required"):
                svc.decide(lead, aid, False, " " + ch)
    assert svc.get_approval(aid).state == "pending"
    a, _ = svc.decide(lead, aid, False, "\x1f\u00a0é")  # one visible character is enough
    assert a.state == "rejected"
