"""The incident engine on its own: damping, occurrences, verified clearing, reopen, suppression, topology,
classification, masking, SLA, and the outbox delivering to the embedded (local) ticket store.

Time is a settable clock, so damping and SLA are exercised without sleeping.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag.errors import ConfigError
from diag.incidents.engine import Verdict
from diag.incidents.knowledge import PROVIDERS, Facts, Hypothesis, KnowledgeBase
from diag.incidents.masking import Masker
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.model import Evidence, Finding


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, clock: Clock, hosts: dict[str, Any] | None = None, **cfg: Any) -> IncidentService:
    settings = from_mapping({"open_after": 60, "close_after": 30, **cfg}, tmp_path)
    return IncidentService(settings, hosts, clock=clock)


@pytest.fixture
def svc(tmp_path: Path, clock: Clock) -> Iterator[IncidentService]:
    s = make(tmp_path, clock)
    yield s
    s.close()


def disk(host: str = "web-1", pct: int = 99, text: str = "") -> Finding:
    ev = Evidence("command", "df -Pk /data", text or f"/dev/sdb1 1000 990 10 {pct}% /data")
    return Finding("disk_full", "critical", f"/data is {pct}% full", "/data", evidence=[ev], host=host)


def tickets(svc: IncidentService) -> list[dict[str, Any]]:
    svc.outbox.drain(5)
    return svc.backend.tickets()  # type: ignore[attr-defined, no-any-return]


def test_damping_then_one_ticket_for_repeats(svc: IncidentService, clock: Clock) -> None:
    scope = "probe:filesystem@web-1"
    assert [o.action for o in svc.engine.observe("probe", scope, [disk()])] == ["pending"]
    assert tickets(svc) == []  # damped: not open yet
    clock.advance(61)
    assert [o.action for o in svc.engine.observe("probe", scope, [disk()])] == ["opened"]
    for _ in range(5):
        clock.advance(30)
        assert svc.engine.observe("probe", scope, [disk()])[0].action == "occurrence"
    (t,) = tickets(svc)
    inc = svc.store.query()[0]
    assert inc.occurrences == 7 and inc.ticket_id == str(t["id"])
    # a push source (alert, trap) notes every repeat; a periodic one notes only new evidence, at most hourly
    svc.engine.ingest("alertmanager", [disk()])
    assert len(tickets(svc)) == 1
    notes = svc.backend.ticket(t["id"])["notes"]  # type: ignore[attr-defined]
    assert len(notes) == 1 and "occurrence 8" in notes[0]["text"]


def test_flap_before_open_leaves_no_ticket(svc: IncidentService, clock: Clock) -> None:
    scope = "probe:filesystem@web-1"
    svc.engine.observe("probe", scope, [disk()])
    clock.advance(20)
    assert svc.engine.observe("probe", scope, [])[0].action == "discarded"
    assert tickets(svc) == []
    kinds = [e.kind for e in svc.store.events(1)]
    assert kinds == ["registered", "discarded"]


def test_clear_needs_hysteresis_and_a_confirming_recheck(svc: IncidentService, clock: Clock) -> None:
    scope = "probe:filesystem@web-1"
    svc.engine.observe("probe", scope, [disk()])
    clock.advance(61)
    svc.engine.observe("probe", scope, [disk()])
    clock.advance(10)
    still_full = [disk()]
    assert svc.engine.observe("probe", scope, [], recheck=lambda: still_full)[0].action == "clearing"
    clock.advance(10)  # within close_after: no re-check yet
    assert svc.engine.observe("probe", scope, [])[0].action == "clearing"
    clock.advance(30)  # the re-check still finds it: stays open
    out = svc.engine.observe("probe", scope, [])
    assert out[0].action == "still_open" and svc.store.get(1).state == "open"  # type: ignore[union-attr]
    clock.advance(10)
    svc.engine.observe("probe", scope, [])
    clock.advance(31)
    still_full.clear()
    assert svc.engine.observe("probe", scope, [])[0].action == "resolved"
    (t,) = tickets(svc)
    assert t["status"] == "closed"
    kinds = [e.kind for e in svc.store.events(1)]
    assert kinds.count("verify_failed") == 1 and kinds.index("resolved") > kinds.index("verify_failed")


def test_push_resolve_is_verified_and_recurrence_reopens(svc: IncidentService, clock: Clock) -> None:
    f = disk()
    svc.engine.ingest("alertmanager", [f])
    clock.advance(61)
    svc.engine.ingest("alertmanager", [f])
    clock.advance(31)
    no = svc.engine.resolve("alertmanager", f.fingerprint, lambda: Verdict(False, "re-check: still 99% full"))
    assert no.action == "still_open"
    clock.advance(31)
    yes = svc.engine.resolve("alertmanager", f.fingerprint, lambda: Verdict(True, "re-check: 40% full now"))
    assert yes.action == "resolved"
    clock.advance(600)  # within reopen_window (1 d)
    assert svc.engine.ingest("alertmanager", [f])[0].action == "reopened"
    (t,) = tickets(svc)
    assert t["status"] == "open"
    texts = [n["text"] for n in svc.backend.ticket(t["id"])["notes"]]  # type: ignore[attr-defined]
    assert any("still 99% full" in x for x in texts) and any("40% full now" in x for x in texts)
    assert svc.store.count(f.fingerprint) == 1  # the same incident, not a new one


def test_recurrence_after_the_window_is_a_new_incident_and_ticket(tmp_path: Path, clock: Clock) -> None:
    svc = make(tmp_path, clock, open_after=0, reopen_window=100)
    f = disk()
    svc.engine.ingest("trap", [f])
    clock.advance(31)
    svc.engine.resolve("trap", f.fingerprint, lambda: Verdict(True, "gone"))
    clock.advance(101)
    assert svc.engine.ingest("trap", [f])[0].action == "opened"
    ts = tickets(svc)
    assert len(ts) == 2 and ts[1]["fingerprint"] == f"{f.fingerprint}-2"
    svc.close()


def test_maintenance_and_silence_suppress_but_fire_never(tmp_path: Path, clock: Clock) -> None:
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(clock.t - 10, UTC).isoformat()
    end = datetime.fromtimestamp(clock.t + 3600, UTC).isoformat()
    svc = make(
        tmp_path,
        clock,
        maintenance=[{"hosts": ["web-1"], "starts": iso, "ends": end, "reason": "RAM upgrade"}],
        categories={"smoke_detected": "fire"},
    )
    out = svc.engine.ingest("probe", [disk()])
    assert out[0].action == "suppressed" and "RAM upgrade" in out[0].detail
    svc.engine.silence(["db-1"], [], 600, "vendor works on it", "alice")
    assert svc.engine.ingest("probe", [disk("db-1")])[0].action == "suppressed"
    smoke = Finding("smoke_detected", "critical", "smoke in server room", host="web-1")
    fire = svc.engine.ingest("trap", [smoke])[0]
    assert fire.action == "opened"  # no damping, no maintenance
    inc = svc.store.get(fire.incident_id or 0)
    assert inc is not None and inc.priority == "urgent" and inc.line == "L3"  # L2 (atypical) escalated at once
    assert [t["host"] for t in tickets(svc)] == ["web-1"]
    kinds = [e.kind for e in svc.store.events(1)]
    assert "suppressed" in kinds
    svc.close()


def test_topology_one_incident_on_the_switch(tmp_path: Path, clock: Clock) -> None:
    class H:
        def __init__(self, parents: tuple[str, ...] = ()) -> None:
            self.parents, self.groups = parents, ()

    hosts = {"core": H(), "sw1": H(("core",)), "a": H(("sw1",)), "b": H(("sw1",)), "c": H(("sw1",))}
    svc = make(tmp_path, clock, hosts)

    def down(h: str) -> Finding:
        return Finding("host_unreachable", "critical", f"{h}: no route to host", host=h)

    # the hosts are seen first, the switch in a later batch: still one incident, on the switch
    svc.engine.ingest("ssh", [down("a"), down("b")])
    svc.engine.ingest("ssh", [down("sw1"), down("c")])
    clock.advance(61)
    out = svc.engine.ingest("ssh", [down("c"), down("a"), down("sw1"), down("b")])
    assert sorted(o.action for o in out) == ["impact", "impact", "impact", "opened"]
    (t,) = tickets(svc)
    assert t["host"] == "sw1"
    sw = next(i for i in svc.store.query() if i.host == "sw1")
    assert sorted(sw.doc["impact"]) == ["a", "b", "c"]
    assert "a, b, c" in t["description"]


def test_topology_hosts_first_in_their_own_batches_still_fold(tmp_path: Path, clock: Clock) -> None:
    class H:
        def __init__(self, parents: tuple[str, ...] = ()) -> None:
            self.parents, self.groups = parents, ()

    svc = make(tmp_path, clock, {"sw1": H(), "a": H(("sw1",)), "b": H(("sw1",))})
    down = {h: Finding("host_unreachable", "critical", f"{h}: no route", host=h) for h in ("sw1", "a", "b")}
    svc.engine.observe("ssh", "ssh@a", [down["a"]])
    svc.engine.observe("ssh", "ssh@b", [down["b"]])
    clock.advance(30)
    svc.engine.observe("ssh", "ssh@sw1", [down["sw1"]])  # the switch is registered after its hosts
    clock.advance(31)  # the hosts' damping is over first: they still must not open on their own
    assert svc.engine.observe("ssh", "ssh@a", [down["a"]])[0].action == "impact"
    assert svc.engine.observe("ssh", "ssh@b", [down["b"]])[0].action == "impact"
    clock.advance(30)
    assert svc.engine.observe("ssh", "ssh@sw1", [down["sw1"]])[0].action == "opened"
    (t,) = tickets(svc)
    assert t["host"] == "sw1" and "a, b" in t["description"]
    svc.close()


def test_classification_typical_and_atypical(svc: IncidentService, clock: Clock) -> None:
    svc.settings.open_after = 0
    svc.engine.ingest("probe", [disk()])
    weird = Finding("frobnicator_jammed", "warning", "frobnicator 3 jammed", host="web-1")
    svc.engine.ingest("probe", [weird])
    typ, aty = sorted(svc.store.query(), key=lambda i: i.id)
    assert (typ.classification, typ.line, typ.doc["kb"]["id"]) == ("typical", "L1", "disk-full")
    assert "Find what grew" in typ.doc["kb"]["instructions"]
    assert (aty.classification, aty.line) == ("atypical", "L2")
    assert aty.doc["hypotheses"] and "no knowledge-base entry matched" in aty.doc["hypotheses"][0]["why"]
    t1, _ = tickets(svc)
    assert "Standard instructions" in t1["description"] and "Find what grew" in t1["description"]


def test_hypotheses_ranked_with_reasons_and_a_provider_hook() -> None:
    kb = KnowledgeBase.load()
    f = Finding("unit_log_errors", "warning", "nginx logs errors", host="web-1")

    def archive(facts: Facts) -> list[Hypothesis]:
        return [Hypothesis("nginx.conf changed 5 min before", 0.95, "archive", why="config archive diff at 10:02")]

    c = kb.classify(Facts.of(f), providers=[archive])
    assert c.classification == "atypical"  # log-errors is not verified
    assert [h.source for h in c.hypotheses[:2]] == ["archive", "kb"]
    assert c.hypotheses[0].why.startswith("rank 1:") and "not verified" in c.hypotheses[1].why
    assert "archive" not in PROVIDERS  # the hook is a registry others add to; nothing registered here


def test_kb_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "entries:\n"
        "  - id: x\n"
        "    title: t\n"
        "    cause: c\n"
        "    typical: true\n"
        "    match: {evidence: ['(unclosed']}\n"
        "  - id: x\n"
        "    title: t\n"
        "    cause: c\n"
        "    match: {checks: [a]}\n"
        "    lines: L1\n"
    )
    with pytest.raises(ConfigError) as e:
        KnowledgeBase.load([tmp_path], shipped=False)
    f = tmp_path / "bad.yaml"
    assert any(p.startswith(f"{f}:6: bad regex") for p in e.value.problems)
    assert f"{f}:5: a typical entry needs instructions (what line 1 tells the user)" in e.value.problems or any(
        "needs instructions" in p for p in e.value.problems
    )
    assert any(p.startswith(f"{f}:11: unknown key") for p in e.value.problems)


def test_masking_secrets_and_personal_data() -> None:
    m = Masker(["badge-[0-9]{6}"])
    text = (
        "password=hunter2 token: abc.def snmpwalk -v2c -c s3cr3tcomm 10.0.0.1\n"
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y https://bob:pw@example.net/x\n"
        "mail ivan.petrov@example.ru, call +7 912 345-67-89 or 8 (495) 123-45-67; badge-123456; 1048576 bytes"
    )
    out = m.text(text)
    for secret in (
        "hunter2",
        "abc.def",
        "s3cr3tcomm",
        "eyJhbG",
        ":pw@",
        "ivan.petrov",
        "912 345",
        "123-45-67",
        "123456",
    ):
        assert secret not in out, (secret, out)
    assert "password=***" in out and "1048576 bytes" in out and "https://bob:***@example.net" in out


def test_evidence_is_masked_in_ticket_and_attachment(svc: IncidentService, clock: Clock) -> None:
    svc.settings.open_after = 0
    svc.engine.ingest("probe", [disk(text="mysql -u root --password=Sup3rS3cret; owner admin@corp.example")])
    (t,) = tickets(svc)
    full = svc.backend.ticket(t["id"])  # type: ignore[attr-defined]
    blob = svc.backend.attachment(full["attachments"][0]["id"]).decode()  # type: ignore[attr-defined]
    for text in (t["description"], blob):
        assert "Sup3rS3cret" not in text and "admin@corp.example" not in text


def test_sla_breach_escalates_notes_and_counts(svc: IncidentService, clock: Clock) -> None:
    svc.settings.open_after = 0
    out = svc.engine.ingest("probe", [disk()])
    inc = svc.store.get(out[0].incident_id or 0)
    assert inc is not None and inc.respond_due == clock.t + 1800  # from the KB entry (disk-full: 30m/4h)
    clock.advance(1801)
    assert [o.action for o in svc.engine.tick()] == ["escalated"]
    assert svc.engine.tick() == []  # once per clock
    inc = svc.store.get(inc.id)
    assert inc is not None and inc.line == "L2"
    svc.engine.acknowledge(inc.id, "bob")
    clock.advance(4 * 3600)
    assert next(o.detail for o in svc.engine.tick()).startswith("SLA breach: not resolved")
    text = svc.render().decode()
    assert 'diag_incidents_sla_breaches_total{kind="respond"} 1.0' in text
    assert 'diag_incidents_delivery_failures_total{reason="rejected"} 0.0' in text  # known labels start at 0
    assert 'diag_incidents_open{classification="typical",line="L3",severity="critical"} 1.0' in text
    (t,) = tickets(svc)
    notes = [n["text"] for n in svc.backend.ticket(t["id"])["notes"]]  # type: ignore[attr-defined]
    assert any("escalated from L1 to L2" in n for n in notes) and any("Acknowledged by bob" in n for n in notes)


def test_a_reopened_incident_needs_a_new_acknowledgement(svc: IncidentService, clock: Clock) -> None:
    """Acknowledged, resolved, back within the reopen window: its new respond deadline counts again (under the old
    acknowledgement it could never be breached), the earlier acknowledgement stays on record, and a new one stops
    the clock."""
    svc.settings.open_after = 0
    f = disk()
    inc_id = svc.engine.ingest("probe", [f])[0].incident_id or 0
    svc.engine.acknowledge(inc_id, "bob")
    first_ack = clock.t
    clock.advance(60)
    assert svc.engine.resolve("probe", f.fingerprint, lambda: Verdict(True, "40% full now")).action == "resolved"
    clock.advance(600)
    assert svc.engine.ingest("probe", [f])[0].action == "reopened"
    inc = svc.store.get(inc_id)
    assert inc is not None and inc.acked_at is None and inc.doc["acked_before_reopen"] == [first_ack]
    assert inc.respond_due == clock.t + 1800
    clock.advance(1801)
    assert [o.action for o in svc.engine.tick()] == ["escalated"]  # nobody took it again: the respond clock ran out
    svc.engine.acknowledge(inc_id, "carol")
    inc = svc.store.get(inc_id)
    assert inc is not None and inc.acked_at == clock.t
    notes = [n["text"] for t in tickets(svc) for n in svc.backend.ticket(t["id"])["notes"]]  # type: ignore[attr-defined]
    assert any("Acknowledged by bob" in n for n in notes) and any("Acknowledged by carol" in n for n in notes)


def test_outbox_backs_off_while_the_store_is_locked_then_delivers(svc: IncidentService, clock: Clock) -> None:
    svc.settings.open_after = 0
    svc.outbox.backoff_initial = 0.05
    svc.outbox.backoff_max = 0.2
    locker = sqlite3.connect(str(svc.backend.path), timeout=0)  # type: ignore[attr-defined]
    locker.execute("BEGIN EXCLUSIVE")  # the ticket store refuses writers: a real "system unavailable"
    svc.backend.db.execute("PRAGMA busy_timeout = 50")  # type: ignore[attr-defined]
    for i in range(5):
        svc.engine.ingest("probe", [disk(f"web-{i}")])
    assert svc.outbox.run_once() == 0 and svc.outbox.failures == 1
    assert svc.store.outbox_depth() == {"pending": 5}
    assert "diag_incidents_ticket_system_up 0.0" in svc.render().decode()
    locker.rollback()
    locker.close()
    assert svc.outbox.drain(10)
    assert len(svc.backend.tickets()) == 5  # type: ignore[attr-defined]
    assert 'diag_incidents_delivery_failures_total{reason="unavailable"} 1.0' in svc.render().decode()


def test_rejected_delivery_is_parked_with_the_reason(svc: IncidentService, clock: Clock) -> None:
    svc.settings.open_after = 0
    out = svc.engine.ingest("probe", [disk()])
    svc.outbox.drain(5)
    inc_id = out[0].incident_id or 0
    with svc.store.tx() as c:  # point the incident at a ticket that does not exist: the store refuses the note
        c.execute("UPDATE incidents SET ticket_id = '999' WHERE id = ?", (inc_id,))
    svc.engine.ingest("alertmanager", [disk()])
    svc.outbox.run_once()
    assert svc.store.outbox_depth() == {"parked": 1}
    assert any(e.kind == "parked" and "no ticket 999" in e.text for e in svc.store.events(inc_id))
