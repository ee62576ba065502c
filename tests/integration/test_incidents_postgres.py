"""The incident store on a real PostgreSQL (scale-out): the same engine behaviour, shared by several processes.

1. The engine's own scenarios from tests/unit/test_incidents.py (damping, verified clearing, reopen, topology, SLA)
   run unchanged on PostgreSQL, each in a fresh database.
2. Four processes ingest the same findings at the same moment: one live incident per fingerprint, every
   occurrence counted, one ticket each.
3. SIGKILL of a real `diag incidents deliver` at every step of delivery (the failpoints of
   tests/integration/test_incident_delivery.py) with the store on PostgreSQL: one ticket per incident, none lost.
4. Only one process drains a shared outbox; when it goes away another takes over.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tests.unit.test_incidents as unit
from diag.incidents.engine import Verdict
from diag.incidents.pgstore import PgStore
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from tests.integration.test_incident_delivery import TARGETS, deliver, finding
from tests.labs.pglab import PostgresServer

pytestmark = pytest.mark.integration

_n = count()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def fresh_db(pg: PostgresServer) -> str:
    """A new empty database on the server; returns its URL."""
    name = f"t{next(_n)}"
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")  # name is ours: t<N>
    return pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def pg_make(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., IncidentService]:
    def make(tmp_path: Path, clock: unit.Clock, hosts: dict[str, Any] | None = None, **cfg: Any) -> IncidentService:
        settings = from_mapping({"open_after": 60, "close_after": 30, "database_url": fresh_db, **cfg}, tmp_path)
        return IncidentService(settings, hosts, clock=clock)

    monkeypatch.setattr(unit, "make", make)  # the unit scenarios that build their own service get PostgreSQL too
    return make


@pytest.mark.parametrize(
    "scenario",
    [
        unit.test_damping_then_one_ticket_for_repeats,
        unit.test_flap_before_open_leaves_no_ticket,
        unit.test_clear_needs_hysteresis_and_a_confirming_recheck,
        unit.test_push_resolve_is_verified_and_recurrence_reopens,
        unit.test_sla_breach_escalates_notes_and_counts,
        unit.test_classification_typical_and_atypical,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_engine_scenarios_on_postgres(
    scenario: Callable[[IncidentService, unit.Clock], None], pg_make: Callable[..., IncidentService], tmp_path: Path
) -> None:
    clock = unit.Clock()
    svc = pg_make(tmp_path, clock)
    try:
        assert isinstance(svc.store, PgStore)
        scenario(svc, clock)
    finally:
        svc.close()


def test_topology_on_postgres(pg_make: Callable[..., IncidentService], tmp_path: Path) -> None:
    unit.test_topology_one_incident_on_the_switch(tmp_path, unit.Clock())


def test_four_processes_ingesting_together_make_one_incident(fresh_db: str, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from diag.incidents.service import IncidentService
        from diag.incidents.settings import from_mapping
        from tests.integration.test_incident_delivery import finding
        settings = from_mapping({{"open_after": 0, "database_url": {fresh_db!r}}}, Path(sys.argv[1]))
        svc = IncidentService(settings)
        start = float(sys.argv[2])
        while time.time() < start:
            time.sleep(0.001)
        for _ in range(10):
            svc.engine.ingest("trap", [finding(f"web-{{i}}") for i in range(5)])
        svc.close()
        """
    )
    import time

    start = time.time() + 3  # all four begin together, after their imports
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"p{i}"), str(start)], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    settings = from_mapping({"open_after": 0, "database_url": fresh_db}, tmp_path / "check")
    svc = IncidentService(settings)
    try:
        incidents = svc.store.query()
        assert sorted(i.host for i in incidents) == [f"web-{i}" for i in range(5)]  # one per fingerprint
        assert all(i.occurrences == 40 for i in incidents)  # 4 processes x 10 rounds, none lost
        assert all(i.state == "open" for i in incidents)
        opens = [x for x in svc.store.intents() if x.action == "open"]
        assert len(opens) == 5
    finally:
        svc.close()


def test_sigkill_at_every_step_of_delivery_on_postgres(fresh_db: str, tmp_path: Path) -> None:
    tickets_cfg = {"backend": "local", "guard_duplicates": False}
    inv = tmp_path / "inventory.yaml"
    incidents_cfg = {
        "open_after": 0,
        "close_after": 0,
        "tickets": tickets_cfg,
        "delivery": {"backoff_initial": 0.05},
        "database_url": fresh_db,
    }
    inv.write_text(f"agent:\n  data: {json.dumps(str(tmp_path / 'data'))}\n  incidents: {json.dumps(incidents_cfg)}\n")
    settings = from_mapping({"open_after": 0, "close_after": 0, "database_url": fresh_db}, tmp_path / "data")
    settings.tickets = dict(tickets_cfg)
    svc = IncidentService(settings)
    hosts = [f"web-{i}" for i in range(6)]
    svc.engine.ingest("trap", [finding(h) for h in hosts])
    svc.engine.ingest("trap", [finding("web-0"), finding("web-1")])
    fp2 = finding("web-2").fingerprint
    assert svc.engine.resolve("trap", fp2, lambda: Verdict(True, "re-check: 40% full")).action == "resolved"
    assert svc.store.outbox_depth() == {"pending": 9}
    svc.close()
    for target in TARGETS:
        at, seen = deliver(inv, target)
        assert at == target, f"failpoint {target} never reached; the run passed {seen}"
        svc = IncidentService(settings)
        counts = Counter(t["fingerprint"] for t in svc.backend.tickets())  # type: ignore[attr-defined]
        assert all(n == 1 for n in counts.values()), counts
        svc.close()
    at, _ = deliver(inv, None)
    assert at is None
    svc = IncidentService(settings)
    try:
        tickets = svc.backend.tickets()  # type: ignore[attr-defined]
        assert sorted(t["host"] for t in tickets) == hosts
        assert svc.store.outbox_depth() == {}
        assert {t["fingerprint"]: t for t in tickets}[fp2]["status"] == "closed"
    finally:
        svc.close()


def test_one_process_drains_a_shared_outbox_and_another_takes_over(fresh_db: str) -> None:
    a, b = PgStore(fresh_db), PgStore(fresh_db)
    try:
        assert a.may_deliver() is True
        assert b.may_deliver() is False  # a holds the delivery lock
        assert a.may_deliver() is True  # and keeps it
        a.close()  # its session ends (as when the process dies): the lock is free
        assert b.may_deliver() is True
    finally:
        b.close()


def test_an_accepted_alert_waits_while_postgresql_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL stopped for longer than the receiver tries a failing job (5 times, 1+2+4+8 s apart): the alert
    Alertmanager was told was accepted (202) stays in the receiver's queue on disk and opens its incident once the
    store is back; it was dropped ("giving up after 5 attempts") before. Meanwhile `diag incidents list` says the
    store is unavailable in one line (exit 3), not a psycopg traceback."""
    import logging

    from diag.alertmanager import receiver as rmod
    from diag.alertmanager.payload import decode
    from tests.unit.test_alertmanager import FIRING, _agent_cfg

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    monkeypatch.setattr(rmod, "OUTAGE_BACKOFF_MAX", 1.0, raising=False)  # tries 1 s apart: a short test
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_TOKEN}\n").alertmanager
    assert cfg is not None
    caplog.set_level(logging.WARNING, logger="diag.alertmanager.receiver")
    with PostgresServer() as pg:
        data = tmp_path / "data"
        settings = from_mapping({"open_after": 0, "close_after": 0, "database_url": pg.url}, data)
        inv = tmp_path / "pg-inventory.yaml"
        inv.write_text(f"hosts: {{}}\nagent:\n  data: {data}\n  incidents:\n    database_url: {pg.url}\n")
        svc = IncidentService(settings, {})
        r = rmod.Receiver(cfg, {}, svc.engine, data)
        try:
            pg.stop()
            assert r.handle(decode(FIRING)) == {"accepted": 1, "pending": 1}

            def failures() -> int:
                return sum(rec.name == rmod.__name__ and rec.levelno >= logging.WARNING for rec in caplog.records)

            # Until the receiver has failed more often than it tries a poisoned job, or has dropped the alert.
            deadline = time.monotonic() + 300
            while failures() <= rmod.ATTEMPTS and r.store.pending() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert failures() > rmod.ATTEMPTS, "the receiver stopped trying while the store was down"
            assert len(r.store.pending()) == 1, "the accepted alert left the queue while the store was down"

            cli = subprocess.run(
                [sys.executable, "-m", "diag.cli", "incidents", "list", "--inventory", str(inv)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert cli.returncode == 3, cli.stderr
            lines = cli.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("diag: incident store on PostgreSQL 127.0.0.1:"), lines
            assert "unavailable" in lines[0]

            pg.start_again()
            assert r.wait_idle(120)
            (inc,) = svc.store.query()
            assert inc.state == "open" and inc.check_id == decode(FIRING).alerts[0].name
            assert r.store.pending() == []
        finally:
            r.close()
            svc.close()
