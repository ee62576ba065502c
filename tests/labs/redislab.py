"""A real Redis server for tests and benchmarks: ``redis-server`` on loopback, no persistence, stopped by PID.

The package comes from scripts/debian-packages.txt (scripts/test.sh installs it). Ports 20500-20549 belong to the
scale-out tests and benches.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_SERVER = "/usr/bin/redis-server"


def ensure_redis() -> None:
    if not Path(REDIS_SERVER).exists():  # scripts/test.sh installs every package the tests need
        raise RuntimeError("redis-server is not installed (it is in scripts/debian-packages.txt)")


class RedisServer:
    """``with RedisServer(20500) as r: r.url`` runs a throw-away Redis on 127.0.0.1:PORT."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="dgd-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        ensure_redis()
        log = open(self.dir / "redis.log", "wb")
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
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
            if self.proc.poll() is not None:
                break
        self.__exit__()
        raise RuntimeError(f"redis-server on port {self.port} did not start: {(self.dir / 'redis.log').read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
