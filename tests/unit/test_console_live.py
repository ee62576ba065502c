"""The console's live stream, its host overview and the per-target rows of a check, over real stores.

The Service here is the agent's own (tokens, approvals, journal on a temporary data directory, the incident
engine on the seeded data of tests/labs/consoledata.py); nothing is mocked. The browser side is tested in
tests/integration/test_console_live.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from diag.api.hostview import STATE_ORDER, overview, sparkline
from diag.api.jobs import Job
from diag.api.live import LiveFeed
from tests.labs.consoledata import DEVICES, SERVERS, seed


def _service(tmp_path: Path) -> Any:
    from diag.agent.daemon import load_config
    from diag.api import LazyApi
    from diag.incidents.service import IncidentService

    s = seed(tmp_path, 1)
    cfg, inv = load_config(str(s.inventory))
    assert cfg.incidents is not None and inv is not None
    svc = LazyApi(cfg, inv, IncidentService(cfg.incidents, inv.hosts), None).get_service()
    return svc


def _next(gen: Any, timeout: float = 10.0) -> bytes:
    """The stream's next chunk, read on a thread so a stream that never speaks fails the test instead of hanging."""
    out: list[bytes] = []
    t = threading.Thread(target=lambda: out.append(next(gen)), daemon=True)
    t.start()
    t.join(timeout)
    assert out, "the stream said nothing"
    return out[0]


def _event(gen: Any) -> bytes:
    """The next event that is not a ping (pings come every keepalive until the watcher's next look)."""
    for _ in range(100):
        chunk = _next(gen)
        if not chunk.startswith(b"event: ping"):
            return chunk
    raise AssertionError("only pings: the change was never sent")


def test_the_live_stream_says_what_changed_and_ends_with_the_session(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    feed = LiveFeed(svc, poll=0.05)
    why = [""]
    gen = feed.follow(lambda: {"approvals": len(svc.approvals.list("pending"))}, lambda: why[0], keepalive=0.2)
    assert _next(gen).startswith(b"retry:")
    hello = _next(gen)
    assert hello.startswith(f"id: {feed.epoch}-0\nevent: hello".encode()) and b'"approvals": 2' in hello
    svc.approvals.create("token:petrov", "disk-cleanup", ["db-03"], {}, ["clean"], "changes hosts")
    chunk = _event(gen)
    assert chunk.startswith(f"id: {feed.epoch}-1\nevent: change".encode()), chunk
    assert b'"approvals"' in chunk and b'"approvals": 3' in chunk
    assert b"incidents" not in chunk.split(b"counts")[0]  # only what moved
    # an acknowledgement through the engine is an incidents change
    first = svc.incidents.open_incidents()[0]["id"]
    svc.incidents.acknowledge(first, "token:petrov")
    chunk = _event(gen)
    assert b"event: change" in chunk and b'"incidents"' in chunk
    why[0] = "revoked"  # the token revoked (or the session expired, or logged out)
    chunk = _event(gen)
    assert chunk.startswith(b"event: logout") and b'"revoked"' in chunk
    gen.close()
    assert feed._subscribers == 0
    feed.close()


def test_a_page_that_reconnects_gets_what_it_missed_or_a_resync_after_a_restart(tmp_path: Path) -> None:
    """Last-Event-ID within one run: the changes since it, at once. From another run (a restart: another
    epoch), or ahead of this run's count: ``resync``, and the page fetches every region again."""
    from diag.api.live import parse_id

    svc = _service(tmp_path)
    feed = LiveFeed(svc, poll=0.05)
    gen = feed.follow(lambda: {}, lambda: "", keepalive=0.2)
    _next(gen), _next(gen)
    svc.approvals.create("token:petrov", "disk-cleanup", ["db-03"], {}, ["clean"], "changes hosts")
    assert b"event: change" in _event(gen)
    gen.close()  # the page lost its stream here; meanwhile an incident is acknowledged
    svc.incidents.acknowledge(svc.incidents.open_incidents()[0]["id"], "token:petrov")
    feed.poke()
    again = feed.follow(lambda: {}, lambda: "", keepalive=0.2, after=(feed.epoch, 1))
    _next(again)
    hello = _next(again)
    assert b'"resync": false' in hello and f"id: {feed.epoch}-1".encode() in hello
    chunk = _event(again)
    assert chunk.startswith(f"id: {feed.epoch}-2\nevent: change".encode()) and b'"incidents"' in chunk
    again.close()
    for after in (("0badc0de", 2), (feed.epoch, 99)):  # another run of the agent; a count this run never had
        other = feed.follow(lambda: {}, lambda: "", keepalive=0.2, after=after)
        _next(other)
        assert b'"resync": true' in _next(other)
        other.close()
    assert feed.poll(("0badc0de", 2))["resync"] and not feed.poll((feed.epoch, 2))["resync"]
    assert feed.poll((feed.epoch, 1))["what"] == ["incidents"]
    assert parse_id(f"{feed.epoch}-7") == (feed.epoch, 7)
    assert parse_id("7") is None and parse_id("x-1") is None and parse_id(None) is None
    feed.close()


def test_every_known_host_is_listed_worst_first(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    svc.local_host = "agent-box"
    incidents = svc.incidents.open_incidents()
    incidents.append({"host": "pdu-9", "severity": "warning", "id": 0})  # named by an alert, not in the inventory
    rows = overview(svc, incidents)
    names = [r.name for r in rows]
    assert set(names) == {*SERVERS, *DEVICES, "agent-box", "pdu-9"}
    ranks = [STATE_ORDER.index(r.state) for r in rows]
    assert ranks == sorted(ranks) and rows[0].state == "critical"
    kinds = {r.name: r.kind for r in rows}
    assert kinds["agent-box"] == "agent" and kinds["pdu-9"] == "other"
    assert kinds["sw-01"] == "device" and kinds["web-01"] == "server"
    # a host whose last check could not reach it is never listed as fine
    unreachable = [r for r in rows if r.check_status == "unreachable"]
    assert unreachable and all(r.state in ("critical", "unreachable") for r in unreachable)


def test_a_jobs_console_stream_announces_running_hosts_without_renumbering_the_api_events() -> None:
    job = Job("j1", "token:petrov", "facts", ["web"], ["web-01", "web-02"], False)
    job.emit("start", {"job": "j1"}, "running")
    job.mark_started("web-01")
    job.emit("host", {"host": "web-01", "status": "ok"})
    job.emit("done", {"state": "done"}, "done")
    console = b"".join(job.follow(0, running=True))
    api = b"".join(job.follow(0))
    assert b"event: running" in console and b'"host": "web-01"' in console
    assert b"event: running" not in api
    ids = [line for line in console.split(b"\n") if line.startswith(b"id:")]
    assert ids == [b"id: 1", b"id: 2", b"id: 3"]  # the same numbers as the API's stream


def test_sparkline_scales_into_its_box() -> None:
    assert sparkline([(0.0, 1.0)]) is None
    line = sparkline([(0.0, 1.0), (10.0, 3.0), (20.0, 2.0)], width=100, height=20)
    assert line is not None
    pts = [tuple(float(v) for v in p.split(",")) for p in line["points"].split()]
    assert pts[0] == (1.0, 19.0) and pts[1] == (50.0, 1.0) and pts[2][0] == 99.0
    assert (line["lo"], line["hi"], line["last"]) == (1.0, 3.0, 2.0)


def test_a_page_refused_a_stream_polls_and_learns_the_same(tmp_path: Path) -> None:
    import time

    svc = _service(tmp_path)
    feed = LiveFeed(svc, poll=0.05)
    first = feed.poll(None)
    assert first["what"] == []
    seen = (feed.epoch, first["seq"])
    assert feed.poll(seen)["what"] == []
    svc.approvals.create("token:petrov", "disk-cleanup", ["db-03"], {}, ["clean"], "changes hosts")
    time.sleep(0.1)
    later = feed.poll(seen)
    assert later["seq"] > first["seq"] and later["what"] == ["approvals"]
    assert feed.poll((feed.epoch, later["seq"]))["what"] == []


def test_a_devices_last_snmp_poll_reads_as_interfaces_up_and_down() -> None:
    from diag.api.hostview import snmp_summary
    from diag.model import Result

    r = Result()
    oper = r.metric("diag_snmp_if_oper_status", "ifOperStatus: 1 up, 2 down", labels=("ifName",))
    for name, v in (("Gi0/1", 1), ("Gi0/2", 2), ("Gi0/3", 1), ("Gi0/4", 7)):
        oper.add(v, name)
    r.metric("diag_snmp_sys_uptime_seconds", "sysUpTime").add(12345)
    r.find("if_down", "critical", "interface Gi0/2 is down (admin up)", subject="Gi0/2")
    s = snmp_summary(r)
    assert (s["interfaces_up"], s["interfaces_down"]) == (2, 2)
    assert [f["name"] for f in s["families"]] == ["diag_snmp_if_oper_status", "diag_snmp_sys_uptime_seconds"]
    assert s["families"][0]["series"] == 4 and s["findings"][0]["severity"] == "critical"
