"""A real Redis server for tests and benchmarks: ``redis-server`` on loopback, no persistence, stopped by PID.

The package comes from scripts/debian-packages.txt (scripts/test.sh installs it). The port is reserved for this
process from 20550-20569 (:func:`tests.conftest.free_port`; clear of the fixed ports older checkouts used,
20500-20510), so two test runs on one machine never share a Redis; and the server that answers is checked to be
the one started here (``INFO server``: its ``process_id`` is our child's PID and its ``run_id`` is kept), not just
any Redis that says PONG.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.conftest import free_port

REDIS_SERVER = "/usr/bin/redis-server"
PORTS = range(20550, 20570)


def ensure_redis() -> None:
    if not Path(REDIS_SERVER).exists():  # scripts/test.sh installs every package the tests need
        raise RuntimeError("redis-server is not installed (it is in scripts/debian-packages.txt)")


class RedisServer:
    """``with RedisServer() as r: r.url`` runs a throw-away Redis on 127.0.0.1 on a port of its own.

    ``kill()`` and ``restart()`` take it down hard (SIGKILL) and bring a fresh, empty one up on the same port: the
    broker-loss tests use them.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port(PORTS)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="dgd-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_id = ""

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def start(self) -> None:
        ensure_redis()
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the child's stdout, closed with it
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 15
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=0.5)
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                info = client.info("server")
            except redis.exceptions.RedisError:  # not listening yet
                time.sleep(0.05)
                continue
            if int(info["process_id"]) != self.proc.pid:
                self.close()
                raise RuntimeError(f"port {self.port}: another Redis (pid {info['process_id']}) answers, not ours")
            self.run_id = str(info["run_id"])
            return
        self.close()
        raise RuntimeError(f"redis-server on port {self.port} did not start: {(self.dir / 'redis.log').read_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no shutdown, nothing saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """A new, empty server on the same port (this process keeps the port reserved meanwhile)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
