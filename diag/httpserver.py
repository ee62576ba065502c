"""The agent's bounded HTTP server: waitress with a cap on connections, a cap per client and read deadlines.

wsgiref's threading server gave every connection a thread and had no cap: slow clients held thousands of
threads, starved the scheduler and wrote a traceback each (issue 15). waitress reads requests in one event
loop and hands only *complete* requests to a fixed pool of worker threads, so a slow client costs a small
channel object, not a thread. On top of it this module adds what waitress lacks (docs/agent.md, "HTTP"):

- a cap on open connections: at the cap, the connection that has waited longest for its request to arrive
  is dropped to make room (a slow client cannot keep a scrape out), and only when every connection is
  being served is the new one refused;
- a cap per client address (``per_client``): beyond it a new connection is closed at once;
- a deadline for a request to arrive in full (``read_timeout``, headers and body, counted from its first
  byte, however slowly it trickles in) and one for an idle keep-alive connection (``idle_timeout``);
- counters of refused and timed-out connections for ``/metrics`` and one log line per minute at most.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger(__name__)

# waitress logs each client that hangs up mid-response (info), every queued task (warning) and socket
# errors with a traceback: under a flood that is a log line per connection. The counters replace them.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)
logging.getLogger("waitress").setLevel(logging.ERROR)


@dataclass(slots=True)
class Limits:
    """``agent.http`` in the inventory (docs/agent.md)."""

    threads: int = 16  # workers at most (8 started; more while event streams hold them: 12 streams at most)
    connection_limit: int = 256  # open connections at most
    per_client: int = 32  # open connections from one address at most
    read_timeout: float = 10.0  # a request (headers and body) must arrive within this from its first byte
    idle_timeout: float = 30.0  # a connection waiting for its next request is closed after this
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 64 << 20  # waitress' own 413; the routes have smaller limits of their own
    trusted_proxy: str | None = None  # address of a TLS proxy whose X-Forwarded-* headers are believed
    log_interval: float = 60.0  # at most one log line per this many seconds about refused/timed-out clients


class Stats:
    """Refused and timed-out connections: counters for /metrics and a rate-limited summary line in the log."""

    def __init__(self, log_interval: float = 60.0) -> None:
        self.refused: Counter[str] = Counter()
        self.timed_out: Counter[str] = Counter()
        self.open = 0
        self.log_interval = log_interval
        self._unlogged: Counter[str] = Counter()
        self._clients: set[str] = set()
        self._next_log = 0.0
        self._lock = threading.Lock()

    def count(self, kind: str, reason: str, client: str) -> None:
        with self._lock:
            (self.refused if kind == "refused" else self.timed_out)[reason] += 1
            self._unlogged[f"{kind} ({reason})"] += 1
            if len(self._clients) < 1000:
                self._clients.add(client)
        self.flush()

    def flush(self, now: float | None = None) -> None:
        """Log what was counted since the last line, if there is any and the last line is old enough."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._unlogged or now < self._next_log:
                return
            parts = ", ".join(f"{n} {what}" for what, n in sorted(self._unlogged.items()))
            clients = sorted(self._clients)
            self._unlogged.clear()
            self._clients.clear()
            self._next_log = now + self.log_interval
        shown = ", ".join(clients[:5]) + (f" and {len(clients) - 5} more" if len(clients) > 5 else "")
        log.warning(
            "http: connections closed without a request served: %s; from %s (next summary in %.0f s at the earliest)",
            parts,
            shown,
            self.log_interval,
        )

    def render(self) -> bytes:
        """The counters in Prometheus text format (for ``Exposition.extra``)."""
        lines = [
            "# HELP diag_http_connections_refused_total Connections the agent's HTTP server closed on arrival.",
            "# TYPE diag_http_connections_refused_total counter",
        ]
        for reason in ("client_limit", "server_limit"):
            lines.append(f'diag_http_connections_refused_total{{reason="{reason}"}} {self.refused[reason]}')
        lines += [
            "# HELP diag_http_connections_timed_out_total Connections closed because no complete request came in time.",
            "# TYPE diag_http_connections_timed_out_total counter",
        ]
        for reason in ("request", "idle", "evicted"):
            lines.append(f'diag_http_connections_timed_out_total{{phase="{reason}"}} {self.timed_out[reason]}')
        lines += [
            "# HELP diag_http_connections_open Connections open to the agent's HTTP server.",
            "# TYPE diag_http_connections_open gauge",
            f"diag_http_connections_open {self.open}",
        ]
        return ("\n".join(lines) + "\n").encode()


class _Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress' request parser, closing the connection after a request framed by both Content-Length and
    Transfer-Encoding: chunked (RFC 9112 section 6.3: the server MUST close it; a proxy in front that framed the body
    by Content-Length would otherwise have its next bytes read here as a request of their own, request smuggling).
    waitress 3.0.2 (the newest release on PyPI when written) kept the connection and served such a pipelined second
    request; upstream fixed it in Pylons/waitress#475 after that release. Drop this class once one is required."""

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            # waitress closes after the answer when the request says "Connection: close" (its parser's own
            # connection_close flag is not read by the channel), and drops what was pipelined behind it
            self.connection_close = True
            self.headers["CONNECTION"] = "close"


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A waitress channel that remembers when the request it is reading began."""

    parser_class = _Parser
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.monotonic()
        done: bool = super().received(data)
        if self.request is None:  # complete (handed to a worker) or nothing partial left
            self.request_started = None
        return done

    def waiting(self) -> bool:
        """Not being served: no request handed to a worker, nothing left to send."""
        return not self.requests and not self.total_outbufs_len and not self.will_close


class _Server(TcpWSGIServer):  # type: ignore[misc]
    channel_class = _Channel

    def __init__(self, app: Any, limits: Limits, stats: Stats, **kw: Any) -> None:
        self.next_cleanup = 0.0
        self.limits = limits
        self.stats = stats
        super().__init__(app, **kw)

    def readable(self) -> bool:
        # waitress' own limit would stop accepting (new clients then wait in the backlog behind slow ones);
        # this server accepts and decides per connection in handle_accept. Its maintenance, which waitress
        # runs from here, runs between polls instead (BoundedServer._loop): readable() is called while the
        # poll set is being built, and a descriptor closed then, reused by an accept in the same round,
        # would get the closed one's events (a fresh connection was closed as if it had hung up).
        return bool(self.accepting)

    def maintain_if_due(self) -> None:
        now = time.time()
        if now >= self.next_cleanup:
            self.next_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)

    def _close(self, ch: _Channel, reason: str) -> None:
        self.stats.count("timed_out", reason, str(ch.addr[0]) if ch.addr else "?")
        ch.handle_close()

    def maintenance(self, now: float) -> None:
        mono = time.monotonic()
        for ch in list(self.active_channels.values()):
            if not isinstance(ch, _Channel) or ch.requests:
                continue  # a worker is on it
            if not ch.waiting():  # an answer the client does not read: as idle as a silent one
                if ch.total_outbufs_len and now - ch.last_activity > self.limits.idle_timeout:
                    self._close(ch, "idle")
                continue
            if ch.request_started is not None:
                if mono - ch.request_started > self.limits.read_timeout:
                    self._close(ch, "request")
            elif now - ch.last_activity > self.limits.idle_timeout:
                self._close(ch, "idle")
        self.stats.open = len(self.active_channels)
        self.stats.flush()

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
        except OSError as e:  # EMFILE, or a peer gone before accept: counted, never a traceback per client
            self.stats.count("refused", "server_limit", f"accept: {e.strerror}")
            return
        if pair is None:
            return
        conn, addr = pair
        client = str(addr[0])
        channels = [c for c in self.active_channels.values() if isinstance(c, _Channel)]
        if sum(1 for c in channels if c.addr and c.addr[0] == client) >= self.limits.per_client:
            _drop(conn)
            self.stats.count("refused", "client_limit", client)
            return
        victim = None
        if len(channels) >= self.limits.connection_limit:
            idle = [c for c in channels if c.waiting()]
            if not idle:
                _drop(conn)
                self.stats.count("refused", "server_limit", client)
                return
            # make room: the one that has waited longest for a request (slow clients first, then idle ones)
            victim = min(idle, key=lambda c: (c.request_started is None, c.request_started or c.last_activity))
        try:
            self.set_socket_options(conn)
        except OSError:  # the client is already gone
            conn.close()
            return
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
        if victim is not None:  # closed after the accept, so that its descriptor is not the new one's
            self._close(victim, "evicted")
        self.stats.open = len(self.active_channels)


def _drop(conn: socket.socket) -> None:
    """Close at once with a reset, so the refused client's socket does not linger in TIME_WAIT here."""
    with contextlib.suppress(OSError):  # already reset by the peer: closing is all that is left
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()


def raise_fd_limit(needed: int) -> None:
    """Lift the soft limit on open files toward the hard one, so the connection cap is what bounds sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


#: workers started at once; more (up to ``Limits.threads``) only when every one is busy (open event streams)
BASE_WORKERS = 8


class _GrowingDispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress' worker pool, started at :data:`BASE_WORKERS` and grown by one whenever a request finds every worker
    busy, up to ``most``. Why: a worker costs ~0.17 MiB RSS (16 against 8 measured +1.3-1.5 MiB on an idle agent),
    and only open event streams (console pages, followed checks) keep workers busy for long; an agent without
    screens keeps its old footprint (the slowloris budget of issue 15), one with ten screens gets its workers."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    def add_task(self, task: Any) -> None:
        super().add_task(task)
        with self.lock:  # decided and done under the pool's lock: tasks come from the loop and from workers
            running = len(self.threads) - self.stop_count
            if len(self.queue) > running - self.active_count and running < self.most:
                n = 0
                while n in self.threads:
                    n += 1
                self.threads.add(n)
                self.active_count += 1  # as set_thread_count counts a new thread until it first waits
                self.start_new_thread(self.handler_thread, n)


class BoundedServer:
    """Serves a WSGI app on HOST:PORT from a background thread until ``stop``."""

    def __init__(self, app: Any, host: str, port: int, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.stats = Stats(self.limits.log_interval)
        lim = self.limits
        raise_fd_limit(lim.connection_limit + 256)
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        proxy: dict[str, Any] = {}
        if lim.trusted_proxy:
            proxy = {
                "trusted_proxy": lim.trusted_proxy,
                "trusted_proxy_headers": {"x-forwarded-proto", "x-forwarded-for"},
                "clear_untrusted_proxy_headers": True,
            }
        self.adj = Adjustments(
            listen=listen,
            threads=lim.threads,
            connection_limit=lim.connection_limit + 64,  # never reached: handle_accept enforces the cap
            cleanup_interval=1,
            channel_timeout=lim.idle_timeout,
            asyncore_use_poll=True,  # select() cannot watch descriptors above 1023
            asyncore_loop_timeout=1,
            log_socket_errors=False,
            max_request_header_size=lim.max_header_bytes,
            max_request_body_size=lim.max_body_bytes,
            ident="diag",
            expose_tracebacks=False,
            **proxy,
        )
        self._map: dict[int, Any] = {}
        self.dispatcher = _GrowingDispatcher(lim.threads)
        self.dispatcher.set_thread_count(min(BASE_WORKERS, lim.threads))
        self.server = _Server(
            app,
            self.limits,
            self.stats,
            map=self._map,
            dispatcher=self.dispatcher,
            adj=self.adj,
            sockinfo=self.adj.listen[0],
        )
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="httpd", daemon=True)

    @property
    def server_address(self) -> tuple[str, int]:
        return str(self.server.effective_host), int(self.server.effective_port)

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            wasyncore.loop(timeout=1, map=self._map, use_poll=True, count=1)
            self.server.maintain_if_due()  # between polls: see _Server.readable

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Close the listening socket and every connection (also when the server was never started)."""
        self._stopping.set()
        self.server.accepting = False
        self.server.trigger.pull_trigger()
        if self.thread.is_alive():
            self.thread.join(5)
        for ch in list(self._map.values()):
            ch.close()
        self.dispatcher.shutdown(cancel_pending=True, timeout=1)
