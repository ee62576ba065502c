"""Database health against real servers: a PostgreSQL primary with a streaming standby and a MariaDB primary with a
replica (tests/labs/dblab.py), watched by one real ``diag agent`` with ``agent.incidents``.

Each fault is made for real; the test waits for the finding's incident (through the engine, with the knowledge
base's classification), clears the fault, and waits for the incident to be resolved after the verifying re-check.
The servers and the agent start once for the module.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from diag import config
from tests.conftest import DIAG, free_port, http_get, stop_process, wait_for
from tests.labs.dblab import DIAG_PASSWORD, MariaPair, PgPair, pg_bin
from tests.labs.lab import LAB_USER, Lab

pytestmark = pytest.mark.integration

PORTS = range(20800, 20860)
HOST = "dbhost"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgPair]:
    a = free_port(PORTS)
    b = free_port([p for p in PORTS if p != a])
    with PgPair(a, b) as pair:
        pair.primary.psql(
            "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g"
        )
        yield pair


@pytest.fixture(scope="module")
def my(pg: PgPair) -> Iterator[MariaPair]:
    used = {pg.primary.port, pg.standby.port}
    a = free_port([p for p in PORTS if p not in used])
    b = free_port([p for p in PORTS if p not in used | {a}])
    with MariaPair(a, b) as pair:
        pair.primary.sql("CREATE DATABASE app; CREATE TABLE app.t (id int PRIMARY KEY, v int) ENGINE=InnoDB;"
                         "USE app; INSERT INTO t SELECT seq, 0 FROM seq_1_to_100")  # fmt: skip
        yield pair


class Agent:
    def __init__(self, data: Path, port: int, backups: Path) -> None:
        self.data = data
        self.port = port
        self.backups = backups

    def incidents(self) -> list[dict[str, Any]]:
        p = subprocess.run([DIAG, "incidents", "list", "--json", "--all", "--data", str(self.data)],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert p.returncode == 0, p.stderr
        return list(json.loads(p.stdout)["incidents"])

    def metrics(self) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.port}/metrics")
        assert status == 200
        return body.decode()

    def fault(self, expect: list[tuple[str, str, str]], make: Callable[[], Any], clear: Callable[[Any], None],
              classification: str = "typical", timeout: float = 60) -> list[dict[str, Any]]:  # fmt: skip
        """Make the fault, wait for an open incident per (check, subject, KB entry), clear it, wait for each to be
        resolved; return the incidents as they were when open."""

        def find(check: str, subject: str, states: tuple[str, ...]) -> dict[str, Any] | None:
            for i in self.incidents():
                if i["check"] == check and i["subject"] == subject and i["state"] in states:
                    return i
            return None

        for check, subject, _ in expect:
            assert find(check, subject, ("pending", "open", "acknowledged", "clearing")) is None, (check, subject)
        handle = make()
        opened = []
        try:
            for check, subject, kb in expect:
                inc = wait_for(lambda c=check, s=subject: find(c, s, ("open",)), timeout, 0.5,
                               what=f"an open incident {check} {subject}")  # fmt: skip
                assert inc["host"] == HOST
                assert (inc.get("kb") or {}).get("id") == kb, (check, inc.get("kb"))
                assert inc["classification"] == classification, inc
                opened.append(inc)
        finally:
            clear(handle)
        for inc in opened:
            wait_for(lambda i=inc: any(x["id"] == i["id"] and x["state"] == "resolved" for x in self.incidents()),
                     timeout, 0.5, what=f"incident {inc['check']} {inc['subject']} resolved")  # fmt: skip
        return opened


def _inventory(data: Path, pg: PgPair, my: MariaPair, backups: Path) -> str:
    common = {
        "interval": 1,
        "timeout": 20,
        "idle_in_transaction_warning_seconds": 2,
        "lock_wait_warning_seconds": 2,
        "replica_lag_warning_seconds": 3,
        "replica_lag_critical_seconds": 3600,
        "long_query_warning_seconds": 3600,
        "long_transaction_warning_seconds": 3600,
        "restart_notice_seconds": 30,  # long enough for a standby to start on a loaded machine
    }
    postgres = {
        **common,
        "instances": [
            {"name": "pg-primary", "dsn": pg.primary.dsn, "role": "primary", "min_replicas": 1},
            {"name": "pg-standby", "dsn": f"host={pg.dir} port={pg.standby.port} user=postgres dbname=postgres",
             "role": "replica"},
        ],
        "backups": [
            {"name": "pg-app", "glob": str(backups / "pg" / "*.dump"), "max_age_hours": 1,
             "verify": {"instance": "pg-primary", "interval_hours": 0.0001, "timeout": 60,
                        "queries": [{"sql": "SELECT count(*) FROM t", "min": 100}]}},
        ],
    }  # fmt: skip
    mysql = {
        **common,
        "instances": [
            {"name": "my-primary", "dsn": my.primary.dsn, "password": "env:DIAG_TEST_MYSQL_PW", "role": "primary",
             "min_replicas": 1},
            {"name": "my-replica", "dsn": f"mysql://root@localhost/?unix_socket={my.replica.socket}",
             "role": "replica"},
        ],
        "backups": [
            {"name": "my-app", "glob": str(backups / "my" / "*.sql.gz"), "max_age_hours": 1,
             "verify": {"instance": "my-primary", "interval_hours": 0.0001, "timeout": 60,
                        "queries": [{"sql": "SELECT COUNT(*) FROM t", "min": 100},
                                    {"sql": "SELECT SUM(v) FROM t", "equals": "0"}]}},
        ],
    }  # fmt: skip
    incidents = {"open_after": 1, "close_after": 1, "tick": 0.5, "delivery": {"poll": 0.2},
                 "tickets": {"backend": "local"}}  # fmt: skip
    lines = ["hosts: {}", "agent:", f"  hostname: {HOST}", f"  data: {json.dumps(str(data))}",
             f"  incidents: {json.dumps(incidents)}", "  probes:"]  # fmt: skip
    for name in config.build(None, {}).probes:
        opts = {"postgres": postgres, "mysql": mysql}.get(name, {"enabled": False})
        lines.append(f"    {name}: {json.dumps(opts)}")
    return "\n".join(lines) + "\n"


def _pg_dump(pg: PgPair, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(pg_bin() / "pg_dump"), "-Fc", "-h", "127.0.0.1", "-p", str(pg.primary.port), "-U", "postgres",
                    "-d", "postgres", "-t", "t", "-f", str(out)], check=True, timeout=60)  # fmt: skip


def _my_dump(my: MariaPair, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mariadb-dump", f"--socket={my.primary.socket}", "-uroot", "--single-transaction", "app"],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    out.write_bytes(gzip.compress(p.stdout))


@pytest.fixture(scope="module")
def agent(pg: PgPair, my: MariaPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("dbagent")
    data, backups = tmp / "data", tmp / "backups"
    _pg_dump(pg, backups / "pg" / "app-1.dump")
    _my_dump(my, backups / "my" / "app-1.sql.gz")
    inv = tmp / "inventory.yaml"
    inv.write_text(_inventory(data, pg, my, backups))
    port = free_port(range(20860, 20900))
    log = tmp / "agent.log"
    env = {**os.environ, "DIAG_TEST_MYSQL_PW": DIAG_PASSWORD}
    with log.open("wb") as out:
        proc = subprocess.Popen([DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)  # fmt: skip
    a = Agent(data, port, backups)
    try:
        wait_for(
            lambda: 'diag_mysql_up{server="my-replica"} 1.0' in a.metrics(), 60, what="agent scraping both engines"
        )
        for line in (
            'diag_mysql_backup_restore_success{job="my-app"} 1.0',
            'diag_postgres_backup_restore_success{job="pg-app"} 1.0',
            # the labs start replication without waiting for it: a probe run before the standby's WAL receiver
            # (or the replica's IO thread) connected says 0, and the healthy test reads one scrape
            'diag_postgres_wal_receiver_up{server="pg-standby"} 1.0',
            'diag_postgres_replicas{server="pg-primary"} 1.0',
            'diag_mysql_replica_io_running{server="my-replica"} 1.0',
            'diag_mysql_replica_sql_running{server="my-replica"} 1.0',
        ):
            wait_for(lambda x=line: x in a.metrics(), 60, what=f"the agent to see {line}")  # fmt: skip
        yield a
    finally:
        status = stop_process(proc)
        text = log.read_text(errors="replace")
        assert status == 0, text[-3000:]
        assert DIAG_PASSWORD not in text  # the secret never reaches the log


def test_healthy_servers_export_metrics_and_no_incident(agent: Agent) -> None:
    text = agent.metrics()
    for line in (
        'diag_postgres_up{server="pg-primary"} 1.0',
        'diag_postgres_in_recovery{server="pg-standby"} 1.0',
        'diag_postgres_wal_receiver_up{server="pg-standby"} 1.0',
        'diag_postgres_replicas{server="pg-primary"} 1.0',
        'diag_mysql_replica_io_running{server="my-replica"} 1.0',
        'diag_mysql_replica_sql_running{server="my-replica"} 1.0',
        'diag_postgres_backup_restore_success{job="pg-app"} 1.0',
        'diag_mysql_backup_restore_success{job="my-app"} 1.0',
    ):
        assert line in text, line
    assert 'diag_probe_success{probe="postgres"} 1.0' in text and 'diag_probe_success{probe="mysql"} 1.0' in text
    # promtool's lint of the exposition (units, _total, naming): nothing about the database families
    ours = "".join(ln + "\n" for ln in text.splitlines() if "diag_postgres_" in ln or "diag_mysql_" in ln)
    p = subprocess.run(["promtool", "check", "metrics"], input=ours, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr
    open_ones = [i for i in agent.incidents() if i["state"] != "resolved"]
    assert open_ones == [], [(i["check"], i["summary"], i["state"]) for i in open_ones]
    assert DIAG_PASSWORD not in text


def test_postgres_idle_in_transaction_holding_a_lock(pg: PgPair, agent: Agent) -> None:
    def make() -> tuple[psycopg.Connection[Any], subprocess.Popen[bytes]]:
        holder = psycopg.connect(pg.primary.dsn, application_name="holder")
        holder.execute("UPDATE t SET v = v + 1 WHERE id = 1 AND 'secret-literal' <> ''")  # idle in transaction now
        waiter = subprocess.Popen([str(pg_bin() / "psql"), "-X", "-h", "127.0.0.1", "-p", str(pg.primary.port), "-U",
                                   "postgres", "-d", "postgres", "-c", "UPDATE t SET v = v + 1 WHERE id = 1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        return holder, waiter

    def clear(h: tuple[psycopg.Connection[Any], subprocess.Popen[bytes]]) -> None:
        h[0].rollback()
        h[0].close()
        h[1].wait(30)

    idle, locks = agent.fault(
        [("postgres_idle_in_transaction", "pg-primary", "db-idle-in-transaction"),
         ("postgres_lock_waits", "pg-primary", "db-idle-in-transaction")], make, clear)  # fmt: skip
    text = json.dumps(idle["evidence"]) + json.dumps(locks["evidence"])
    assert "secret-literal" not in text, text
    assert "UPDATE t SET v = v + ? WHERE id = ? AND ? <> ?" in text, text
    assert "sessions holding the locks" in json.dumps(locks["evidence"])


def test_postgres_connections_exhausted(pg: PgPair, agent: Agent) -> None:
    # max_connections 20, 3 reserved for superusers: 17 usable; the agent holds one, these take the rest.
    def make() -> list[psycopg.Connection[Any]]:
        return [psycopg.connect(pg.primary.dsn) for _ in range(16)]

    def clear(conns: list[psycopg.Connection[Any]]) -> None:
        for c in conns:
            c.close()

    (inc,) = agent.fault([("postgres_connections_high", "pg-primary", "db-connections-exhausted")], make, clear)
    assert inc["severity"] == "critical" and "17 of 17 connections" in inc["summary"], inc["summary"]


def test_postgres_standby_lagging_behind_a_long_transaction(pg: PgPair, agent: Agent) -> None:
    # A transaction on the hot standby holds a lock on t; the primary's ACCESS EXCLUSIVE lock on t (WAL-logged)
    # cannot be replayed while it lasts (max_standby_streaming_delay = -1), so replay stops and WAL piles up.
    def make() -> psycopg.Connection[Any]:
        reader = psycopg.connect(pg.standby.dsn, application_name="report")
        reader.execute("SELECT count(*) FROM t")
        pg.primary.psql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; COMMIT;")
        pg.primary.psql("CREATE TABLE IF NOT EXISTS filler (x int); INSERT INTO filler SELECT generate_series(1, 1000)")
        return reader

    def clear(reader: psycopg.Connection[Any]) -> None:
        reader.rollback()
        reader.close()

    stuck, lag = agent.fault(
        [("postgres_standby_not_replaying", "pg-standby", "db-replica-lag-long-transaction"),
         ("postgres_replica_lag", "pg-standby", "db-replica-lag-long-transaction")], make, clear)  # fmt: skip
    assert "received WAL is not being replayed" in stuck["summary"]
    assert "behind its primary" in lag["summary"]


def test_postgres_standby_stopped(pg: PgPair, agent: Agent) -> None:
    def clear(_: object) -> None:
        pg.standby.start("hot_standby=on", "max_standby_streaming_delay=-1", "max_connections=20", "fsync=off")

    _down, stopped = agent.fault(
        [("postgres_down", "pg-standby", "db-down"),
         ("postgres_replication_stopped", "pg-primary", "db-replication-broken")],
        pg.standby.stop, clear, classification="atypical")  # fmt: skip
    assert "0 standby(s) streaming, 1 expected" in stopped["summary"]
    # The restart is noticed when it comes back (restart_notice_seconds is 30 s here; it clears by itself).
    restarted = ("postgres_restarted", "pg-standby")
    inc = wait_for(lambda: next((i for i in agent.incidents() if (i["check"], i["subject"]) == restarted), None),
                   60, 0.5, what="the standby's restart noticed")  # fmt: skip
    assert inc["summary"].startswith("postgres pg-standby restarted "), inc["summary"]
    # and the standby was never reported down once it was back: the broken kept connection is replaced at once
    assert not [i for i in agent.incidents() if i["check"] == "postgres_down" and i["state"] != "resolved"]


def test_postgres_truncated_dump_fails_restore_verification(pg: PgPair, agent: Agent) -> None:
    good = agent.backups / "pg" / "app-1.dump"

    def make() -> Path:
        bad = agent.backups / "pg" / "app-2.dump"
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 2])  # fresh, not empty, but cut in the middle
        return bad

    def clear(bad: Path) -> None:
        _pg_dump(pg, agent.backups / "pg" / "app-3.dump")
        bad.unlink()

    (inc,) = agent.fault([("db_backup_restore_failed", "pg-app", "db-backup-unrestorable")], make, clear)
    assert inc["severity"] == "critical" and "restore failed" in inc["summary"], inc["summary"]
    assert "app-2.dump" in json.dumps(inc["evidence"])
    wait_for(lambda: 'diag_postgres_backup_restore_success{job="pg-app"} 1.0' in agent.metrics(), 60, what="restored")


def test_postgres_dump_older_than_its_limit(agent: Agent) -> None:
    def make() -> list[Path]:
        old = time.time() - 3 * 3600
        files = sorted((agent.backups / "pg").glob("*.dump"))
        for f in files:
            os.utime(f, (old, old))
        return files

    def clear(files: list[Path]) -> None:
        for f in files:
            os.utime(f)

    (inc,) = agent.fault([("db_backup_stale", "pg-app", "db-backup-stale")], make, clear)
    assert "h old (limit 1 h)" in inc["summary"]


def _in_thread(conn: Any, sql: str) -> threading.Thread:
    """Run a statement that will block (a lock wait) in a thread of its own."""

    def run() -> None:
        with contextlib.suppress(Exception):  # the statement may be aborted when the test clears the fault
            conn.cursor().execute(sql)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_mysql_idle_in_transaction_holding_a_lock(my: MariaPair, agent: Agent) -> None:
    def make() -> tuple[Any, Any, threading.Thread]:
        holder = my.primary.connect("app")
        holder.cursor().execute("BEGIN")
        holder.cursor().execute("UPDATE t SET v = v + 1 WHERE id = 1 AND 'secret-literal' <> ''")
        waiter = my.primary.connect("app")
        return holder, waiter, _in_thread(waiter, "UPDATE t SET v = v WHERE id = 1")

    def clear(h: tuple[Any, Any, threading.Thread]) -> None:
        h[0].rollback()
        h[0].close()
        h[2].join(30)
        h[1].close()

    idle, locks = agent.fault(
        [("mysql_idle_in_transaction", "my-primary", "db-idle-in-transaction"),
         ("mysql_lock_waits", "my-primary", "db-idle-in-transaction")], make, clear)  # fmt: skip
    text = json.dumps(idle["evidence"]) + json.dumps(locks["evidence"])
    assert "secret-literal" not in text, text
    assert "UPDATE t SET v = v WHERE id = ?" in text, text
    assert "sessions holding the locks" in json.dumps(locks["evidence"])


def test_mysql_connections_exhausted(my: MariaPair, agent: Agent) -> None:
    def make() -> list[Any]:
        return [my.primary.connect() for _ in range(17)]

    def clear(conns: list[Any]) -> None:
        for c in conns:
            c.close()

    (inc,) = agent.fault([("mysql_connections_high", "my-primary", "db-connections-exhausted")], make, clear)
    assert inc["severity"] == "critical", inc["summary"]


def test_mysql_replica_stopped(my: MariaPair, agent: Agent) -> None:
    (inc,) = agent.fault(
        [("mysql_replication_stopped", "my-replica", "db-replication-broken")],
        lambda: my.replica.sql("STOP SLAVE"), lambda _: my.replica.sql("START SLAVE"),
        classification="atypical")  # fmt: skip
    assert "IO thread No, SQL thread No" in inc["summary"]


def test_mysql_replica_lagging_behind_a_long_transaction(my: MariaPair, agent: Agent) -> None:
    # A transaction on the replica locks the row the primary's next update changes: the SQL thread waits for it.
    def make() -> Any:
        holder = my.replica.connect("app")
        holder.cursor().execute("BEGIN")
        holder.cursor().execute("SELECT v FROM t WHERE id = 2 FOR UPDATE")
        my.primary.sql("UPDATE app.t SET v = v + 1 WHERE id = 2; UPDATE app.t SET v = v - 1 WHERE id = 2")
        return holder

    def clear(holder: Any) -> None:
        holder.rollback()
        holder.close()

    (inc,) = agent.fault([("mysql_replica_lag", "my-replica", "db-replica-lag-long-transaction")], make, clear)
    assert "behind its primary" in inc["summary"]
    assert "open transactions on the replica" in json.dumps(inc["evidence"])


def test_mysql_truncated_dump_and_stale_dump(my: MariaPair, agent: Agent) -> None:
    good = agent.backups / "my" / "app-1.sql.gz"

    def truncate() -> Path:
        bad = agent.backups / "my" / "app-2.sql.gz"
        raw = gzip.decompress(good.read_bytes())
        bad.write_bytes(gzip.compress(raw[: len(raw) * 2 // 3]))  # a valid gzip of a dump cut short
        return bad

    def redo(bad: Path) -> None:
        _my_dump(my, agent.backups / "my" / "app-3.sql.gz")
        bad.unlink()

    (inc,) = agent.fault([("db_backup_restore_failed", "my-app", "db-backup-unrestorable")], truncate, redo)
    assert inc["severity"] == "critical"

    def age() -> list[Path]:
        old = time.time() - 2 * 3600
        files = sorted((agent.backups / "my").glob("*.gz"))
        for f in files:
            os.utime(f, (old, old))
        return files

    def touch(files: list[Path]) -> None:
        for f in files:
            os.utime(f)

    agent.fault([("db_backup_stale", "my-app", "db-backup-stale")], age, touch)


def _check(lab: Lab, tmp: Path, playbook: str, *variables: str) -> tuple[int, dict[str, Any]]:
    argv = [DIAG, "check", "--json", "-i", str(lab.inventory), "--known-hosts", str(lab.known_hosts), "-p", playbook]
    for v in variables:
        argv += ["--var", v]
    p = subprocess.run([*argv, "h01"], cwd=tmp, capture_output=True, text=True, timeout=180)
    assert p.stdout.strip(), p.stderr
    doc = json.loads(p.stdout)
    return p.returncode, doc["results"][0]


def test_remote_playbooks_over_ssh(pg: PgPair, my: MariaPair, ssh_lab: Lab, tmp_path: Path) -> None:
    """postgres-health and mysql-health run by `diag check` on a lab host (its own network namespace, reached over
    SSH) against the servers' unix sockets, as the lab's SSH user: healthy, then with a fault."""
    pg_dsn = f"dsn=host={pg.dir} port={pg.primary.port} user=postgres dbname=postgres"
    rc, r = _check(ssh_lab, tmp_path, "postgres-health", pg_dsn, "min_replicas=1")
    assert (rc, r["status"]) == (0, "ok"), r
    steps = {s["id"]: s for s in r["steps"]}
    assert steps["replication"]["parsed"]["role"] == "primary", steps["replication"]
    holder = psycopg.connect(pg.primary.dsn)
    holder.execute("UPDATE t SET v = v WHERE id = 3 AND 'pg-literal' <> ''")
    try:
        time.sleep(1.5)
        rc, r = _check(ssh_lab, tmp_path, "postgres-health", pg_dsn, "idle_in_transaction_seconds=1")
    finally:
        holder.rollback()
        holder.close()
    assert rc == 1 and [f["check"] for f in r["findings"]] == ["postgres_idle_in_transaction"], r
    assert "pg-literal" not in json.dumps(r)
    standby_dsn = f"dsn=host={pg.dir} port={pg.standby.port} user=postgres dbname=postgres"
    rc, r = _check(ssh_lab, tmp_path, "postgres-health", standby_dsn)
    assert (rc, r["status"]) == (0, "ok"), r

    my.primary.sql(f"CREATE USER IF NOT EXISTS '{LAB_USER}'@'localhost' IDENTIFIED VIA unix_socket;"
                   f"GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '{LAB_USER}'@'localhost'")  # fmt: skip
    wait_for(lambda: LAB_USER in my.replica.sql("SELECT user FROM mysql.user"), 30, what="the user replicated")
    replica = f"client_options=--socket={my.replica.socket}"
    rc, r = _check(ssh_lab, tmp_path, "mysql-health", replica)
    assert (rc, r["status"]) == (0, "ok"), r
    my.replica.sql("STOP SLAVE")
    try:
        rc, r = _check(ssh_lab, tmp_path, "mysql-health", replica)
    finally:
        my.replica.sql("START SLAVE")
    assert rc == 2 and [f["check"] for f in r["findings"]] == ["mysql_replication_stopped"], r
    assert "IO thread No, SQL thread No" in r["findings"][0]["summary"]
    rc, r = _check(ssh_lab, tmp_path, "mysql-health", "client_options=--socket=/nonexistent/mysqld.sock")
    assert rc == 2 and r["findings"][0]["check"] == "mysql_down", r
