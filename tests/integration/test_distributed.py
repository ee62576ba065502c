"""Scale-out with real peers: a real Redis, real `diag worker` (Celery) processes, the real SSH lab, a real PostgreSQL.

A check is split between two workers; a worker killed with SIGKILL mid-run still ends with every host checked and
recorded exactly once (its hosts are re-sent to the other worker once the visibility timeout has passed); Redis
killed mid-run makes `diag check --backend celery` exit 3 with one `diag:` line and the JSON of what was recorded,
and the workers reconnect to the restarted Redis and go on (or, out of reconnect tries, exit non-zero); two
deployments in their own namespaces on one Redis database never take each other's hosts; the leading
`diag scheduler` killed with SIGKILL hands over to the waiting one without any interval fired twice; a site-scoped
worker takes only its site's hosts; and workers that feed a shared PostgreSQL incident store, one killed mid-run,
leave exactly one incident (one occurrence) and one ticket per host.

Every server here is this run's own (a reserved port, checked to be our process: tests/redislab.py, tests/pglab.py),
so two runs of the suite on one machine do not share a Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from diag import inventory
from diag.distributed.backend import CeleryBackend
from diag.distributed.scheduler import FIRINGS_KEY
from diag.distributed.tasks import attempts_key
from diag.journal import Journal
from diag.remote import playbook as pbmod
from tests.conftest import wait_for
from tests.labs.lab import Lab
from tests.labs.pglab import PostgresServer
from tests.labs.redislab import RedisServer

pytestmark = pytest.mark.integration

VISIBILITY_S = 5.0  # a killed worker's hosts come back after this (plus one restore interval, 1 s)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as r:
        yield r


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(8) as lab:
        yield lab


@pytest.fixture
def flush(redis_server: RedisServer) -> redis.Redis:
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    r.flushdb()
    return r


def playbook(tmp: Path, seconds: float) -> Path:
    """One step that takes ``seconds`` on the host and reports the host's name (proves where it ran)."""
    p = tmp / "slow.yaml"
    p.write_text(
        textwrap.dedent(
            f"""\
            name: slow
            description: sleeps, then prints the host name
            steps:
              - id: name
                run: sleep {seconds}; uname -n
                parse: {{type: regex, pattern: '(?P<node>\\S+)'}}
            """
        )
    )
    return p


class Workers:
    """`diag worker` processes, each in its own process group so SIGKILL takes the whole worker down."""

    def __init__(self, url: str, known_hosts: Path, tmp: Path) -> None:
        self.url, self.known_hosts, self.tmp = url, known_hosts, tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, *extra: str, concurrency: int = 2) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - the child's stdout
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "diag.cli",
                "worker",
                "--redis",
                self.url,
                "--name",
                name,
                "--known-hosts",
                str(self.known_hosts),
                "--data",
                str(self.tmp / name),
                "--concurrency",
                str(concurrency),
                "--visibility-timeout",
                str(VISIBILITY_S),
                "--log-level",
                "INFO",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.tmp,
        )

    def wait_ready(self, r: redis.Redis, timeout: float = 60) -> None:
        # A worker is consuming once its queue is bound; Celery logs "ready." when it is.
        deadline = time.monotonic() + timeout
        for name in self.procs:
            log = self.tmp / f"{name}.log"
            while "ready." not in log.read_text(errors="replace"):
                assert self.procs[name].poll() is None, f"worker {name} died: {log.read_text()}"
                assert time.monotonic() < deadline, f"worker {name} not ready: {log.read_text()}"
                time.sleep(0.1)

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def workers(redis_server: RedisServer, lab: Lab, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(redis_server.url, lab.known_hosts, tmp_path)
    try:
        yield w
    finally:
        w.close()


def test_a_check_is_split_between_two_workers(flush: redis.Redis, workers: Workers, lab: Lab, tmp_path: Path) -> None:
    workers.start("wA")
    workers.start("wB")
    workers.wait_ready(flush)
    pb_path = playbook(tmp_path, 0.5)
    backend = CeleryBackend(workers.url, lab.inventory, pb_path, timeout_s=120)
    inv = inventory.load(str(lab.inventory))
    report = backend.run_check(inv.select(["lab"]), pbmod.load(pb_path))
    by = {r.host: r for r in report.results}
    assert set(by) == set(lab.hosts)
    for name, r in by.items():
        assert r.status == "ok", (name, r.error)
        # The step ran on that very host: uname -n inside its namespace is the namespace's host name... or the
        # machine's (namespaces share the UTS name); either way the parsed value came back through Redis.
        assert r.steps[0].parsed["node"]
    done_by = backend.workers()
    assert set(done_by.values()) == {"wA", "wB"}, done_by  # both workers took a share
    assert all(n == 1 for n in backend.attempts().values())

    # The same through the CLI contract: `diag check --backend celery --json`.
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "diag.cli",
            "check",
            "--backend",
            "celery",
            "--redis",
            workers.url,
            "--json",
            "-i",
            str(lab.inventory),
            "-p",
            str(pb_path),
            "h01",
            "h02",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    doc = json.loads(p.stdout)
    assert p.returncode == 0, p.stderr
    assert [r["host"] for r in doc["results"]] == ["h01", "h02"]
    assert {r["status"] for r in doc["results"]} == {"ok"}


def run_in_thread(backend: CeleryBackend, hosts: list[inventory.Host], pb_path: Path) -> tuple[threading.Thread, dict]:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["report"] = backend.run_check(hosts, pbmod.load(pb_path))
        except Exception as e:  # the test asserts on it
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, box


def wait_started(r: redis.Redis, backend: CeleryBackend, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(r.hgetall(attempts_key(backend.last_run_id)) if backend.last_run_id else {}) < n:
        assert time.monotonic() < deadline, "the workers never started the hosts"
        time.sleep(0.05)


def test_killing_a_worker_mid_run_still_checks_every_host_exactly_once(
    flush: redis.Redis, workers: Workers, lab: Lab, tmp_path: Path
) -> None:
    workers.start("wA")
    workers.start("wB")
    workers.wait_ready(flush)
    pb_path = playbook(tmp_path, 4)
    backend = CeleryBackend(workers.url, lab.inventory, pb_path, timeout_s=180, visibility_timeout=VISIBILITY_S)
    inv = inventory.load(str(lab.inventory))
    t, box = run_in_thread(backend, inv.select(["lab"]), pb_path)
    # Wait until wA is in the middle of hosts (they sleep 4 s), then take it down hard.
    deadline = time.monotonic() + 60
    while {e["worker"] for e in backend.events() if e["event"] == "start"} != {"wA", "wB"}:
        assert time.monotonic() < deadline, f"both workers never started hosts: {backend.events()}"
        time.sleep(0.05)
    time.sleep(1.0)
    killed_at = time.time()
    workers.kill("wA")
    t.join(240)
    assert "error" not in box, box
    report = box["report"]
    results = {r.host: r for r in report.results}  # type: ignore[attr-defined]
    assert set(results) == set(lab.hosts)
    assert {r.status for r in results.values()} == {"ok"}, {h: r.error for h, r in results.items()}
    done_by = backend.workers()
    attempts = backend.attempts()
    assert len(done_by) == len(lab.hosts)  # one recorded result per host (HSETNX), none lost
    retried = {h for h, n in attempts.items() if n > 1}
    assert retried, f"no host was redelivered after wA died: {attempts}"
    assert all(done_by[h] == "wB" for h in retried), (done_by, attempts)
    assert all(n <= 2 for n in attempts.values()), attempts
    # The order of events per retried host: wA started it before the kill and never finished it; wB started it
    # again only after the kill, then finished it. No worker but wA ran a host twice.
    events = backend.events()
    for host in retried:
        seen = [(e["worker"], e["event"]) for e in events if e["host"] == host]
        assert seen == [("wA", "start"), ("wB", "start"), ("wB", "finish")], (host, seen)
        first, again = (e for e in events if e["host"] == host and e["event"] == "start")
        assert first["at"] < killed_at < again["at"], (host, first, again, killed_at)
    for host in set(lab.hosts) - retried:
        assert [e["event"] for e in events if e["host"] == host] == ["start", "finish"], host
    # Not asserted (a loaded machine may be slower): the re-send delay, for the log; bench/worker_recovery.py
    # measures it against the visibility timeout.
    resent = [e["at"] - killed_at for e in events if e["host"] in retried and e["worker"] == "wB"]
    print(f"kill -> re-send: {min(resent):.1f}-{max(resent):.1f} s (visibility timeout {VISIBILITY_S:g} s)")


def check_cli(url: str, inv: Path, pb: Path, cwd: Path, *targets: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "diag.cli", "check", "--backend", "celery", "--redis", url, "--json", "-i", str(inv),
            "-p", str(pb), "--data", str(cwd / "cli-data"), *extra, *targets]  # fmt: skip


def test_redis_killed_mid_run_fails_the_check_loudly_and_workers_reconnect(
    redis_server: RedisServer, flush: redis.Redis, workers: Workers, lab: Lab, tmp_path: Path
) -> None:
    workers.start("wA")
    workers.start("wB")
    workers.start("quitter", "--broker-retries", "0", concurrency=1)  # out of reconnect tries at once
    workers.wait_ready(flush)
    pb_path = playbook(tmp_path, 2)
    out, err = tmp_path / "check.out", tmp_path / "check.err"
    with out.open("wb") as o, err.open("wb") as e:
        check = subprocess.Popen(check_cli(workers.url, lab.inventory, pb_path, tmp_path, "lab"), stdout=o, stderr=e,
                                 cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 60

        def recorded_now() -> dict[str, str]:
            runs = flush.keys("diag:run:*:results")
            return {h: json.loads(v)["status"] for k in runs for h, v in flush.hgetall(k).items()}

        def cli_journaled() -> set[str]:
            db = tmp_path / "cli-data" / "journal.db"
            if not db.exists():
                return set()
            with Journal(db) as journal:
                return {r.target for r in journal.query(action="check.host", limit=1000)}

        early: dict[str, str] = {}
        while len(early) < 2:  # some hosts recorded, the others queued or running
            early = recorded_now()
            assert time.monotonic() < deadline and check.poll() is None, err.read_text()
            time.sleep(0.05)
        # diag check reads the results every 50 ms and journals each host as it sees it: once the early ones are in
        # its journal, it has them (a sleep(1.0) here assumed the CLI got a CPU within the second)
        wait_for(lambda: set(early) <= cli_journaled(), timeout=60, what=f"diag check to have seen {sorted(early)}")
        at_kill = recorded_now()
        redis_server.kill()
        rc = check.wait(60)
    finally:
        if check.poll() is None:
            check.kill()
            check.wait()
    stderr = err.read_text()
    assert rc == 3, stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("diag: broker redis://127.0.0.1:"), stderr
    assert f"of {len(lab.hosts)} hosts recorded" in lines[0]
    doc = json.loads(out.read_text())
    by = {r["host"]: r for r in doc["results"]}
    assert set(by) == set(lab.hosts) and doc["exit_status"] == 3
    # What was recorded before the kill is in the JSON as it was: every early result, and nothing that Redis did
    # not hold when it died (a result written in the CLI's last 50 ms may be reported as not recorded).
    shown = {h for h, r in by.items() if r["status"] == "ok"}
    assert set(early) <= shown <= set(at_kill), (early, shown, at_kill)
    assert set(at_kill.values()) == {"ok"}
    lost = {h for h, r in by.items() if r["status"] == "error"}
    assert lost and all("not recorded: broker" in by[h]["error"] for h in lost)
    assert {r["status"] for r in by.values()} == {"ok", "error"}

    # The worker without reconnect tries exits non-zero (a restart-on-failure unit brings it back) ...
    assert workers.procs["quitter"].wait(60) != 0, workers.log("quitter")
    # ... the others wait for Redis, reconnect to the restarted (empty) server and take new work.
    redis_server.restart()
    backend = CeleryBackend(workers.url, lab.inventory, pb_path, timeout_s=120)
    again = backend.run_check(inventory.load(str(lab.inventory)).select(["h01", "h02", "h03", "h04"]),
                              pbmod.load(pb_path))  # fmt: skip
    assert {r.status for r in again.results} == {"ok"}, [r.error for r in again.results]
    assert set(backend.workers().values()) <= {"wA", "wB"}
    assert workers.procs["wA"].poll() is None and workers.procs["wB"].poll() is None


def test_redis_down_from_the_start_is_one_line_and_exit_3(lab: Lab, tmp_path: Path) -> None:
    from tests.conftest import free_port
    from tests.labs.redislab import PORTS

    dead = f"redis://:s3cret-pw@127.0.0.1:{free_port(PORTS)}/0"  # reserved by this run, nothing listens
    pb_path = playbook(tmp_path, 0)
    p = subprocess.run(check_cli(dead, lab.inventory, pb_path, tmp_path, "h01", "h02"), capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert p.returncode == 3, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("diag: broker redis://127.0.0.1:"), p.stderr
    assert "0 of 2 hosts recorded" in p.stderr
    assert "s3cret-pw" not in p.stderr + p.stdout  # the broker's password is never printed
    doc = json.loads(p.stdout)
    assert [(r["host"], r["status"]) for r in doc["results"]] == [("h01", "error"), ("h02", "error")]


def test_two_namespaces_on_one_redis_never_share_queues_or_keys(
    flush: redis.Redis, workers: Workers, lab: Lab, tmp_path: Path
) -> None:
    workers.start("a1", "--namespace", "site-a")
    workers.start("b1", "--namespace", "site-b")
    workers.wait_ready(flush)
    pb_path = playbook(tmp_path, 1)
    inv = inventory.load(str(lab.inventory))
    a = CeleryBackend(workers.url, lab.inventory, pb_path, timeout_s=120, namespace="site-a")
    b = CeleryBackend(workers.url, lab.inventory, pb_path, timeout_s=120, namespace="site-b")
    ta, box_a = run_in_thread(a, inv.select(["lab"]), pb_path)
    tb, box_b = run_in_thread(b, inv.select(["h01", "h02", "h03"]), pb_path)
    # While both runs are in flight, every key in the database belongs to one namespace: the broker's queues,
    # bindings and unacknowledged messages too (kombu's global_keyprefix), not only diag's results.
    seen: set[str] = set()
    while ta.is_alive() or tb.is_alive():
        seen.update(flush.keys("*"))
        time.sleep(0.05)
    assert "error" not in box_a and "error" not in box_b, (box_a, box_b)
    assert seen and all(k.startswith(("site-a:", "site-b:")) for k in seen), sorted(seen)
    assert any(k.startswith("site-a:unacked") for k in seen), sorted(seen)
    assert set(a.workers().values()) == {"a1"} and len(a.workers()) == len(lab.hosts)
    assert b.workers() == {"h01": "b1", "h02": "b1", "h03": "b1"}
    assert {r.status for r in box_a["report"].results} == {"ok"}  # type: ignore[attr-defined]
    # A namespace that could break a key is refused before anything is sent.
    p = subprocess.run(check_cli(workers.url, lab.inventory, pb_path, tmp_path, "h01", extra=("--namespace", "a:b")),
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert p.returncode == 2 and p.stderr.startswith("--namespace 'a:b'"), p.stderr


def test_a_site_worker_takes_only_its_sites_hosts(
    flush: redis.Redis, workers: Workers, lab: Lab, tmp_path: Path
) -> None:
    inv_path = tmp_path / "sites.yaml"
    text = lab.inventory.read_text()
    # h01/h02 sit in site "east"; the rest have no site.
    for h in ("h01", "h02"):
        text = text.replace(f"  {h}:\n", f"  {h}:\n    site: east\n")
    inv_path.write_text(text)
    workers.start("east", "--site", "east")
    workers.start("core")
    workers.wait_ready(flush)
    pb_path = playbook(tmp_path, 0.2)
    backend = CeleryBackend(workers.url, inv_path, pb_path, timeout_s=120)
    inv = inventory.load(str(inv_path))
    report = backend.run_check(inv.select(["h01", "h02", "h03", "h04"]), pbmod.load(pb_path))
    assert {r.status for r in report.results} == {"ok"}
    done_by = backend.workers()
    assert done_by == {"h01": "east", "h02": "east", "h03": "core", "h04": "core"}


def test_scheduler_leader_killed_hands_over_without_double_runs(
    flush: redis.Redis, workers: Workers, lab: Lab, tmp_path: Path
) -> None:
    workers.start("wA")
    workers.wait_ready(flush)
    sched = tmp_path / "schedule.yaml"
    sched.write_text(
        "schedule:\n"
        "  - {name: fast, playbook: " + str(playbook(tmp_path, 0)) + ", targets: [h01], every: 1}\n"
        "  - {name: slower, playbook: " + str(playbook(tmp_path, 0)) + ", targets: [h02, h03], every: 2}\n"
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("s1", "s2"):
            procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "diag.cli",
                    "scheduler",
                    "--redis",
                    workers.url,
                    "--schedule",
                    str(sched),
                    "-i",
                    str(lab.inventory),
                    "--name",
                    name,
                    "--tick",
                    "0.2",
                    "--ttl",
                    "3",
                ],
                stdout=open(tmp_path / f"{name}.log", "wb"),  # noqa: SIM115 - the child's stdout
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=tmp_path,
            )
        deadline = time.monotonic() + 60
        while flush.llen(FIRINGS_KEY) < 6:
            assert time.monotonic() < deadline, (tmp_path / "s1.log").read_text() + (tmp_path / "s2.log").read_text()
            time.sleep(0.1)
        leader = flush.get("diag:scheduler:leader")
        assert leader in procs
        follower = next(n for n in procs if n != leader)
        os.killpg(procs[leader].pid, signal.SIGKILL)
        procs[leader].wait()
        killed_at = time.time()
        deadline = time.monotonic() + 30
        while flush.get("diag:scheduler:leader") != follower:
            assert time.monotonic() < deadline, "the follower never took over"
            time.sleep(0.1)

        def fired_after_kill() -> set[str]:
            return {f["job"] for x in flush.lrange(FIRINGS_KEY, 0, -1) if (f := json.loads(x))["at"] > killed_at}

        # both jobs fired again under the follower (a sleep(4) assumed it within 4 s on a loaded machine)
        wait_for(lambda: fired_after_kill() == {"fast", "slower"}, timeout=60, what="both jobs fired after the kill")
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
    firings = [json.loads(x) for x in flush.lrange(FIRINGS_KEY, 0, -1)]
    slots = [(f["job"], f["slot"]) for f in firings]
    assert len(slots) == len(set(slots)), "an interval was fired twice"
    by = {f["by"] for f in firings}
    assert by == {"s1", "s2"}
    after = [f for f in firings if f["at"] > killed_at]
    assert after and all(f["by"] == follower for f in after)
    # Every firing dispatched real work: the worker checked h01 at least once per 'fast' firing it saw.
    assert {f["job"] for f in after} == {"fast", "slower"}


FULL_PLAYBOOK = """\
name: full-disk-seen
description: reports a full /data on every host (the df line is printed, the condition is made up by the test)
steps:
  - id: df
    run: sleep 3; echo '/dev/vdb1 1000 990 10 99% /data'
    parse: {type: regex, pattern: '(?P<pct>\\d+)% (?P<mnt>\\S+)', types: {pct: int}}
    checks:
      - check: disk_full
        if: parsed.pct >= 95
        severity: critical
        summary: "{{ parsed.mnt }} is {{ parsed.pct }}% full"
"""


def test_workers_feed_a_shared_postgres_incident_store_exactly_once(
    flush: redis.Redis, workers: Workers, lab: Lab, tmp_path: Path
) -> None:
    import psycopg

    from diag.incidents.service import IncidentService
    from diag.incidents.settings import from_mapping

    with PostgresServer() as pg:
        tickets_db = tmp_path / "tickets.sqlite"
        inv_path = tmp_path / "inventory.yaml"
        incidents = {"open_after": 0, "database_url": pg.url, "tickets": {"backend": "local", "path": str(tickets_db)}}
        inv_path.write_text(lab.inventory.read_text() + f"agent:\n  incidents: {json.dumps(incidents)}\n")
        pb_path = tmp_path / "full.yaml"
        pb_path.write_text(FULL_PLAYBOOK)
        for name in ("wA", "wB"):
            workers.start(name, "--incidents", "-i", str(inv_path))
        workers.wait_ready(flush)
        backend = CeleryBackend(workers.url, inv_path, pb_path, timeout_s=180)
        inv = inventory.load(str(inv_path))
        box: dict[str, object] = {}
        t = threading.Thread(
            target=lambda: box.update(report=backend.run_check(inv.select(["lab"]), pbmod.load(pb_path)))
        )
        t.start()
        deadline = time.monotonic() + 60
        while len(flush.hgetall(attempts_key(backend.last_run_id)) if backend.last_run_id else {}) < 4:
            assert time.monotonic() < deadline, "the workers never started the hosts"
            time.sleep(0.05)
        time.sleep(1.0)
        workers.kill("wA")  # mid-host: its hosts sleep 3 s
        t.join(240)
        report = box["report"]
        assert {r.status for r in report.results} == {"findings"}  # type: ignore[attr-defined]
        assert any(n > 1 for n in backend.attempts().values())  # some hosts were redelivered to wB
        settings = from_mapping({"open_after": 0, "database_url": pg.url}, tmp_path / "check")
        settings.tickets = {"backend": "local", "path": str(tickets_db)}
        svc = IncidentService(settings)
        try:
            incidents_now = svc.store.query()
            assert sorted(i.host for i in incidents_now) == sorted(lab.hosts)  # one incident per host
            assert all(i.check_id == "disk_full" and i.occurrences == 1 for i in incidents_now)  # counted once
            svc.outbox.drain(30)  # wB may already have delivered them: either way, one ticket per host
            tickets = svc.backend.tickets()  # type: ignore[attr-defined]
            assert sorted(x["host"] for x in tickets) == sorted(lab.hosts)
            assert svc.store.outbox_depth() == {}
        finally:
            svc.close()
        with psycopg.connect(pg.url) as c:
            n = c.execute("SELECT COUNT(*) FROM incidents").fetchone()
            assert n is not None and n[0] == len(lab.hosts)
