"""Shared test helpers: a free-port finder, an HTTP poller, and a fixture that runs ``diag agent`` as a real process.

Every process a helper starts is stopped by PID at teardown, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The ``diag`` console script of the interpreter running the tests (the venv's).
DIAG = str(Path(sys.executable).with_name("diag"))

#: Ports of the agent tests; other tests pass their own range to :func:`free_port`.
AGENT_PORTS = range(19200, 19300)


def _bindable(port: int, host: str) -> bool:
    # SO_REUSEADDR as every server sets it: a port in TIME_WAIT after a clean exit counts as free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(ports: Sequence[int], host: str = "127.0.0.1") -> int:
    """The first port in ``ports`` that nothing listens on now (checked by binding it)."""
    for port in ports:
        if _bindable(port, host):
            return port
    raise RuntimeError(f"no free port in {ports}")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing accepts connections on the port and a new server could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        if s.connect_ex((host, port)) == 0:
            return False
    return _bindable(port, host)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; (status, body) for any HTTP answer, OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def json_request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, Any]:
    """Send ``body`` as JSON; (status, parsed JSON answer or text or None) for any HTTP answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if not raw.strip():
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Call ``check`` until it returns something truthy (and return that); fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError, KeyError) as e:  # not up yet
            last, value = e, None
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Send ``sig`` to the process (by its PID), wait, kill it if it does not exit; return its status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return int(proc.returncode)


@dataclass
class AgentProcess:
    """A running ``diag agent``: its process, address and log file."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return http_get(self.url + path, timeout)

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, body
        return body.decode()

    def health(self) -> dict[str, Any]:
        status, body = self.get("/healthz")
        assert status == 200, body
        return dict(json.loads(body))

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return stop_process(self.proc, sig)


StartAgent = Callable[..., AgentProcess]


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[StartAgent]:
    """Factory: ``start_agent(inventory_text, *extra_args)`` runs ``diag agent`` and waits until /healthz answers.

    The inventory is written to a temp file, data goes to a temp dir, the port comes from
    :data:`AGENT_PORTS` (pass ``ports=`` for another range). Every agent is stopped at teardown.
    """
    started: list[AgentProcess] = []

    def start(inventory: str = "", *extra: str, ports: Sequence[int] = AGENT_PORTS, wait: bool = True) -> AgentProcess:
        n = len(started)
        inv = tmp_path / f"inventory-{n}.yaml"
        inv.write_text(inventory or "hosts: {}\n")
        log = tmp_path / f"agent-{n}.log"
        port = free_port(ports)
        args = [DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}"]
        args += ["--data", str(tmp_path / f"data-{n}"), *extra]
        with log.open("wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        agent = AgentProcess(proc, port, log, args)
        started.append(agent)
        if wait:

            def up() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"diag agent exited with {proc.returncode}:\n{agent.stderr()}")
                return agent.get("/healthz", timeout=2)[0] == 200

            wait_for(up, timeout=30, what=f"diag agent on port {port}")
        return agent

    yield start
    for agent in started:
        agent.stop()  # SIGTERM, then SIGKILL after 10 s
