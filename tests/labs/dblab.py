"""Real database servers with replicas on loopback for tests and benchmarks, stopped by PID.

- :class:`PgPair`: a PostgreSQL primary and a streaming standby made with ``pg_basebackup -R`` (hot standby,
  ``max_standby_streaming_delay = -1`` so that a query on the standby can hold replay back, as in production
  setups that favour long reports), ``trust`` on 127.0.0.1, run as the ``postgres`` user (initdb refuses root).
- :class:`MariaPair`: a MariaDB primary (binary log, server id 1) and a replica (server id 2) replicating with GTID;
  a ``diag`` user with a password reached over TCP, ``root`` over the socket.

Each lives in a temporary directory and uses the ports it is given (the caller picks free ones).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import owns_port

DIAG_PASSWORD = "s3cret-Diag-pw"  # the MariaDB diag user's password; tests pass it by reference (env:)


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:  # scripts/test.sh installs every package the tests need
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (in scripts/debian-packages.txt)")
    return Path(found[-1]).parent


def _as_user(name: str) -> None:
    pw = pwd.getpwnam(name)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def _as_postgres() -> None:
    _as_user("postgres")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGINT) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PgServer:
    """One postgres process on ``port`` with its data directory ``data``."""

    def __init__(self, base: Path, name: str, port: int) -> None:
        self.base = base
        self.name = name
        self.port = port
        self.data = base / name
        self.log = base / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, *settings: str) -> None:
        argv = [
            str(pg_bin() / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.base}",
        ]
        for s in settings:
            argv += ["-c", s]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: _as_user("postgres")
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                subprocess.run([str(pg_bin() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode
                == 0
            ):
                if not owns_port(self.proc.pid, self.port):  # pg_isready accepts any PostgreSQL on the port
                    raise RuntimeError(f"postgres {self.name}: port {self.port} answers, but not from our server")
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"postgres {self.name} did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def psql(self, sql: str, db: str = "postgres") -> str:
        p = subprocess.run([str(pg_bin() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        if p.returncode != 0:
            raise RuntimeError(f"psql on {self.name}: {p.stderr.strip()}")
        return p.stdout.strip()


class PgPair:
    """``with PgPair(port1, port2) as pg:`` -- ``pg.primary``, ``pg.standby`` (PgServer), ``pg.dir``."""

    def __init__(self, primary_port: int, standby_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dgdb-pg-"))
        os.chmod(self.dir, 0o755)
        self.primary = PgServer(self.dir, "primary", primary_port)
        self.standby = PgServer(self.dir, "standby", standby_port)

    def __enter__(self) -> PgPair:
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        try:
            subprocess.run([str(pg_bin() / "initdb"), "-D", str(self.primary.data), "-U", "postgres", "--auth=trust",
                            "-E", "UTF8", "--no-sync"],
                           preexec_fn=_as_postgres, check=True, capture_output=True, timeout=120)  # fmt: skip
            with (self.primary.data / "pg_hba.conf").open("a") as f:
                f.write("host replication postgres 127.0.0.1/32 trust\n")
            self.primary.start("wal_level=replica", "max_wal_senders=5", "max_connections=20", "fsync=off")
            subprocess.run([str(pg_bin() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U",
                            "postgres", "-D", str(self.standby.data), "-R", "-X", "stream", "--no-sync"],
                           preexec_fn=_as_postgres, check=True, capture_output=True, timeout=120)  # fmt: skip
            self.standby.start("hot_standby=on", "max_standby_streaming_delay=-1", "max_connections=20", "fsync=off",
                               "hot_standby_feedback=off")  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.standby.stop()
        self.primary.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaServer:
    def __init__(self, base: Path, name: str, port: int, server_id: int) -> None:
        self.base = base
        self.name = name
        self.port = port
        self.server_id = server_id
        self.data = base / name
        self.socket = base / f"{name}.sock"
        self.log = base / f"{name}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"mysql://diag@127.0.0.1:{self.port}/"

    def install(self) -> None:
        p = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=mysql",
                            "--auth-root-authentication-method=socket", "--skip-test-db"],
                           capture_output=True, text=True, timeout=180)  # fmt: skip
        if p.returncode != 0:  # say why: a bare CalledProcessError left a CI failure without a cause
            why = (p.stderr or p.stdout)[-2000:]
            raise RuntimeError(f"mariadb-install-db for {self.name} exited {p.returncode}: {why}")

    def start(self) -> None:
        argv = ["mariadbd", "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
                f"--pid-file={self.base}/{self.name}.pid", "--bind-address=127.0.0.1", f"--port={self.port}",
                "--user=mysql", f"--server-id={self.server_id}", "--log-bin=binlog", "--max-connections=20",
                f"--log-error={self.log}", "--innodb-buffer-pool-size=16M", "--skip-name-resolve",
                "--innodb-lock-wait-timeout=3600", "--gtid-strict-mode=1", "--log-slave-updates=1"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                self.socket.exists()
                and subprocess.run(
                    ["mariadb", f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"], capture_output=True
                ).returncode
                == 0
            ):
                if not owns_port(self.proc.pid, self.port):  # the socket is ours; the TCP port must be too
                    raise RuntimeError(f"mariadb {self.name}: port {self.port} is not served by our mariadbd")
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"mariadb {self.name} did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)
        self.proc = None

    def sql(self, sql: str, db: str = "") -> str:
        argv = ["mariadb", f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names", "-e", sql]
        p = subprocess.run(argv + ([db] if db else []), capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"mariadb on {self.name}: {p.stderr.strip()}")
        return p.stdout.strip()

    def connect(self, db: str = "") -> Any:
        """A client connection as root over the socket (MySQLdb), for faults that need a session to stay open."""
        import MySQLdb

        kwargs: dict[str, Any] = {"database": db} if db else {}
        return MySQLdb.connect(unix_socket=str(self.socket), user="root", autocommit=True, **kwargs)


class MariaPair:
    """``with MariaPair(port1, port2) as my:`` -- ``my.primary``, ``my.replica`` (MariaServer)."""

    def __init__(self, primary_port: int, replica_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dgdb-my-"))
        os.chmod(self.dir, 0o755)
        self.primary = MariaServer(self.dir, "primary", primary_port, 1)
        self.replica = MariaServer(self.dir, "replica", replica_port, 2)

    def __enter__(self) -> MariaPair:
        pw = pwd.getpwnam("mysql")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        try:
            for s in (self.primary, self.replica):
                s.install()
                s.start()
            grants = (
                f"CREATE USER 'diag'@'127.0.0.1' IDENTIFIED BY '{DIAG_PASSWORD}';"
                "GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR, SELECT ON *.* TO 'diag'@'127.0.0.1';"
                "GRANT ALL ON `diag_restore_%`.* TO 'diag'@'127.0.0.1';"
                "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-pw';"
                "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';"
            )
            self.primary.sql(grants)
            self.replica.sql("SET GLOBAL read_only = ON")  # the users come from the primary, replicated
            self.replica.sql(
                f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={self.primary.port}, MASTER_USER='repl', "
                "MASTER_PASSWORD='repl-pw', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
