"""The bounded HTTP server on loopback: per-client cap, read deadline, idle timeout, room made at the cap,
counters for /metrics and one log line per interval (the slowloris integration test drives a real agent)."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from diag.httpserver import BoundedServer, Limits, Stats
from diag.wsgi import App, json_response
from tests.conftest import wait_for


@contextmanager
def _server(read_timeout: float) -> Iterator[BoundedServer]:
    app = App()
    app.route("/metrics", lambda env: json_response({"ok": 1}))
    limits = Limits(per_client=4, connection_limit=8, read_timeout=read_timeout, idle_timeout=2, log_interval=60)
    s = BoundedServer(app, "127.0.0.1", 0, limits)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def server() -> Iterator[BoundedServer]:
    with _server(read_timeout=1) as s:
        yield s


@pytest.fixture
def patient() -> Iterator[BoundedServer]:
    with _server(read_timeout=60) as s:
        yield s


def _slow(port: int, source: str) -> socket.socket:
    c = socket.socket()
    c.settimeout(5)
    c.bind((source, 0))
    with contextlib.suppress(ConnectionResetError):  # refused at once: _closed() says so
        c.connect(("127.0.0.1", port))
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
    return c


def _get(port: int) -> bytes:
    return bytes(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read())


def _closed(c: socket.socket) -> bool:
    """Whether the server closed it (waits up to 20 s for that)."""
    c.settimeout(20)
    try:
        return c.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset, or never connected
        return True


def test_one_client_gets_per_client_connections_and_others_are_served(patient: BoundedServer) -> None:
    server = patient
    socks = []
    for _ in range(10):
        socks.append(_slow(server.port, "127.0.0.2"))
        wait_for(lambda: server.stats.open + server.stats.refused["client_limit"] == len(socks), what="accepted")
    try:
        wait_for(lambda: server.stats.refused["client_limit"] == 6, timeout=10, what="6 refusals")
        assert _get(server.port) == b'{"ok": 1}'  # another address is served at once
        assert sum(_closed(c) for c in socks[4:]) == 6
    finally:
        for c in socks:
            c.close()


def _trickle_until_closed(c: socket.socket, every: float = 0.2, limit: float = 20.0) -> bool:
    """Send a header line every ``every`` s until the server closes the connection (True) or ``limit`` s pass.

    Three lines sent at once and then a wait raced the 1 s deadline on a loaded machine: a send that came after
    the close failed with a broken pipe. Trickling until the close also tests more: a deadline that each byte
    extended would never come."""
    deadline = time.monotonic() + limit
    c.settimeout(every)
    while time.monotonic() < deadline:
        try:
            c.sendall(b"X-Slow: 1\r\n")
            if c.recv(1) == b"":
                return True
        except TimeoutError:  # still open: trickle on
            continue
        except OSError:  # reset or broken pipe: closed
            return True
    return False


def test_a_request_that_never_completes_is_closed_at_the_read_deadline(server: BoundedServer) -> None:
    c = _slow(server.port, "127.0.0.3")
    try:
        assert _trickle_until_closed(c)  # trickling does not extend the deadline
        assert server.stats.timed_out["request"] == 1
    finally:
        c.close()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.4", 0))
    try:
        assert _closed(idle)
        # counted as idle: closed by the deadline, not by a stale poll event of the closed connection's descriptor
        wait_for(lambda: server.stats.timed_out["idle"] == 1, timeout=10, what="the idle close counted")
        assert dict(server.stats.refused) == {}
    finally:
        idle.close()


def test_at_the_cap_the_longest_waiting_connection_makes_room(patient: BoundedServer) -> None:
    server = patient
    socks = [_slow(server.port, f"127.0.1.{i}") for i in range(1, 9)]  # 8 = the cap, within per-client
    try:
        wait_for(lambda: server.stats.open == 8, timeout=10, what="8 open")
        assert _get(server.port) == b'{"ok": 1}'
        assert server.stats.timed_out["evicted"] >= 1 and _closed(socks[0])
        text = server.stats.render().decode()
        assert 'diag_http_connections_timed_out_total{phase="evicted"}' in text
        assert "# TYPE diag_http_connections_refused_total counter" in text
    finally:
        for c in socks:
            c.close()


def test_refusals_are_logged_as_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    stats = Stats(log_interval=60)
    with caplog.at_level(logging.WARNING, logger="diag.httpserver"):
        for i in range(500):
            stats.count("refused", "client_limit", f"10.0.0.{i % 7}")
            stats.count("timed_out", "request", "10.0.0.9")
        stats.flush()
    assert len(caplog.records) == 1
    stats.flush(now=10**9)  # a minute (and more) later: one summary of what came since
    assert len(caplog.records) == 2
    assert "499 refused (client_limit)" in caplog.records[1].getMessage()
    assert stats.refused["client_limit"] == 500 and stats.timed_out["request"] == 500


def test_workers_grow_past_eight_only_while_requests_hold_them() -> None:
    """8 workers at start; requests that hold theirs (event streams) make the pool grow, up to ``threads``,
    and /metrics is still answered by a worker left free."""
    import threading

    release = threading.Event()

    def held(environ: dict[str, object], start_response: object) -> Iterator[bytes]:
        if environ["PATH_INFO"] == "/metrics":
            start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
            return iter([b"ok"])
        start_response("200 OK", [("Content-Type", "text/event-stream")])  # type: ignore[operator]

        def stream() -> Iterator[bytes]:
            yield b"retry: 3000\n\n"
            release.wait(30)

        return stream()

    s = BoundedServer(held, "127.0.0.1", 0, Limits(threads=14, per_client=64, read_timeout=30, idle_timeout=30))
    s.start()
    socks = []
    try:
        assert len(s.dispatcher.threads) == 8
        for _ in range(12):  # twelve streams, each holding a worker
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.recv(200).startswith(b"HTTP/1.1 200")
            socks.append(c)
        assert len(s.dispatcher.threads) >= 12
        assert _get(s.port) == b"ok"  # a worker is left (the pool grew to at most 14)
        assert len(s.dispatcher.threads) <= 14
    finally:
        release.set()
        for c in socks:
            c.close()
        s.stop()
