"""A real PostgreSQL server for tests and benchmarks: a throw-away cluster (initdb) on loopback, stopped by PID.

Runs as the ``postgres`` system user (initdb refuses root) with ``trust`` authentication on 127.0.0.1 only, in a
temporary directory. The package comes from scripts/debian-packages.txt. The port is reserved for this process from
20570-20579 (:func:`tests.conftest.free_port`), and the server that answers on it is checked to be ours (its
``data_directory`` is the cluster made here), not any PostgreSQL that pg_isready finds there.
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

from tests.conftest import free_port

PORTS = range(20570, 20580)


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:  # scripts/test.sh installs every package the tests need
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (in scripts/debian-packages.txt)")
    return Path(found[-1]).parent


def _drop_to_postgres() -> None:
    pw = pwd.getpwnam("postgres")
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


class PostgresServer:
    """``with PostgresServer() as pg: pg.url`` gives ``postgresql://postgres@127.0.0.1:PORT/diag``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port(PORTS)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/diag"
        self.dir = Path(tempfile.mkdtemp(prefix="dgd-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, preexec_fn=_drop_to_postgres, capture_output=True, text=True, check=True, timeout=timeout
        )

    def __enter__(self) -> PostgresServer:
        bindir = pg_bin()
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = self.dir / "data"
        self._as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            timeout=120,
        )
        self._spawn()
        self._check_ours(data)
        self._as_postgres([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "diag"])
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT to our postmaster, by PID); the cluster stays for :meth:`start_again`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)

    def start_again(self) -> None:
        """Start the stopped cluster again on the same port (still reserved for this process) and check it."""
        self._spawn()
        self._check_ours(self.dir / "data")

    def _spawn(self) -> None:
        bindir = pg_bin()
        data = self.dir / "data"
        with open(self.dir / "postgres.log", "ab") as log:  # the server keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=on", "-c", "max_connections=50"],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_drop_to_postgres,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            p = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if p.returncode == 0:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres did not start: {(self.dir / 'postgres.log').read_text()}")
            time.sleep(0.1)
        else:
            self.__exit__()
            raise RuntimeError(f"postgres not ready on {self.port}: {(self.dir / 'postgres.log').read_text()}")

    def _check_ours(self, data: Path) -> None:
        """The server on 127.0.0.1:PORT serves our cluster: another test run's PostgreSQL would answer too."""
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=5) as c:
            row = c.execute("SELECT current_setting('data_directory')").fetchone()
        if row is None or Path(str(row[0])).resolve() != data.resolve() or self.proc is None or self.proc.poll():
            self.__exit__()
            raise RuntimeError(f"port {self.port}: the PostgreSQL answering serves {row}, not {data}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
