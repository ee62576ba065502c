"""One collection of a MySQL or MariaDB server: availability, sessions, InnoDB locks, replication, storage.

Like mysqld_exporter it reads ``SHOW GLOBAL STATUS``/``VARIABLES``, the processlist, ``INNODB_TRX`` and the
replica status; the connection is kept between runs and re-opened after a failure. The driver is imported here
only (docs/databases.md says which and why), and this module only when a ``mysql`` instance is configured. The
monitoring user needs ``PROCESS, REPLICATION CLIENT`` (MariaDB: ``SLAVE MONITOR``) and ``SELECT`` for sizes.
"""

from __future__ import annotations

from typing import Any

import MySQLdb

from diag.errors import ProbeError, SecretError
from diag.model import Evidence, Result
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
from diag.probes.databases.options import DatabaseOptions, Instance, dsn_keys
from diag.probes.databases.sqlmask import mask_sql
from diag.secrets import mask

VARIABLES = ("version", "version_comment", "read_only", "max_connections", "log_bin")
PROCESSLIST_SQL = (
    "SELECT ID, COALESCE(USER, ''), COALESCE(DB, ''), COALESCE(COMMAND, ''), COALESCE(TIME, 0), COALESCE(STATE, ''), "
    "COALESCE(INFO, '') FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
)
TRX_SQL = (
    "SELECT trx_mysql_thread_id, trx_state, TIMESTAMPDIFF(SECOND, trx_started, NOW()), "
    "TIMESTAMPDIFF(SECOND, trx_wait_started, NOW()) FROM information_schema.INNODB_TRX"
)
LOCK_WAITS_SQL = (  # MariaDB (and MySQL 5.7): information_schema.INNODB_LOCK_WAITS
    "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id FROM information_schema.INNODB_LOCK_WAITS w "
    "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id "
    "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id",
    # MySQL 8: performance_schema.data_lock_waits
    "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id FROM performance_schema.data_lock_waits w "
    "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.BLOCKING_ENGINE_TRANSACTION_ID "
    "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.REQUESTING_ENGINE_TRANSACTION_ID",
)
SIZES_SQL = (
    "SELECT table_schema, SUM(COALESCE(data_length, 0) + COALESCE(index_length, 0)) FROM information_schema.TABLES "
    "WHERE table_schema NOT IN ('information_schema', 'performance_schema', 'sys') GROUP BY table_schema"
)
DUMP_COMMANDS = ("Binlog Dump", "Binlog Dump GTID")

H = {
    "up": "1 when the server accepted a connection and answered the probe's queries.",
    "info": "The server's version, flavour (mysql or mariadb) and role (primary or replica); always 1.",
    "start": "When the server started, Unix time (now - Uptime).",
    "uptime": "Time since the server started.",
    "ro": "1 when read_only is on.",
    "maxconn": "max_connections of the server.",
    "maxused": "Most connections in use at once since the server started.",
    "threads": "Client threads by state: connected, running.",
    "conns": "Client sessions by processlist command (Query, Sleep, ...).",
    "aborted": "Connection attempts that failed.",
    "waiting": "InnoDB transactions waiting for a row lock.",
    "deadlocks": "InnoDB deadlocks detected.",
    "longq": "Run time of the longest running statement (0 when none runs).",
    "longx": "Age of the oldest open InnoDB transaction (0 when none is open).",
    "idlex": "Longest time a session with an open transaction has been idle (0 when none is).",
    "size": "Data and index size of the schema.",
    "binlog": "Size of the binary logs on disk.",
    "binlogs": "Binary log files.",
    "reads": "InnoDB logical read requests.",
    "disk_reads": "InnoDB reads that missed the buffer pool and went to disk.",
    "hit": "Share of InnoDB read requests served from the buffer pool since the previous run.",
    "tmp_disk": "Internal temporary tables created on disk.",
    "tmp_files": "Temporary files created.",
    "replicas": "Replicas connected to this primary (binlog dump threads).",
    "io": "1 when the replica's IO thread is running (connected to its primary).",
    "sql": "1 when the replica's SQL thread is running (applying the relay log).",
    "lags": "Seconds_Behind_Master of the replica.",
    "lagb": "Bytes of the primary's binary log read but not yet applied (when both are in the same file).",
}


def connect_params(inst: Instance) -> dict[str, Any]:
    """The driver's keyword arguments from ``mysql://user@host:port/db?unix_socket=PATH`` or key=value pairs."""
    keys = dsn_keys(inst.dsn)
    params: dict[str, Any] = {"connect_timeout": max(1, round(inst.connect_timeout)), "autocommit": True}
    if keys.get("user"):
        params["user"] = keys["user"]
    socket = keys.get("unix_socket") or keys.get("socket")
    if socket:
        params["unix_socket"] = socket
    if keys.get("host"):
        params["host"] = keys["host"]
    if keys.get("port"):
        params["port"] = int(keys["port"])
    if keys.get("dbname") or keys.get("database"):
        params["database"] = keys.get("dbname") or keys["database"]
    if not socket and "host" not in params:
        params["host"] = "localhost"
    return params


class MysqlInstance:
    """Collects one configured instance; keeps its connection and the previous run's counters."""

    def __init__(self, inst: Instance, opts: DatabaseOptions) -> None:
        self.inst = inst
        self.opts = opts
        self.conn: Any = None
        self.prev: dict[str, float] = {}
        self._lock_waits_sql: str | None = LOCK_WAITS_SQL[0]

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except MySQLdb.Error:
                pass  # already broken: closing is only tidying up
            finally:
                self.conn = None

    def connect(self) -> Any:
        if self.conn is None:
            params = connect_params(self.inst)
            secret = self.inst.secret()
            if secret is not None:
                params["password"] = secret
            params["read_timeout"] = max(1, round(self.opts.timeout * 0.8))
            self.conn = MySQLdb.connect(**params)
        return self.conn

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            cur.close()

    def _dict_rows(self, sql: str) -> list[dict[str, Any]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    def collect(self, fam: Families, r: Result, starts: StartTimes) -> None:
        labels = {"server": self.inst.name}
        status: dict[str, Any] = {}
        for attempt in (1, 2):
            kept = self.conn is not None
            try:
                self.connect()
                status = {str(k): v for k, v in self._rows("SHOW GLOBAL STATUS")}
                break
            except SecretError as e:
                secret_missing("mysql", self.inst.name, e, r)
                return
            except Exception as e:  # MySQLdb.Error: the server cannot be checked
                self.close()
                if kept and attempt == 1 and isinstance(e, MySQLdb.OperationalError):
                    continue  # the connection kept from the previous run broke (a restart): try a fresh one
                self._down(fam, r, e)
                return
        try:
            self._collect(status, fam, r, labels, starts)
        except MySQLdb.Error as e:
            self.close()
            raise ProbeError(f"mysql {self.inst.name}: {mask(str(e))}") from None

    def _down(self, fam: Families, r: Result, e: Exception) -> None:
        error = mask(" ".join(str(e).split()))
        fam.add("diag_mysql_up", H["up"], 0, {"server": self.inst.name})
        ev = [Evidence("text", f"connecting to {self.inst.name}", error, {"dsn": mask(self.inst.dsn)})]
        code = e.args[0] if isinstance(e, MySQLdb.Error) and e.args else None
        if code == 1040 or "Too many connections" in error:
            r.find(
                "mysql_connections_high",
                "critical",
                f"mysql {self.inst.name} refuses new connections: Too many connections",
                subject=self.inst.name,
                cause="db_connections_exhausted",
                evidence=ev,
            )
            return
        r.find(
            "mysql_down",
            "critical",
            f"mysql {self.inst.name} does not accept connections: {error[:200]}",
            subject=self.inst.name,
            cause="db_down",
            evidence=ev,
        )

    def _collect(
        self, status: dict[str, Any], fam: Families, r: Result, labels: dict[str, str], starts: StartTimes
    ) -> None:
        o = self.opts
        name = self.inst.name
        names = ", ".join(f"'{v}'" for v in VARIABLES)
        var = {str(k).lower(): str(v) for k, v in self._rows(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")}
        now = float(self._rows("SELECT UNIX_TIMESTAMP()")[0][0])

        def st(key: str) -> float | None:
            v = status.get(key)
            try:
                return float(v) if v is not None else None
            except ValueError:
                return None

        uptime = st("Uptime") or 0.0
        start = now - uptime
        restarted_from = starts.seen(name, round(start), tolerance=1.5)
        version = var.get("version", "")
        flavor = "mariadb" if "mariadb" in (version + var.get("version_comment", "")).lower() else "mysql"
        replica = self._replica_status()
        role = "replica" if replica else "primary"
        read_only = var.get("read_only", "OFF").upper() in ("ON", "1")
        max_conn = float(var.get("max_connections", "0") or 0)
        fam.add("diag_mysql_up", H["up"], 1, labels)
        fam.add("diag_mysql_info", H["info"], 1, {**labels, "version": version, "flavor": flavor, "role": role})
        fam.add("diag_mysql_start_time_seconds", H["start"], round(start), labels)
        fam.add("diag_mysql_uptime_seconds", H["uptime"], uptime, labels)
        fam.add("diag_mysql_read_only", H["ro"], 1 if read_only else 0, labels)
        fam.add("diag_mysql_max_connections", H["maxconn"], max_conn, labels)
        fam.add("diag_mysql_max_used_connections", H["maxused"], st("Max_used_connections"), labels)
        # Declared on every server (no sample, no false zero) so that their names exist whatever the role here.
        for key, family in (
            ("hit", "diag_mysql_innodb_buffer_pool_hit_ratio"),
            ("io", "diag_mysql_replica_io_running"),
            ("sql", "diag_mysql_replica_sql_running"),
            ("lags", "diag_mysql_replica_lag_seconds"),
            ("lagb", "diag_mysql_replica_lag_bytes"),
            ("binlog", "diag_mysql_binlog_size_bytes"),
            ("binlogs", "diag_mysql_binlog_files"),
        ):
            fam.add(family, H[key], None, labels)
        fam.add("diag_mysql_threads", H["threads"], st("Threads_connected"), {**labels, "state": "connected"})
        fam.add("diag_mysql_threads", H["threads"], st("Threads_running"), {**labels, "state": "running"})
        fam.add("diag_mysql_aborted_connects_total", H["aborted"], st("Aborted_connects"), labels, "counter")
        fam.add("diag_mysql_tmp_disk_tables_total", H["tmp_disk"], st("Created_tmp_disk_tables"), labels, "counter")
        fam.add("diag_mysql_tmp_files_total", H["tmp_files"], st("Created_tmp_files"), labels, "counter")
        reads, disk_reads = st("Innodb_buffer_pool_read_requests"), st("Innodb_buffer_pool_reads")
        fam.add("diag_mysql_innodb_buffer_pool_read_requests_total", H["reads"], reads, labels, "counter")
        fam.add("diag_mysql_innodb_buffer_pool_reads_total", H["disk_reads"], disk_reads, labels, "counter")
        if uptime < o.restart_notice_seconds and restarted_from is not None:
            r.find(
                "mysql_restarted",
                "warning",
                f"mysql {name} restarted {uptime:.0f} s ago",
                subject=name,
                cause="db_restarted",
                evidence=[Evidence("metric", "start time", f"before: {restarted_from:.0f}, now: {start:.0f}")],
            )
        if self.inst.role != "any" and self.inst.role != role:
            r.find(
                "mysql_role_changed",
                "critical",
                f"mysql {name} is a {role}, configured as {self.inst.role} (failover or promotion?)",
                subject=name,
                cause="db_replication_broken",
            )
        if read_only and role == "primary" and self.inst.role == "primary":
            r.find(
                "mysql_read_only",
                "warning",
                f"mysql {name} is the primary but read_only is on: writes fail",
                subject=name,
                cause="db_read_only",
            )
        procs = self._rows(PROCESSLIST_SQL)
        trx = self._rows(TRX_SQL)
        self._sessions(procs, trx, max_conn, status, fam, r, labels)
        self._cache(reads, disk_reads, fam, r, labels)
        for schema, size in self._rows(SIZES_SQL):
            fam.add("diag_mysql_schema_size_bytes", H["size"], float(size or 0), {**labels, "schema": str(schema)})
        if var.get("log_bin", "OFF").upper() in ("ON", "1"):
            logs = self._rows("SHOW BINARY LOGS")
            total = sum(float(row[1]) for row in logs)
            fam.add("diag_mysql_binlog_size_bytes", H["binlog"], total, labels)
            fam.add("diag_mysql_binlog_files", H["binlogs"], len(logs), labels)
            if o.log_warning_bytes and total > o.log_warning_bytes:
                r.find(
                    "mysql_binlog_large",
                    "warning",
                    f"mysql {name}: binary logs take {size_text(total)} (limit {size_text(o.log_warning_bytes)})",
                    subject=name,
                    cause="db_logs_filling_disk",
                    evidence=[Evidence("text", "SHOW BINARY LOGS", "\n".join(f"{f} {s}" for f, s, *_ in logs[-10:]))],
                )
        dumps = sum(1 for p in procs if p[3] in DUMP_COMMANDS)
        fam.add("diag_mysql_replicas", H["replicas"], dumps, labels)
        if role == "primary" and dumps < self.inst.min_replicas:
            r.find(
                "mysql_replication_stopped",
                "critical",
                f"mysql {name}: {dumps} replica(s) connected, {self.inst.min_replicas} expected",
                subject=name,
                cause="db_replication_broken",
            )
        if replica:
            self._replica(replica, fam, r, labels)

    def _replica_status(self) -> dict[str, Any] | None:
        for sql in ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"):
            try:
                rows = self._dict_rows(sql)
            except MySQLdb.ProgrammingError:
                continue  # syntax the server does not know: older MySQL/MariaDB, or MySQL 8.4 without SLAVE
            if not rows:
                return None
            # MySQL 8.0.22+ says Replica/Source where older servers and MariaDB say Slave/Master.
            return {k.replace("Replica", "Slave").replace("Source", "Master"): v for k, v in rows[0].items()}
        return None

    def _sessions(
        self,
        procs: list[tuple[Any, ...]],
        trx: list[tuple[Any, ...]],
        max_conn: float,
        status: dict[str, Any],
        fam: Families,
        r: Result,
        labels: dict[str, str],
    ) -> None:
        o = self.opts
        name = self.inst.name
        trx_by_thread = {int(t[0]): t for t in trx}
        commands: dict[str, int] = {}
        sessions: dict[int, Session] = {}
        longq = longx = idlex = 0.0
        for pid, user, db, command, secs, state, info in procs:
            command = str(command)
            if user == "system user" or command in ("Daemon", "Binlog Dump", "Binlog Dump GTID", "Killed"):
                continue  # replication threads and the event scheduler are not clients
            commands[command] = commands.get(command, 0) + 1
            t = trx_by_thread.get(int(pid))
            s = Session(
                int(pid),
                str(user),
                str(db),
                command if command != "Query" else f"Query ({state})",
                float(secs or 0),
                float(t[2]) if t and t[2] is not None else None,
                mask_sql(str(info), o.query_chars, double_quoted_strings=True),
            )
            sessions[int(pid)] = s
            if command == "Query":
                longq = max(longq, s.seconds)
            if s.xact_seconds is not None:
                longx = max(longx, s.xact_seconds)
                if command == "Sleep":
                    s.state = "idle in transaction"
                    idlex = max(idlex, s.seconds)
        for command in ("Query", "Sleep"):
            commands.setdefault(command, 0)
        for command, n in sorted(commands.items()):
            fam.add("diag_mysql_connections", H["conns"], n, {**labels, "command": command})
        waits = [t for t in trx if str(t[1]) == "LOCK WAIT"]
        fam.add("diag_mysql_innodb_lock_waits", H["waiting"], len(waits), labels)
        fam.add("diag_mysql_longest_query_seconds", H["longq"], longq, labels)
        fam.add("diag_mysql_longest_transaction_seconds", H["longx"], longx, labels)
        fam.add("diag_mysql_idle_in_transaction_longest_seconds", H["idlex"], idlex, labels)
        deadlocks = status.get("Innodb_deadlocks")
        if deadlocks is None:
            try:  # MySQL counts them in INNODB_METRICS, MariaDB in its status variables
                rows = self._rows("SELECT count FROM information_schema.INNODB_METRICS WHERE name = 'lock_deadlocks'")
                deadlocks = rows[0][0] if rows else None
            except MySQLdb.Error:
                deadlocks = None
        if deadlocks is not None:
            dl = float(deadlocks)
            fam.add("diag_mysql_innodb_deadlocks_total", H["deadlocks"], dl, labels, "counter")
            prev = self.prev.get("deadlocks")
            if prev is not None and dl > prev:
                r.find(
                    "mysql_deadlocks",
                    "warning",
                    f"mysql {name}: {dl - prev:.0f} deadlock(s) since the previous run",
                    subject=name,
                    cause="db_lock_contention",
                    evidence=[Evidence("metric", "InnoDB deadlocks", f"{prev:.0f} -> {dl:.0f}")],
                )
            self.prev["deadlocks"] = dl
        connected = float(status.get("Threads_connected") or 0)
        pct = percent(connected, max_conn)
        sev = level(pct, o.connections_warning_percent, o.connections_critical_percent)
        if sev:
            top = busiest(sessions.values())
            r.find(
                "mysql_connections_high",
                sev,
                f"mysql {name}: {connected:.0f} of {max_conn:.0f} connections in use ({pct:.0f} %)",
                subject=name,
                cause="db_connections_exhausted",
                evidence=[
                    Evidence(
                        "metric",
                        "connections by user@schema",
                        top,
                        {"connected": connected, "max_connections": max_conn},
                    ),
                    sessions_evidence("longest sessions", list(sessions.values()), o.evidence_sessions),
                ],
            )
        idle_tx = [
            s
            for s in sessions.values()
            if s.state == "idle in transaction" and s.seconds >= o.idle_in_transaction_warning_seconds
        ]
        if idle_tx:
            r.find(
                "mysql_idle_in_transaction",
                "warning",
                f"mysql {name}: {len(idle_tx)} session(s) idle in transaction, "
                f"longest {max(s.seconds for s in idle_tx):.0f} s",
                subject=name,
                cause="db_idle_in_transaction",
                evidence=[sessions_evidence("sessions idle with an open transaction", idle_tx, o.evidence_sessions)],
            )
        long_waits = [t for t in waits if float(t[3] or 0) >= o.lock_wait_warning_seconds]
        if long_waits:
            blockers = self._blockers()
            waiting = []
            for t in long_waits:
                w = sessions.get(int(t[0]))
                if w is None:
                    continue
                w.seconds = float(t[3] or 0)
                if int(t[0]) in blockers:
                    w.blocked_by = "thread " + ", ".join(str(b) for b in sorted(blockers[int(t[0])]))
                waiting.append(w)
            holders = [sessions[b] for bs in blockers.values() for b in bs if b in sessions]
            ev = [sessions_evidence("sessions waiting for a row lock", waiting, o.evidence_sessions)]
            if holders:
                ev.append(sessions_evidence("sessions holding the locks", holders, o.evidence_sessions))
            r.find(
                "mysql_lock_waits",
                "warning",
                f"mysql {name}: {len(long_waits)} transaction(s) waiting for a row lock, "
                f"longest {max(float(t[3] or 0) for t in long_waits):.0f} s",
                subject=name,
                cause="db_lock_contention",
                evidence=ev,
            )
        long_queries = [
            s for s in sessions.values() if s.state.startswith("Query") and s.seconds >= o.long_query_warning_seconds
        ]
        if long_queries:
            r.find(
                "mysql_long_query",
                "warning",
                f"mysql {name}: a statement has been running for {max(s.seconds for s in long_queries):.0f} s",
                subject=name,
                cause="db_long_query",
                evidence=[sessions_evidence("long running statements", long_queries, o.evidence_sessions)],
            )
        long_tx = [s for s in sessions.values() if (s.xact_seconds or 0) >= o.long_transaction_warning_seconds]
        if long_tx:
            r.find(
                "mysql_long_transaction",
                "warning",
                f"mysql {name}: a transaction has been open for {max(s.xact_seconds or 0 for s in long_tx):.0f} s",
                subject=name,
                cause="db_long_transaction",
                evidence=[sessions_evidence("long transactions", long_tx, o.evidence_sessions)],
            )
        self._long_tx = sorted(
            (s for s in sessions.values() if s.xact_seconds is not None), key=lambda s: -(s.xact_seconds or 0)
        )

    def _blockers(self) -> dict[int, set[int]]:
        """Waiting thread -> threads holding the lock it waits for (empty when the server does not tell)."""
        out: dict[int, set[int]] = {}
        for sql in LOCK_WAITS_SQL:
            if self._lock_waits_sql not in (None, sql):
                continue
            try:
                rows = self._rows(sql)
            except MySQLdb.Error:
                self._lock_waits_sql = LOCK_WAITS_SQL[1] if sql == LOCK_WAITS_SQL[0] else None
                continue
            for waiter, holder in rows:
                out.setdefault(int(waiter), set()).add(int(holder))
            return out
        return out

    def _cache(self, reads: float | None, disk: float | None, fam: Families, r: Result, labels: dict[str, str]) -> None:
        o = self.opts
        pr, pd = self.prev.get("reads"), self.prev.get("disk")
        if reads is None or disk is None:
            return
        if pr is not None and pd is not None and reads >= pr and disk >= pd:
            d_req, d_disk = reads - pr, disk - pd
            if d_req > 0:
                ratio = max(0.0, 1.0 - d_disk / d_req)
                fam.add("diag_mysql_innodb_buffer_pool_hit_ratio", H["hit"], ratio, labels)
                if d_req >= o.cache_min_reads and ratio * 100 < o.cache_hit_warning_percent:
                    r.find(
                        "mysql_cache_hit_low",
                        "warning",
                        f"mysql {self.inst.name}: only {ratio * 100:.1f} % of InnoDB reads hit the buffer pool "
                        "since the previous run",
                        subject=self.inst.name,
                        cause="db_cache_too_small",
                        evidence=[
                            Evidence(
                                "metric", "since the previous run", f"requests {d_req:.0f}, from disk {d_disk:.0f}"
                            )
                        ],
                    )
        self.prev.update(reads=reads, disk=disk)

    def _replica(self, rs: dict[str, Any], fam: Families, r: Result, labels: dict[str, str]) -> None:
        o = self.opts
        name = self.inst.name
        io = str(rs.get("Slave_IO_Running") or "No")
        sql = str(rs.get("Slave_SQL_Running") or "No")
        behind = rs.get("Seconds_Behind_Master")
        lag_b: float | None = None
        if rs.get("Master_Log_File") and rs.get("Master_Log_File") == rs.get("Relay_Master_Log_File"):
            lag_b = max(0.0, float(rs.get("Read_Master_Log_Pos") or 0) - float(rs.get("Exec_Master_Log_Pos") or 0))
        fam.add("diag_mysql_replica_io_running", H["io"], 1 if io == "Yes" else 0, labels)
        fam.add("diag_mysql_replica_sql_running", H["sql"], 1 if sql == "Yes" else 0, labels)
        fam.add("diag_mysql_replica_lag_seconds", H["lags"], float(behind) if behind is not None else None, labels)
        fam.add("diag_mysql_replica_lag_bytes", H["lagb"], lag_b, labels)
        text = "\n".join(
            f"{k}: {mask(str(rs.get(k, '')))}"
            for k in (
                "Master_Host",
                "Master_Port",
                "Slave_IO_Running",
                "Slave_SQL_Running",
                "Seconds_Behind_Master",
                "Master_Log_File",
                "Read_Master_Log_Pos",
                "Relay_Master_Log_File",
                "Exec_Master_Log_Pos",
                "Slave_SQL_Running_State",
                "Last_IO_Errno",
                "Last_IO_Error",
                "Last_SQL_Errno",
                "Last_SQL_Error",
            )
            if k in rs
        )
        ev = [Evidence("text", "SHOW SLAVE STATUS", text, {"io": io, "sql": sql, "seconds_behind": behind})]
        if io != "Yes" or sql != "Yes":
            err = str(rs.get("Last_IO_Error") or rs.get("Last_SQL_Error") or "").strip()
            r.find(
                "mysql_replication_stopped",
                "critical",
                f"mysql {name}: replication stopped (IO thread {io}, SQL thread {sql})"
                + (f": {mask(err)[:160]}" if err else ""),
                subject=name,
                cause="db_replication_broken",
                evidence=ev,
            )
            return
        lag_s = float(behind or 0)
        if lag_s >= o.replica_lag_warning_seconds or (lag_b or 0) >= o.replica_lag_warning_bytes:
            long_tx = getattr(self, "_long_tx", [])
            if long_tx:
                ev.append(
                    sessions_evidence(
                        "open transactions on the replica (they may hold the SQL thread back)",
                        long_tx,
                        o.evidence_sessions,
                    )
                )
            r.find(
                "mysql_replica_lag",
                "critical" if lag_s >= o.replica_lag_critical_seconds else "warning",
                f"mysql {name}: replica is {lag_s:.0f} s behind its primary"
                + (f" ({size_text(lag_b)} of binlog not applied)" if lag_b else ""),
                subject=name,
                cause="db_replica_lag",
                evidence=ev,
            )
