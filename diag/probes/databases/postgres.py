"""One collection of a PostgreSQL (>= 13) server: availability, sessions, locks, replication, storage.

Every run asks all its questions in one ``psql`` call (the server's own client program, run without a shell):
each query comes back as one line of JSON behind its name, so one failing query (a privilege missing) loses only
its own answer. Why a program and not a driver: measured in the agent's process, ``import psycopg`` alone adds
10.5 MiB of RSS (pg8000 8.5 MiB), more than the whole memory budget of issue 18 for two databases, while a psql
call costs ~6 ms of CPU per run (docs/databases.md, bench/db_probe_vs_exporters.py). The password goes to psql
through PGPASSWORD, timeouts through PGOPTIONS and PGCONNECT_TIMEOUT; nothing secret is on a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from diag.errors import ProbeError, SecretError
from diag.model import Evidence, Result
from diag.probes.databases.backups import MissingClient, client_program
from diag.probes.databases.common import (
    Families,
    Session,
    StartTimes,
    busiest,
    level,
    percent,
    secret_missing,
    sessions_evidence,
    size_text,
)
from diag.probes.databases.options import DatabaseOptions, Instance
from diag.probes.databases.sqlmask import mask_sql
from diag.secrets import mask

SERVER_SQL = """
SELECT version(), current_setting('server_version'), current_setting('server_version_num')::int,
       extract(epoch FROM pg_postmaster_start_time())::float8, extract(epoch FROM now())::float8,
       pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on',
       current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int
"""

ACTIVITY_SQL = """
SELECT pid, coalesce(usename, ''), coalesce(datname, ''), coalesce(state, ''),
       extract(epoch FROM now() - query_start)::float8, extract(epoch FROM now() - xact_start)::float8,
       extract(epoch FROM now() - state_change)::float8, coalesce(wait_event_type, ''), coalesce(query, ''),
       CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""

DATABASES_SQL = """
SELECT d.datname, pg_database_size(d.oid)::float8, s.blks_read::float8, s.blks_hit::float8,
       s.temp_files::float8, s.temp_bytes::float8, s.deadlocks::float8, s.xact_commit::float8,
       s.xact_rollback::float8, age(d.datfrozenxid)::float8
FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid
WHERE d.datallowconn AND has_database_privilege(d.oid, 'CONNECT')
"""

REPLICAS_SQL = """
SELECT coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, ''),
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, extract(epoch FROM replay_lag)::float8
FROM pg_stat_replication
"""

STANDBY_SQL = """
SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::float8,
       pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
       pg_is_wal_replay_paused(),
       (SELECT status FROM pg_stat_wal_receiver LIMIT 1),
       current_setting('primary_conninfo') <> ''
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
                       restart_lsn)::float8
FROM pg_replication_slots
"""

WAL_SQL = "SELECT coalesce(sum(size), 0)::float8, count(*) FROM pg_ls_waldir()"

XID_LIMIT = 2**31 - 1_000_000  # PostgreSQL stops accepting writes about a million transactions before 2^31
XID_WARNING_AGE = 1_200_000_000  # check_postgres' txn_wraparound defaults: 1.3e9 / 1.4e9; warn a bit earlier
XID_CRITICAL_AGE = 1_500_000_000

H = {
    "up": "1 when the server accepted a connection and answered the probe's queries.",
    "info": "The server's version and role (primary or replica); always 1.",
    "start": "When the server (postmaster) started, Unix time.",
    "uptime": "Time since the server started.",
    "recovery": "1 when the server is in recovery (a standby).",
    "ro": "1 when new transactions are read-only (a standby, or default_transaction_read_only).",
    "maxconn": "max_connections of the server.",
    "reserved": "superuser_reserved_connections of the server.",
    "conns": "Client sessions by state (active, idle, idle in transaction, ...).",
    "waiting": "Sessions waiting for a lock.",
    "longq": "Run time of the longest running query (0 when none runs).",
    "longx": "Age of the oldest open transaction (0 when none is open).",
    "idlex": "Longest time a session has been idle in transaction (0 when none is).",
    "size": "Size of the database on disk.",
    "blks_read": "Disk blocks read (not found in shared buffers).",
    "blks_hit": "Disk blocks found in shared buffers.",
    "tfiles": "Temporary files created by queries.",
    "tbytes": "Data written to temporary files by queries.",
    "deadlocks": "Deadlocks detected.",
    "commits": "Transactions committed.",
    "rollbacks": "Transactions rolled back.",
    "xid": "Age of the database's oldest unfrozen transaction ID (wraparound at 2^31).",
    "xidleft": "Transactions left before the server refuses writes to avoid wraparound (smallest over databases).",
    "replicas": "Standbys connected to this primary (pg_stat_replication).",
    "lagb": "WAL bytes a standby has not replayed yet (on the primary: per standby; on a standby: received-replayed).",
    "lags": "Seconds a standby's replay is behind (0 when it has replayed everything it received).",
    "receiver": "1 when this standby's WAL receiver is streaming from its primary.",
    "paused": "1 when WAL replay on this standby is paused.",
    "slot": "WAL retained for a replication slot (bytes behind the current WAL position).",
    "slot_active": "1 when something is connected to the replication slot.",
    "wal": "Size of the WAL directory (pg_wal).",
    "walfiles": "WAL segment files in pg_wal.",
    "hit": "Share of block reads served from shared buffers since the previous run.",
}


#: (name, SQL, number of columns); each is asked as ``SELECT 'name<TAB>' || jsonb_agg(...)`` in one psql call
QUERIES = (
    ("server", SERVER_SQL, 9),
    ("activity", ACTIVITY_SQL, 10),
    ("databases", DATABASES_SQL, 10),
    ("slots", SLOTS_SQL, 4),
    ("wal", WAL_SQL, 2),
    ("standby", STANDBY_SQL + " WHERE pg_is_in_recovery()", 6),
    ("replicas", REPLICAS_SQL + " WHERE NOT pg_is_in_recovery()", 5),
)


class PsqlError(Exception):
    """psql could not connect or failed as a whole; the message is its last error line."""


def batch_sql() -> str:
    parts = []
    for name, sql, ncols in QUERIES:
        cols = ", ".join(f"c{i}" for i in range(ncols))
        parts.append(f"SELECT '{name}\t' || coalesce(jsonb_agg(q), '[]')::text FROM ({sql}) AS q({cols});")  # noqa: S608 - constants of this module
    return "\n".join(parts)


def parse_batch(out: str) -> dict[str, list[tuple[Any, ...]]]:
    """psql's output -> rows per query name (a query that failed is absent)."""
    answers: dict[str, list[tuple[Any, ...]]] = {}
    ncols = {name: n for name, _, n in QUERIES}
    for line in out.splitlines():  # jsonb's text is one line: newlines inside strings are escaped
        name, sep, doc = line.partition("\t")
        if not sep or name not in ncols:
            continue
        answers[name] = [tuple(o[f"c{i}"] for i in range(ncols[name])) for o in json.loads(doc)]
    return answers


class PostgresInstance:
    """Collects one configured instance; keeps the previous run's counters."""

    def __init__(self, inst: Instance, opts: DatabaseOptions) -> None:
        self.inst = inst
        self.opts = opts
        self.prev: dict[str, float] = {}
        self.sql = batch_sql()

    def close(self) -> None:
        """Nothing to close: every run is its own psql session."""

    def query(self) -> tuple[dict[str, list[tuple[Any, ...]]], str]:
        """All the queries of a run: (answers, psql's error output)."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME")}
        timeout = max(1.0, self.opts.timeout * 0.8)
        env.update(
            PGAPPNAME="diag",
            PGCONNECT_TIMEOUT=str(max(1, round(self.inst.connect_timeout))),
            # A query of the probe must never hang the probe (a lock on a catalog, a stuck function).
            PGOPTIONS=f"-c statement_timeout={int(timeout * 1000)} -c lock_timeout=2000",
        )
        secret = self.inst.secret()
        if secret is not None:
            env["PGPASSWORD"] = secret
        argv = [client_program("psql"), "-X", "-q", "-A", "-t", "-d", self.inst.dsn, "-f", "-"]
        try:
            p = subprocess.run(argv, input=self.sql, capture_output=True, text=True, env=env, timeout=timeout + 5,
                               check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise PsqlError(f"psql did not finish within {timeout + 5:.0f} s") from None
        answers = parse_batch(p.stdout)
        if "server" not in answers:
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            raise PsqlError(" ".join(lines[-2:]) if lines else f"psql exit status {p.returncode}")
        return answers, p.stderr

    def collect(self, fam: Families, r: Result, starts: StartTimes) -> None:
        """Add this instance's samples to ``fam`` and its findings to ``r``; never raises for a down server."""
        labels = {"server": self.inst.name}
        try:
            answers, errors = self.query()
        except MissingClient as e:
            raise ProbeError(str(e)) from None
        except SecretError as e:
            secret_missing("postgres", self.inst.name, e, r)
            return
        except Exception as e:  # PsqlError: the instance cannot be checked
            self._down(fam, r, str(e).removeprefix("psql: error: "))
            return
        missing = [name for name, _, _ in QUERIES if name not in answers and name != "wal"]
        if missing:  # a privilege the monitoring role lacks: the run fails with psql's reason
            raise ProbeError(
                f"postgres {self.inst.name}: no answer to {', '.join(missing)}: {mask(errors.strip())[:300]}"
            )
        self._collect(answers, fam, r, labels, starts)

    def _down(self, fam: Families, r: Result, error: str) -> None:
        error = mask(" ".join(error.split()))
        labels = {"server": self.inst.name}
        fam.add("diag_postgres_up", H["up"], 0, labels)
        ev = [Evidence("text", f"connecting to {self.inst.name}", error, {"dsn": mask(self.inst.dsn)})]
        if "too many clients" in error or "remaining connection slots are reserved" in error:
            r.find(
                "postgres_connections_high",
                "critical",
                f"postgres {self.inst.name} refuses new connections: all connection slots are taken",
                subject=self.inst.name,
                cause="db_connections_exhausted",
                evidence=ev,
            )
            return
        r.find(
            "postgres_down",
            "critical",
            f"postgres {self.inst.name} does not accept connections: {error[:200]}",
            subject=self.inst.name,
            cause="db_down",
            evidence=ev,
        )

    def _collect(
        self,
        answers: dict[str, list[tuple[Any, ...]]],
        fam: Families,
        r: Result,
        labels: dict[str, str],
        starts: StartTimes,
    ) -> None:
        o = self.opts
        name = self.inst.name
        _full, version, _num, start, now, in_recovery, ro_default, max_conn, reserved = answers["server"][0]
        restarted_from = starts.seen(name, start)
        role = "replica" if in_recovery else "primary"
        fam.add("diag_postgres_up", H["up"], 1, labels)
        fam.add("diag_postgres_info", H["info"], 1, {**labels, "version": version, "role": role})
        fam.add("diag_postgres_start_time_seconds", H["start"], start, labels)
        fam.add("diag_postgres_uptime_seconds", H["uptime"], max(0.0, now - start), labels)
        fam.add("diag_postgres_in_recovery", H["recovery"], 1 if in_recovery else 0, labels)
        fam.add("diag_postgres_read_only", H["ro"], 1 if (in_recovery or ro_default) else 0, labels)
        fam.add("diag_postgres_max_connections", H["maxconn"], max_conn, labels)
        fam.add("diag_postgres_superuser_reserved_connections", H["reserved"], reserved, labels)
        # Families that only some servers have samples for are declared on every server (no sample, no false zero),
        # so dashboards and rules find their names whichever role the servers here have.
        for key, family, extra in (
            ("slot", "diag_postgres_replication_slot_retained_bytes", ("slot", "slot_type")),
            ("slot_active", "diag_postgres_replication_slot_active", ("slot", "slot_type")),
            ("hit", "diag_postgres_cache_hit_ratio", ()),
            ("receiver", "diag_postgres_wal_receiver_up", ()),
            ("paused", "diag_postgres_replay_paused", ()),
            ("replicas", "diag_postgres_replicas", ()),
            ("lagb", "diag_postgres_replica_lag_bytes", ("replica",)),
            ("lags", "diag_postgres_replica_lag_seconds", ("replica",)),
        ):
            fam.add(family, H[key], None, {**labels, **dict.fromkeys(extra, "")})
        uptime = max(0.0, now - start)
        if restarted_from is not None and uptime < o.restart_notice_seconds:
            r.find(
                "postgres_restarted",
                "warning",
                f"postgres {name} restarted {uptime:.0f} s ago",
                subject=name,
                cause="db_restarted",
                evidence=[
                    Evidence(
                        "metric",
                        "start time",
                        f"before: {restarted_from:.0f}, now: {start:.0f}",
                        {"previous_start": restarted_from, "start": start},
                    )
                ],
            )
        if self.inst.role != "any" and self.inst.role != role:
            r.find(
                "postgres_role_changed",
                "critical",
                f"postgres {name} is a {role}, configured as {self.inst.role} (failover or promotion?)",
                subject=name,
                cause="db_replication_broken",
            )
        if ro_default and not in_recovery:
            r.find(
                "postgres_read_only",
                "warning",
                f"postgres {name} is a primary but default_transaction_read_only is on: writes fail",
                subject=name,
                cause="db_read_only",
            )
        activity = answers["activity"]
        databases = answers["databases"]
        slots = answers["slots"]
        wal: Any = answers["wal"][0] if answers.get("wal") else None  # pg_ls_waldir needs pg_monitor
        standby: Any = answers["standby"][0] if in_recovery and answers["standby"] else None
        replicas = answers["replicas"]
        if in_recovery and standby is None:
            raise ProbeError(f"postgres {name}: a standby that did not report its replay state")
        self._sessions(activity, max_conn, reserved, fam, r, labels)
        self._databases(databases, fam, r, labels)
        self._replication(in_recovery, replicas, standby, slots, fam, r, labels)
        if wal is not None:
            fam.add("diag_postgres_wal_size_bytes", H["wal"], wal[0], labels)
            fam.add("diag_postgres_wal_files", H["walfiles"], wal[1], labels)
            if o.log_warning_bytes and wal[0] > o.log_warning_bytes:
                r.find(
                    "postgres_wal_large",
                    "warning",
                    f"postgres {name}: pg_wal holds {size_text(wal[0])} (limit {size_text(o.log_warning_bytes)})",
                    subject=name,
                    cause="db_logs_filling_disk",
                    evidence=[self._slots_evidence(slots)],
                )

    def _sessions(
        self, rows: list[Any], max_conn: int, reserved: int, fam: Families, r: Result, labels: dict[str, str]
    ) -> None:
        o = self.opts
        name = self.inst.name
        states: dict[str, int] = {}
        sessions: list[Session] = []
        idle_tx: list[Session] = []
        waiting: list[Session] = []
        longq = longx = idlex = 0.0
        for pid, user, db, state, q_age, x_age, s_age, wait_type, query, blockers in rows:
            key = state or "unknown"
            states[key] = states.get(key, 0) + 1
            s = Session(pid, user, db, key, s_age or 0.0, x_age, mask_sql(query, o.query_chars))
            if blockers:
                s.blocked_by = "pid " + ", ".join(str(b) for b in blockers)
            sessions.append(s)
            if state == "active" and q_age is not None:
                longq = max(longq, q_age)
            if x_age is not None:
                longx = max(longx, x_age)
            if state in ("idle in transaction", "idle in transaction (aborted)"):
                idlex = max(idlex, s_age or 0.0)
                if (s_age or 0.0) >= o.idle_in_transaction_warning_seconds:
                    idle_tx.append(s)
            if wait_type == "Lock" and state == "active":
                s.seconds = q_age or 0.0
                if s.seconds >= o.lock_wait_warning_seconds:
                    waiting.append(s)
        for state in (
            "active",
            "idle",
            "idle in transaction",
            "idle in transaction (aborted)",
            "fastpath function call",
            "disabled",
        ):
            states.setdefault(state, 0)
        for state, n in sorted(states.items()):
            fam.add("diag_postgres_connections", H["conns"], n, {**labels, "state": state})
        n_wait = sum(1 for row in rows if row[7] == "Lock")
        fam.add("diag_postgres_locks_waiting", H["waiting"], n_wait, labels)
        fam.add("diag_postgres_longest_query_seconds", H["longq"], longq, labels)
        fam.add("diag_postgres_longest_transaction_seconds", H["longx"], longx, labels)
        fam.add("diag_postgres_idle_in_transaction_longest_seconds", H["idlex"], idlex, labels)
        used = len(rows) + 1  # and the probe's own session
        usable = max(1, max_conn - reserved)
        pct = percent(used, usable)
        sev = level(pct, o.connections_warning_percent, o.connections_critical_percent)
        if sev:
            top = busiest(sessions)
            r.find(
                "postgres_connections_high",
                sev,
                f"postgres {name}: {used} of {usable} connections in use ({pct:.0f} %)",
                subject=name,
                cause="db_connections_exhausted",
                evidence=[
                    Evidence(
                        "metric",
                        "connections by user@database",
                        top,
                        {"used": used, "usable": usable, "max_connections": max_conn},
                    ),
                    sessions_evidence("longest sessions", sessions, o.evidence_sessions),
                ],
            )
        if idle_tx:
            worst = max(s.seconds for s in idle_tx)
            r.find(
                "postgres_idle_in_transaction",
                "warning",
                f"postgres {name}: {len(idle_tx)} session(s) idle in transaction, longest {worst:.0f} s",
                subject=name,
                cause="db_idle_in_transaction",
                evidence=[sessions_evidence("sessions idle in transaction", idle_tx, o.evidence_sessions)],
            )
        if waiting:
            blockers = {int(b) for s in waiting for b in s.blocked_by.removeprefix("pid ").split(", ") if b}
            holders = [s for s in sessions if s.pid in blockers]
            ev = [sessions_evidence("sessions waiting for a lock", waiting, o.evidence_sessions)]
            if holders:
                ev.append(sessions_evidence("sessions holding the locks", holders, o.evidence_sessions))
            r.find(
                "postgres_lock_waits",
                "warning",
                f"postgres {name}: {len(waiting)} session(s) waiting for a lock, "
                f"longest {max(s.seconds for s in waiting):.0f} s",
                subject=name,
                cause="db_lock_contention",
                evidence=ev,
            )
        long_queries = [s for s in sessions if s.state == "active" and s.seconds >= o.long_query_warning_seconds]
        if long_queries:
            r.find(
                "postgres_long_query",
                "warning",
                f"postgres {name}: a query has been running for {max(s.seconds for s in long_queries):.0f} s",
                subject=name,
                cause="db_long_query",
                evidence=[sessions_evidence("long running queries", long_queries, o.evidence_sessions)],
            )
        long_tx = [s for s in sessions if (s.xact_seconds or 0) >= o.long_transaction_warning_seconds]
        if long_tx:
            r.find(
                "postgres_long_transaction",
                "warning",
                f"postgres {name}: a transaction has been open for {max(s.xact_seconds or 0 for s in long_tx):.0f} s",
                subject=name,
                cause="db_long_transaction",
                evidence=[sessions_evidence("long transactions", long_tx, o.evidence_sessions)],
            )

    def _databases(self, rows: list[Any], fam: Families, r: Result, labels: dict[str, str]) -> None:
        o = self.opts
        name = self.inst.name
        deadlocks = reads = hits = 0.0
        oldest = 0.0
        oldest_db = ""
        for db, size, b_read, b_hit, t_files, t_bytes, dl, commits, rollbacks, xid_age in rows:
            lab = {**labels, "database": db}
            fam.add("diag_postgres_database_size_bytes", H["size"], size, lab)
            fam.add("diag_postgres_blocks_read_total", H["blks_read"], b_read, lab, "counter")
            fam.add("diag_postgres_blocks_hit_total", H["blks_hit"], b_hit, lab, "counter")
            fam.add("diag_postgres_temp_files_total", H["tfiles"], t_files, lab, "counter")
            fam.add("diag_postgres_temp_bytes_total", H["tbytes"], t_bytes, lab, "counter")
            fam.add("diag_postgres_deadlocks_total", H["deadlocks"], dl, lab, "counter")
            fam.add("diag_postgres_xact_commit_total", H["commits"], commits, lab, "counter")
            fam.add("diag_postgres_xact_rollback_total", H["rollbacks"], rollbacks, lab, "counter")
            fam.add("diag_postgres_database_xid_age", H["xid"], xid_age, lab)
            deadlocks += dl
            reads += b_read
            hits += b_hit
            if xid_age > oldest:
                oldest, oldest_db = xid_age, db
        fam.add("diag_postgres_xid_wraparound_remaining", H["xidleft"], max(0.0, XID_LIMIT - oldest), labels)
        if oldest >= XID_WARNING_AGE:
            r.find(
                "postgres_xid_wraparound",
                "critical" if oldest >= XID_CRITICAL_AGE else "warning",
                f"postgres {name}: database {oldest_db} is {oldest:.0f} transactions old, "
                f"{max(0.0, XID_LIMIT - oldest):.0f} left before writes stop (wraparound)",
                subject=f"{name}/{oldest_db}",
                cause="db_xid_wraparound",
            )
        prev_dl = self.prev.get("deadlocks")
        if prev_dl is not None and deadlocks > prev_dl:
            r.find(
                "postgres_deadlocks",
                "warning",
                f"postgres {name}: {deadlocks - prev_dl:.0f} deadlock(s) since the previous run",
                subject=name,
                cause="db_lock_contention",
                evidence=[Evidence("metric", "deadlocks (all databases)", f"{prev_dl:.0f} -> {deadlocks:.0f}")],
            )
        pr, ph = self.prev.get("reads"), self.prev.get("hits")
        if pr is not None and ph is not None and reads >= pr and hits >= ph:
            d_reads, d_hits = reads - pr, hits - ph
            total = d_reads + d_hits
            if total > 0:
                ratio = d_hits / total
                fam.add("diag_postgres_cache_hit_ratio", H["hit"], ratio, labels)
                if total >= o.cache_min_reads and ratio * 100 < o.cache_hit_warning_percent:
                    r.find(
                        "postgres_cache_hit_low",
                        "warning",
                        f"postgres {name}: only {ratio * 100:.1f} % of block reads hit shared buffers "
                        "since the previous run",
                        subject=name,
                        cause="db_cache_too_small",
                        evidence=[
                            Evidence("metric", "blocks since the previous run", f"hit {d_hits:.0f}, read {d_reads:.0f}")
                        ],
                    )
        self.prev.update(deadlocks=deadlocks, reads=reads, hits=hits)

    def _slots_evidence(self, slots: list[Any]) -> Evidence:
        text = "\n".join(
            f"slot {n} ({t}, {'active' if a else 'inactive'}): retains {size_text(b or 0)}" for n, t, a, b in slots
        )
        return Evidence("text", "replication slots", text or "no replication slots")

    def _replication(
        self,
        in_recovery: bool,
        replicas: list[Any],
        standby: Any,
        slots: list[Any],
        fam: Families,
        r: Result,
        labels: dict[str, str],
    ) -> None:
        o = self.opts
        name = self.inst.name
        for slot, stype, active, retained in slots:
            lab = {**labels, "slot": slot, "slot_type": stype}
            fam.add("diag_postgres_replication_slot_retained_bytes", H["slot"], retained, lab)
            fam.add("diag_postgres_replication_slot_active", H["slot_active"], 1 if active else 0, lab)
            if retained is not None and retained >= o.replica_lag_warning_bytes:
                r.find(
                    "postgres_slot_retaining_wal",
                    "warning" if active else "critical",
                    f"postgres {name}: replication slot {slot} ({'active' if active else 'inactive'}) retains "
                    f"{size_text(retained)} of WAL",
                    subject=f"{name}/{slot}",
                    cause="db_logs_filling_disk",
                    evidence=[self._slots_evidence(slots)],
                )
        if not in_recovery:
            streaming = 0
            lines = []
            for app, addr, state, lag_b, lag_s in replicas:
                lab = {**labels, "replica": app or addr}
                fam.add("diag_postgres_replica_lag_bytes", H["lagb"], lag_b, lab)
                fam.add("diag_postgres_replica_lag_seconds", H["lags"], lag_s or 0.0, lab)
                streaming += state == "streaming"
                lines.append(
                    f"{app or '-'} from {addr}: {state}, replay {size_text(lag_b or 0)} behind, lag {lag_s or 0:.1f} s"
                )
            fam.add("diag_postgres_replicas", H["replicas"], len(replicas), labels)
            if streaming < self.inst.min_replicas:
                r.find(
                    "postgres_replication_stopped",
                    "critical",
                    f"postgres {name}: {streaming} standby(s) streaming, {self.inst.min_replicas} expected",
                    subject=name,
                    cause="db_replication_broken",
                    evidence=[Evidence("text", "pg_stat_replication", "\n".join(lines) or "no standby connected")],
                )
            return
        receive, replay, since_replay, paused, receiver, has_primary = standby
        lag_b = max(0.0, (receive or 0.0) - (replay or 0.0)) if receive is not None and replay is not None else None
        # The age of the last replayed transaction alone is no lag: after an idle minute on the primary, a burst of
        # WAL would look a minute behind for the instant it takes to replay it. So the lag counts from the first run
        # that saw the standby behind (and never exceeds that age); an idle primary with nothing behind is 0.
        if not lag_b:
            self.prev.pop("behind_since", None)
            lag_s = 0.0
        else:
            behind_since = self.prev.setdefault("behind_since", time.time())
            lag_s = min(since_replay or 0.0, max(0.0, time.time() - behind_since))
        fam.add("diag_postgres_replica_lag_bytes", H["lagb"], lag_b, {**labels, "replica": "self"})
        fam.add("diag_postgres_replica_lag_seconds", H["lags"], lag_s, {**labels, "replica": "self"})
        fam.add("diag_postgres_wal_receiver_up", H["receiver"], 1 if receiver == "streaming" else 0, labels)
        fam.add("diag_postgres_replay_paused", H["paused"], 1 if paused else 0, labels)
        state_text = (
            f"WAL receiver: {receiver or 'not running'}; received {receive or 0:.0f}, replayed {replay or 0:.0f} "
            f"(LSN bytes); last replayed transaction {since_replay or 0:.0f} s ago; replay paused: {bool(paused)}"
        )
        ev = [
            Evidence(
                "text", "standby state", state_text, {"lag_bytes": lag_b, "lag_seconds": lag_s, "receiver": receiver}
            )
        ]
        if has_primary and receiver != "streaming":
            r.find(
                "postgres_replication_stopped",
                "critical",
                f"postgres {name}: the standby's WAL receiver is {receiver or 'not running'}: "
                "it gets no WAL from its primary",
                subject=name,
                cause="db_replication_broken",
                evidence=ev,
            )
        prev_replay = self.prev.get("replay")
        stuck = lag_b is not None and lag_b > 0 and prev_replay is not None and replay == prev_replay
        self.prev["replay"] = replay if replay is not None else -1.0
        if paused or stuck:
            why = "replay is paused (pg_wal_replay_pause)" if paused else "received WAL is not being replayed"
            r.find(
                "postgres_standby_not_replaying",
                "critical" if lag_s >= o.replica_lag_critical_seconds else "warning",
                f"postgres {name}: {why}; {size_text(lag_b or 0)} behind",
                subject=name,
                cause="db_replica_lag",
                evidence=ev,
            )
        if lag_s >= o.replica_lag_warning_seconds or (lag_b or 0) >= o.replica_lag_warning_bytes:
            r.find(
                "postgres_replica_lag",
                "critical" if lag_s >= o.replica_lag_critical_seconds else "warning",
                f"postgres {name}: replay is {lag_s:.0f} s and {size_text(lag_b or 0)} behind its primary",
                subject=name,
                cause="db_replica_lag",
                evidence=ev,
            )
