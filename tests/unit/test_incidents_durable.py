"""Incident timers that survive a restart, the re-check notes and giving up, and flap detection.

A settable clock; a "restart" is a second IncidentService on the same data directory (the first one closed,
or simply abandoned as after a kill: every due time is committed with the change that set it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diag.incidents.engine import Verdict
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.incidents.store import Incident
from diag.model import Evidence, Finding


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def make(tmp_path: Path, clock: Clock, **cfg: Any) -> IncidentService:
    return IncidentService(from_mapping({"open_after": 60, "close_after": 30, **cfg}, tmp_path), {}, clock=clock)


def alert(subject: str = "/data") -> Finding:
    ev = Evidence("command", "df -Pk /data", "/dev/sdb1 1000 990 10 99% /data")
    return Finding("DiskFull", "critical", "/data is 99% full", subject, evidence=[ev], host="web-1")


def notes(svc: IncidentService) -> list[str]:
    svc.outbox.drain(5)
    (t,) = svc.backend.tickets()  # type: ignore[attr-defined]
    return [n["text"] for n in svc.backend.ticket(t["id"])["notes"]]  # type: ignore[attr-defined]


class _Spec:
    """A verifier that can be resumed: callable, with the JSON its source stores."""

    def __init__(self, cleared: bool, calls: list[str]) -> None:
        self.cleared, self.calls = cleared, calls
        self.resume_spec = {"cleared": cleared}

    def __call__(self) -> Verdict:
        self.calls.append("verify")
        return Verdict(self.cleared, "re-check: 40% full now" if self.cleared else "re-check: still 99% full")


def test_a_damped_push_incident_opens_at_its_due_time_after_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    svc = make(tmp_path, clock)
    assert svc.engine.ingest("alertmanager", [alert()])[0].action == "pending"
    assert svc.engine.next_due() == clock.t + 60
    svc.store.close()  # the process dies; the new one finds the due time in the database
    clock.advance(61)
    svc2 = make(tmp_path, clock)
    try:
        assert [o.action for o in svc2.engine.tick()] == ["opened"]
        assert svc2.engine.next_due() is None
        assert "no clear came within open_after" in svc2.store.events(1)[-1].text
    finally:
        svc2.close()


def test_a_periodic_pending_incident_waits_to_be_seen_again(tmp_path: Path) -> None:
    clock = Clock()
    svc = make(tmp_path, clock)
    try:
        svc.engine.observe("probe", "probe:fs@web-1", [alert()])
        clock.advance(61)
        assert svc.engine.tick() == []  # a probe has not said it is still there: no open by the clock
    finally:
        svc.close()


def test_a_deferred_recheck_resumes_after_a_restart_and_notes_attempts(tmp_path: Path) -> None:
    clock = Clock()
    svc = make(tmp_path, clock, open_after=0)
    calls: list[str] = []
    svc.engine.ingest("alertmanager", [alert()])
    clock.advance(5)
    assert svc.engine.resolve("alertmanager", alert().fingerprint, _Spec(False, calls)).action == "deferred"
    svc.store.close()  # killed during the hysteresis

    svc2 = make(tmp_path, clock, open_after=0)
    built: list[Mapping[str, Any]] = []

    def factory(inc: Incident, spec: Mapping[str, Any]) -> _Spec:
        built.append(spec)
        return _Spec(bool(spec["cleared"]), calls)

    svc2.engine.resumable("alertmanager", factory)
    try:
        clock.advance(26)
        assert svc2.engine.next_due() == clock.t - 1  # overdue: tick runs it now
        out = svc2.engine.tick()
        assert [o.action for o in out] == ["still_open"] and built == [{"cleared": False}] and calls == ["verify"]
        inc = svc2.store.get(1)
        assert inc is not None and inc.doc["recheck"]["attempts"] == 1
        for _ in range(2):
            clock.advance(31)
            svc2.engine.tick()
        assert calls == ["verify"] * 3 and svc2.engine.tick() == []
        inc = svc2.store.get(1)
        assert inc is not None and inc.state == "open" and "recheck" not in inc.doc and svc2.engine.next_due() is None
        texts = notes(svc2)
        assert [t.split(" at ")[0] for t in texts[:3]] == [f"Re-check {n} of 3" for n in (1, 2, 3)]
        assert len(set(texts)) == len(texts)  # no two notes alike: ticket systems that drop duplicates keep all
        assert "diag stopped re-checking" in texts[2] and "A person must confirm on web-1" in texts[2]
        assert "/dev/sdb1 1000 990 10 99% /data" in texts[2] or "still 99% full" in texts[2]
        assert [e.kind for e in svc2.store.events(1)].count("gave_up") == 1
    finally:
        svc2.close()


def test_a_recheck_that_cannot_be_rebuilt_is_given_up_with_a_note(tmp_path: Path) -> None:
    clock = Clock()
    svc = make(tmp_path, clock, open_after=0)
    svc.engine.ingest("snmp_trap", [alert()])
    clock.advance(5)
    svc.engine.resolve("snmp_trap", alert().fingerprint, lambda: Verdict(True, "link up"))  # no resume_spec
    svc.store.close()
    svc2 = make(tmp_path, clock, open_after=0)
    svc2.engine.resumable("snmp_trap", lambda inc, spec: None)
    try:
        clock.advance(30)
        svc2.engine.tick()
        inc = svc2.store.get(1)
        assert inc is not None and inc.state == "open" and "recheck" not in inc.doc
        assert "could not be resumed after a restart" in notes(svc2)[-1]
    finally:
        svc2.close()


def test_flapping_is_one_incident_with_one_note_at_start_and_one_at_stop(tmp_path: Path) -> None:
    clock = Clock()
    svc = make(tmp_path, clock, open_after=60, flapping={"window": 600, "start": 6, "stop": 2})
    fp = alert().fingerprint
    try:
        actions = []
        for _ in range(5):  # fires and resolves faster than open_after
            actions.append(svc.engine.ingest("alertmanager", [alert()])[0].action)
            clock.advance(10)
            actions.append(svc.engine.resolve("alertmanager", fp, _Spec(True, [])).action)
            clock.advance(10)
        assert actions[:5] == ["pending", "discarded", "pending", "discarded", "pending"]
        assert actions[5] == "flapping" and set(actions[6:]) == {"flapping"}
        incs = svc.store.query()
        assert len([i for i in incs if i.state == "open"]) == 1
        (live,) = [i for i in incs if i.state == "open"]
        assert live.doc["flapping"] and live.summary.startswith("[flapping] ")
        assert svc.metrics()[2].name == "diag_incidents_flapping" and svc.metrics()[2].samples[0][-1] == 1
        texts = notes(svc)
        svc.outbox.drain(5)
        (t,) = svc.backend.tickets()  # type: ignore[attr-defined]
        assert "Flapping" in t["description"] or any(x.startswith("Flapping:") for x in texts)
        assert not any(x.startswith("Seen again") for x in texts)
        clock.advance(601)  # quiet for a window: flapping stops, the condition is gone, so it is re-checked
        out = svc.engine.tick()
        assert [o.action for o in out][:1] == ["flapping_stopped"]
        svc.engine.tick()
        inc = svc.store.get(live.id)
        assert inc is not None and inc.state == "resolved"
        texts = notes(svc)
        assert sum(x.startswith("Flapping stopped") for x in texts) == 1
        kinds = [e.kind for e in svc.store.events(live.id)]
        assert kinds.count("flapping_start") == 1 and kinds.count("flapping_stop") == 1
    finally:
        svc.close()


def test_a_check_of_another_path_never_clears_the_incident(tmp_path: Path) -> None:
    """disk-full with path=/srv opened it; disk-full with the default path=/ finds nothing there: still open."""
    from diag.incidents.sources import observe_report, parse_playbook_scope, playbook_scope
    from diag.model import HostResult, RunReport

    clock = Clock()
    svc = make(tmp_path, clock, open_after=0, close_after=0)
    full = Finding("disk_full", "critical", "/srv is 100% full", "/srv", host="web-1")
    try:
        srv = RunReport("disk-full", [HostResult("web-1", "findings", findings=[full])])
        assert [o.action for o in observe_report(svc.engine, srv, lambda h: [full], variables={"path": "/srv"})] == [
            "opened"
        ]
        root = RunReport("disk-full", [HostResult("web-1", "ok")])
        for _ in range(3):
            clock.advance(60)
            assert observe_report(svc.engine, root, lambda h: []) == []  # another scope: nothing to clear
        (inc,) = svc.store.query()
        assert inc.state == "open" and inc.scope == "playbook:disk-full@web-1?path=%2Fsrv"
        assert parse_playbook_scope(inc.scope) == ("disk-full", "web-1", {"path": "/srv"})
        assert playbook_scope("disk-full", "web-1") == "playbook:disk-full@web-1"
        clock.advance(60)  # the same check (path=/srv) no longer finds it, and its re-check confirms: resolved
        out = observe_report(svc.engine, RunReport("disk-full", [HostResult("web-1", "ok")]), lambda h: [],
                             variables={"path": "/srv"})  # fmt: skip
        assert [o.action for o in out] == ["resolved"]
    finally:
        svc.close()


def test_a_trap_recheck_is_resumable(tmp_path: Path) -> None:
    """The agent's linkUp re-check carries what it needs to be built again after a restart."""
    from diag.agent.network import IF_INDEX, NetworkParts, _LinkRecheck

    ev = Evidence("text", "linkUp", "", {"varbinds": [[f"{IF_INDEX}7", "Integer", 7]]})
    up = Finding("snmp_link_up", "info", "", "eth1", evidence=[ev], host="sw-1")
    parts = NetworkParts.__new__(NetworkParts)
    spec = _LinkRecheck(parts, up).resume_spec
    assert spec == {"host": "sw-1", "subject": "eth1", "if_index": 7}
    again = parts._resume_recheck(None, spec)
    assert again.up.fingerprint == up.fingerprint and again.resume_spec == spec


def test_a_replayed_notification_is_not_seen_again(tmp_path: Path) -> None:
    """A firing job replayed after a crash carries its receipt time: it does not open the damped incident, and the
    resolved that was accepted right after it discards it (a flap acknowledged in time makes no ticket)."""
    clock = Clock()
    svc = make(tmp_path, clock, open_after=1.5)
    try:
        t0 = clock.t
        assert svc.engine.ingest("alertmanager", [alert()], now=t0)[0].action == "pending"
        clock.advance(3)  # the agent died before deleting the job, and came back
        assert svc.engine.ingest("alertmanager", [alert()], now=t0)[0].action == "pending"
        assert svc.engine.resolve("alertmanager", alert().fingerprint, _Spec(True, [])).action == "discarded"
        assert svc.store.query()[0].opened_at is None
    finally:
        svc.close()


def test_a_duplicate_resolved_keeps_the_recheck_count_and_its_time(tmp_path: Path) -> None:
    """Both Alertmanagers of an HA pair send the "resolved" (or a webhook is retried): the duplicate is not a new
    start. The re-checks already counted stand, the next one is not pulled forward, and the give-up note comes
    after the third (a duplicate used to start again at "Re-check 1 of 3", so diag never said it gave up)."""
    clock = Clock()
    svc = make(tmp_path, clock, open_after=0)
    calls: list[str] = []
    fp = alert().fingerprint
    try:
        svc.engine.ingest("alertmanager", [alert()])
        clock.advance(31)
        assert svc.engine.resolve("alertmanager", fp, _Spec(False, calls)).action == "still_open"  # re-check 1
        clock.advance(5)
        assert svc.engine.resolve("alertmanager", fp, _Spec(False, calls)).action == "deferred"  # the duplicate
        assert calls == ["verify"]  # not re-checked again 5 s after the first
        inc = svc.store.get(1)
        assert inc is not None and inc.doc["recheck"]["attempts"] == 1
        for _ in range(2):
            clock.advance(31)
            svc.engine.tick()
            svc.engine.resolve("alertmanager", fp, _Spec(False, calls))  # and again after each re-check
        assert calls == ["verify"] * 3
        inc = svc.store.get(1)
        assert inc is not None and inc.state == "open" and "recheck" not in inc.doc
        assert [e.kind for e in svc.store.events(1)].count("gave_up") == 1
        texts = notes(svc)
        assert [t.split(" at ")[0] for t in texts[:3]] == [f"Re-check {n} of 3" for n in (1, 2, 3)]
        clock.advance(60)
        svc.engine.ingest("alertmanager", [alert()])  # it fires again: its next "resolved" is news
        clock.advance(31)
        svc.engine.resolve("alertmanager", fp, _Spec(True, calls))
        assert calls == ["verify"] * 4 and svc.store.get(1).state == "resolved"  # type: ignore[union-attr]
    finally:
        svc.close()


def test_a_clock_that_goes_back_does_not_hold_up_the_due_times(tmp_path: Path) -> None:
    """The stored due times are wall-clock times (they outlive the process). After the system clock steps back
    an hour (NTP, a VM restored), a damped alert opens and a clearing incident is re-checked within one wait of
    the step, not an hour later; a step inside the tolerance (clocks of machines sharing PostgreSQL) moves nothing."""
    clock = Clock()
    svc = make(tmp_path, clock, open_after=60, close_after=30, tick=15)
    calls: list[str] = []
    fp = alert().fingerprint
    try:
        svc.engine.ingest("alertmanager", [alert()])
        clock.advance(-30)  # a small step back: within the tolerance, nothing moves
        assert svc.engine.tick() == [] and "clock_back" not in [e.kind for e in svc.store.events(1)]
        clock.advance(60)
        clock.advance(-3600)  # the clock steps back one hour 30 s into the damping
        assert svc.engine.tick() == []
        clock.advance(61)  # one open_after later by the new clock
        assert [o.action for o in svc.engine.tick()] == ["opened"]
        clock.advance(100)
        svc.engine.ingest("alertmanager", [alert()])
        clock.advance(10)
        assert svc.engine.resolve("alertmanager", fp, _Spec(True, calls)).action == "deferred"
        clock.advance(-7200)  # and two hours back during the hysteresis
        assert svc.engine.tick() == [] and calls == []
        clock.advance(31)  # one close_after later by the new clock
        assert [o.action for o in svc.engine.tick()] == ["resolved"] and calls == ["verify"]
        kinds = [e.kind for e in svc.store.events(1)]
        assert kinds.count("clock_back") == 2 and kinds[-1] == "resolved"
    finally:
        svc.close()


def test_a_shorter_open_after_after_a_restart_is_not_a_clock_step(tmp_path: Path) -> None:
    """open_after 1 h, then the agent restarts with 60 s: the stored due time is brought to 60 s from now (the
    damped alert does not wait the old hour), and nothing is said or moved as if the clock had gone back."""
    clock = Clock()
    svc = make(tmp_path, clock, open_after=3600)
    svc.engine.ingest("alertmanager", [alert()])
    svc.store.close()
    clock.advance(10)
    svc2 = make(tmp_path, clock, open_after=60)
    try:
        assert svc2.engine.tick() == []
        inc = svc2.store.get(1)
        assert inc is not None and inc.doc["open_due"] == clock.t + 60 and inc.first_seen == clock.t - 10
        clock.advance(60)
        assert [o.action for o in svc2.engine.tick()] == ["opened"]
        assert "clock_back" not in [e.kind for e in svc2.store.events(1)]
    finally:
        svc2.close()
