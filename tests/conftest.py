"""Shared test helpers: a free-port finder, an HTTP poller, and a fixture that runs ``diag agent`` as a real process.

Every process a helper starts is stopped by PID at teardown, also when the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

#: The ``diag`` console script of the interpreter running the tests (the venv's).
DIAG = str(Path(sys.executable).with_name("diag"))

#: Ports of the agent tests; other tests pass their own range to :func:`free_port`.
AGENT_PORTS = range(19200, 19300)


def _bindable(port: int, host: str, udp: bool = False) -> bool:
    # SO_REUSEADDR as every server sets it: a port in TIME_WAIT after a clean exit counts as free.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


#: One lock file per port, shared by every test run on this machine (/run is local and emptied at boot).
PORT_LOCKS = Path("/run/diag-test-ports")
_held: dict[int, IO[str]] = {}
_held_lock = threading.Lock()


def free_port(ports: Sequence[int], host: str = "127.0.0.1", udp: bool = False) -> int:
    """A port of ``ports`` that no other test process holds and nothing listens on now (checked by binding it).

    The port is reserved for this process (an exclusive ``flock`` on ``PORT_LOCKS/<port>.lock``, held until the
    process exits), so two test runs on one machine never start servers on the same port: each run reuses the
    ports it already holds once they are free again and takes new ones only when all of its own are busy.
    ``udp``: the port must be free for UDP too (a trap listener). A port where nothing must listen (a dead host
    in an inventory) is reserved the same way, so another run never starts a server there.
    """
    with _held_lock:
        mine = [p for p in ports if p in _held]
        for port in mine:
            if _bindable(port, host) and (not udp or _bindable(port, host, udp=True)):
                return port
        PORT_LOCKS.mkdir(parents=True, exist_ok=True)
        for port in ports:
            if port in _held:
                continue
            f = (PORT_LOCKS / f"{port}.lock").open("w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another test process holds it
                f.close()
                continue
            if _bindable(port, host) and (not udp or _bindable(port, host, udp=True)):
                _held[port] = f
                return port
            f.close()  # something outside the tests listens there
    raise RuntimeError(f"no free port in {ports} (held by this process: {sorted(_held)})")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing accepts connections on the port and a new server could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        if s.connect_ex((host, port)) == 0:
            return False
    return _bindable(port, host)


def _listening_inodes(port: int, udp: bool = False) -> set[str]:
    """Socket inodes listening on ``port`` (any address) in this network namespace, from /proc/net/{tcp,udp}{,6}.

    TCP: state 0A (LISTEN). UDP: a bound socket with no peer shows state 07 (CLOSE) and remote port 0.
    """
    proto, state = ("udp", "07") if udp else ("tcp", "0A")
    found: set[str] = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == state and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    found.add(cols[9])
    return found


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server may listen from a child it forked)."""
    pids, todo = [pid], [pid]
    while todo:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{todo[0]}/task"):
                with contextlib.suppress(OSError):
                    kids = Path(f"/proc/{todo[0]}/task/{task}/children").read_text().split()
                    pids += [int(k) for k in kids]
                    todo += [int(k) for k in kids]
        todo.pop(0)
    return pids


def owns_port(pid: int, port: int, udp: bool = False) -> bool:
    """The socket listening on ``port`` (TCP, or UDP with ``udp``) belongs to process ``pid`` (or one of its
    children): the server a test reaches there is the one it started, not another test run's that happens to
    answer the same protocol."""
    inodes = _listening_inodes(port, udp)
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{p}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return True
    return False


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
            assert owns_port(proc.pid, port), f"port {port}: the agent answering is not the one started here"
        return agent

    yield start
    for agent in started:
        agent.stop()  # SIGTERM, then SIGKILL after 10 s
