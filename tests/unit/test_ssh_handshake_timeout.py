"""How a failed SSH handshake is named, from paramiko's own failures against loopback sockets: a server that never
sends its banner is a timeout (paramiko reports it as an SSHException raised from a socket.timeout), one that
closes the connection is an error."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko

from diag.remote.ssh import _reason, _timed_out


@contextmanager
def _server(close_at_once: bool) -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))  # a port of the kernel's choosing
    srv.listen(1)
    held: list[socket.socket] = []

    def accept() -> None:
        conn, _ = srv.accept()
        if close_at_once:
            conn.close()
        else:
            held.append(conn)  # silent: accepted, never a byte

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        t.join(5)
        for c in held:
            c.close()
        srv.close()


def _failure(port: int) -> BaseException | None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = paramiko.Transport(sock)
    t.banner_timeout = 0.3
    done = threading.Event()
    try:
        t.start_client(event=done)
        assert done.wait(30), "paramiko never finished the handshake"
        assert not t.is_active()
        return t.get_exception()
    finally:
        t.close()


def test_a_silent_server_is_a_timeout_whatever_the_message() -> None:
    with _server(close_at_once=False) as port:
        exc = _failure(port)
    assert exc is not None and "timed out" not in str(exc)  # the message alone does not say it
    assert _timed_out(exc, _reason(exc))


def test_a_server_that_closes_is_an_error() -> None:
    with _server(close_at_once=True) as port:
        exc = _failure(port)
    assert exc is not None and not _timed_out(exc, _reason(exc))
