"""API tokens (hashed, revocable, constant-time checked), roles and scopes, and the journal's hash chain."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from diag.api import policy
from diag.api.tokens import TokenStore, token_prefix
from diag.errors import ConfigError
from diag.inventory import Host
from diag.journal import Journal
from diag.journal.period import parse_since


def test_tokens_are_stored_only_as_salted_hashes_and_revocation_is_immediate(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    tok = store.add("alice", "engineer", ["web"], ["disk-full"])
    secret = tok.split("_", 2)[2]
    raw = (tmp_path / "api.db").read_bytes()
    assert secret.encode() not in raw and tok.encode() not in raw
    p = store.authenticate(tok)
    assert p is not None and (p.name, p.role, p.groups, p.playbooks) == ("alice", "engineer", ("web",), ("disk-full",))
    assert store.authenticate(tok[:-1] + ("A" if tok[-1] != "A" else "B")) is None
    assert store.authenticate("diag_00000000_" + secret) is None  # right secret, wrong id
    assert store.authenticate("not-a-token") is None and store.authenticate("") is None
    other = store.add("bob", "viewer")
    assert store.authenticate(other).role == "viewer"  # type: ignore[union-attr]
    # the same secret under two salts gives two hashes
    salts = {bytes(r[0]) for r in sqlite3.connect(tmp_path / "api.db").execute("SELECT salt FROM tokens")}
    assert len(salts) == 2
    assert store.revoke("alice") and store.authenticate(tok) is None and store.by_id(p.token_id) is None
    assert not store.revoke("alice")
    assert token_prefix(tok) == f"diag_{p.token_id}_..." and secret not in token_prefix(tok)
    with pytest.raises(ConfigError, match="exists"):
        store.add("bob", "lead")
    with pytest.raises(ConfigError, match="role"):
        store.add("carol", "root")


def test_roles_and_scopes(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    web = Host("w1", "10.0.0.1", groups=("web",))
    db = Host("d1", "10.0.0.2", groups=("db",))
    eng = store.authenticate(store.add("eng", "engineer", ["web"], ["disk-full"]))
    lead = store.authenticate(store.add("lead", "lead"))
    viewer = store.authenticate(store.add("v", "viewer"))
    assert eng and lead and viewer
    policy.check_run(eng, "disk-full", [web])
    with pytest.raises(policy.Forbidden, match="d1"):
        policy.check_run(eng, "disk-full", [web, db])
    with pytest.raises(policy.Forbidden, match="facts"):
        policy.check_run(eng, "facts", [web])
    with pytest.raises(policy.Forbidden, match="engineer"):
        policy.check_run(viewer, "disk-full", [web])
    policy.check_run(lead, "anything", [web, db])
    with pytest.raises(policy.Forbidden, match="lead"):
        policy.approve(eng, "token:x", "disk-full", [web])
    with pytest.raises(policy.Forbidden, match="requested"):
        policy.approve(lead, "token:lead", "disk-full", [web])
    policy.approve(lead, "token:eng", "disk-full", [web])


def test_the_journal_chain_detects_edits_deletions_and_insertions(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    for i in range(5):
        j.append("token:a", "check.started", f"h{i}", "running", {"i": i, "odd": "é\n"})
    assert j.verify() == (5, [])
    db = sqlite3.connect(tmp_path / "journal.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM journal WHERE seq = 3")
    db.execute("DROP TRIGGER journal_no_delete")
    db.execute("DROP TRIGGER journal_no_update")
    db.execute("UPDATE journal SET details = ? WHERE seq = 2", (json.dumps({"i": 99, "odd": "é\n"}),))
    db.execute("DELETE FROM journal WHERE seq = 4")
    db.commit()
    n, problems = j.verify()
    assert n == 4
    assert [(p.seq, p.reason.split(" (")[0]) for p in problems] == [
        (2, "its content does not match its hash"),  # record 3 still links to 2's stored hash
        (5, "follows record 3: records 4..4 are missing"),
        (5, "its link to the previous record does not match"),
    ]
    assert str(problems[0]).startswith("record 2: ")
    j.close()


def test_journal_query_filters_and_since() -> None:
    assert parse_since("2h", now=10000.0) == 10000.0 - 7200
    assert parse_since("2026-01-01T00:00:00Z") == parse_since("2026-01-01T00:00")
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday")


def test_journal_action_filter_is_a_family_not_a_pattern(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    for action in ("check.started", "check.host", "checkpoint", "approval.approved", "check_x"):
        j.append("a", action)
    assert [r.action for r in j.query(action="check")] == ["check.started", "check.host"]
    assert [r.action for r in j.query(action="check_x")] == ["check_x"]
    assert [r.action for r in j.query(limit=2, newest_first=True)] == ["check_x", "approval.approved"]


def test_incident_transitions_are_copied_into_the_journal_once(tmp_path: Path) -> None:
    from diag.incidents.service import IncidentService
    from diag.incidents.settings import from_mapping
    from diag.journal.incidents import IncidentJournal, attach
    from diag.model import Finding

    svc = IncidentService(from_mapping({"open_after": 0, "close_after": 0}, tmp_path), {})
    j = Journal(tmp_path / "journal.db")
    try:
        attach(svc, j)
        svc.engine.ingest("test", [Finding("disk_full", "critical", "/ is full", "/", host="web-03")])
        iid = svc.store.query()[0].id
        svc.engine.acknowledge(iid, "token:petrov")
        recs = j.query(action="incident")
        kinds = [r.action for r in recs]
        assert "incident.opened" in kinds and kinds[-1] == "incident.acknowledged"
        assert recs[-1].actor == "token:petrov" and recs[-1].target == f"incident:{iid}"
        assert recs[0].details["host"] == "web-03" and recs[0].details["check"] == "disk_full"
        # a restart picks up where the journal stops: nothing twice
        again = IncidentJournal(svc.store, j)
        again.sync()
        assert len(j.query(action="incident")) == len(recs)
        assert j.verify() == (len(j.query()), [])
    finally:
        svc.close()
        j.close()


def test_sla_time_left_counts_down_in_whole_units() -> None:
    """Rounded down, as a countdown reads (the console's script writes the same words every second)."""
    from diag.api.fmt import left

    assert left(14400) == "4 h 0 min"
    assert left(14399) == "3 h 59 min"  # never "4 h 60 min" nor "4 h 0 min" with a second to go
    assert left(3540) == "59 min 00 s"
    assert left(61.9) == "1 min 01 s"
    assert left(-90) == "breached 1 min 30 s ago"
    assert left(None) == "-"


def test_sla_levels_turn_amber_at_a_quarter_of_the_window_and_red_when_breached() -> None:
    from diag.api.incidents import sla_level

    assert sla_level(3000, 3600) == "ok"
    assert sla_level(900, 3600) == "soon"
    assert sla_level(-1, 3600) == "breached"
    assert sla_level(1000, None) == "ok" and sla_level(899, None) == "soon"
    assert sla_level(None, 3600) is None


def test_incident_history_folds_repeats_and_pages_newest_first() -> None:
    from diag.api.console import history_page

    events = [{"kind": "opened", "text": "opened", "at": 1.0}]
    events += [{"kind": "assigned", "text": f"assigned to {w}", "at": 2.0 + k} for k, w in enumerate("ab" * 30)]
    events += [{"kind": "note", "text": "same", "at": 100.0 + k} for k in range(5)]
    page = history_page(events, 1, per=25)
    assert page["total"] == 66 and page["pages"] == 3
    assert page["events"][0]["text"] == "same" and page["events"][0]["repeat"] == 5
    last = history_page(events, 99, per=25)
    assert last["page"] == 3 and last["events"][-1]["kind"] == "opened"
