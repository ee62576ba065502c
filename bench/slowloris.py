"""Benchmark: a slowloris flood against ``diag agent``'s port, the bounded server against the old one.

A flood of N slow connections (opened at RATE per second from SOURCES loopback addresses 127.0.0.2...,
each sending a request line and then one header line every TRICKLE seconds, never finishing its headers)
runs against an agent, while a scraper fetches ``/metrics`` every 0.2 s from 127.0.0.1 and the agent's RSS
and thread count are sampled. Two agents, one after the other, same inventory, same flood:

- ``bounded``: ``diag agent`` as shipped (waitress, connection cap, per-client cap, read deadline);
- ``wsgiref``: the same agent object, served by the standard library's threading wsgiref server (one
  thread per connection, no cap: the server the agent had before issue 15).

Also prints what importing waitress costs a process that already holds the agent's imports.

Usage: .venv/bin/python bench/slowloris.py [--connections 2000] [--rate 100] [--duration 40]
Prints the figures and ratios; asserts nothing. The integration test (tests/integration/test_agent_slowloris.py)
uses :class:`Flood`, :class:`Scraper` and :class:`Sampler` from here.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Flood:
    """Slow clients: connect, send a request line, then a header line every ``trickle`` s, never a blank line."""

    port: int
    connections: int = 2000
    rate: float = 100.0  # new connections per second
    sources: int = 40  # 127.0.0.2 ... 127.0.0.(sources+1)
    trickle: float = 2.0
    duration: float = 30.0
    opened: int = 0
    connect_failed: int = 0
    closed_by_server: int = 0
    max_open: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < self.connections + 512:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, self.connections + 512), hard))
        live: list[socket.socket] = []
        t0 = time.monotonic()
        next_trickle = t0 + self.trickle
        try:
            while time.monotonic() - t0 < self.duration and not self._stop.is_set():
                due = min(self.connections, int((time.monotonic() - t0) * self.rate) + 1)
                while self.opened + self.connect_failed < due:
                    i = self.opened + self.connect_failed
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        s.bind((f"127.0.0.{2 + i % self.sources}", 0))
                        s.settimeout(2)
                        s.connect(("127.0.0.1", self.port))
                        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n")
                        s.setblocking(False)
                        live.append(s)
                        self.opened += 1
                    except OSError:
                        s.close()
                        self.connect_failed += 1
                if time.monotonic() >= next_trickle:
                    next_trickle += self.trickle
                    live = self._trickle(live)
                self.max_open = max(self.max_open, len(live))
                time.sleep(0.01)
        finally:
            for s in live:
                s.close()

    def _trickle(self, live: list[socket.socket]) -> list[socket.socket]:
        keep = []
        for s in live:
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":  # the server closed it
                    raise ConnectionResetError
            except BlockingIOError:
                pass  # nothing to read: still open
            except OSError:
                self.closed_by_server += 1
                s.close()
                continue
            try:
                s.send(b"X-Slow: 1\r\n")
                keep.append(s)
            except OSError:
                self.closed_by_server += 1
                s.close()
        return keep

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Scraper:
    """Fetch ``/metrics`` every ``every`` seconds on a new connection from 127.0.0.1; keep each latency."""

    port: int
    every: float = 0.2
    timeout: float = 10.0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    last_body: bytes = b""
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200:
                    self.last_body = body
                else:
                    self.failures += 1
            except OSError:
                self.failures += 1
            self.latencies.append(time.monotonic() - t)
            self._stop.wait(max(0.0, self.every - (time.monotonic() - t)))

    def stop(self) -> None:
        self._stop.set()

    def p(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


@dataclass
class Sampler:
    """VmRSS (MiB) and thread count of a process, every ``every`` seconds."""

    pid: int
    every: float = 0.5
    rss: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> tuple[float, int]:
        rss, threads = 0.0, 0
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        return rss, threads

    def run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                r, t = self.sample()
                self.rss.append(r)
                self.threads.append(t)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()


def run_all(*parts: Flood | Scraper | Sampler, until: Flood) -> None:
    threads = [threading.Thread(target=p.run, daemon=True) for p in parts]
    for t in threads:
        t.start()
    threads[list(parts).index(until)].join()
    for p in parts:
        p.stop()
    for t in threads:
        t.join(15)


def metric(body: bytes, name: str) -> float:
    """The sum of a metric's samples in an exposition (0 when absent)."""
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


_WSGIREF_AGENT = """
import sys, threading, time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from diag.agent import daemon as agent
a = agent.load(sys.argv[1], "127.0.0.1:" + sys.argv[2], sys.argv[3])
a.server.stop()  # the bounded server (never started) gives the port to what the agent had before issue 15
class S(ThreadingMixIn, WSGIServer):
    daemon_threads = True
class H(WSGIRequestHandler):
    timeout = 30
    def log_message(self, *a): pass
httpd = make_server("127.0.0.1", int(sys.argv[2]), a.app, server_class=S, handler_class=H)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
a.scheduler.start()
while True:
    time.sleep(1)
"""


def start_agent(kind: str, inv: Path, port: int, data: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        if kind == "bounded":
            cmd = [sys.executable, "-m", "diag.cli", "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}",
                   "--data", str(data)]  # fmt: skip
        else:
            cmd = [sys.executable, "-c", _WSGIREF_AGENT, str(inv), str(port), str(data)]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=ROOT)


def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(150):
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the agent did not come up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def import_cost() -> tuple[float, float]:
    """VmRSS (MiB) of a process holding the agent's imports, before and after importing waitress."""
    code = (
        "import gc\n"
        "def rss():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) / 1024\n"
        "import diag.agent.daemon, diag.wsgi, diag.exporters.prometheus, wsgiref.simple_server, socketserver\n"
        "gc.collect(); a = rss()\n"
        "import diag.httpserver\n"
        "gc.collect(); print(a, rss())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    before, after = (float(x) for x in out.split())
    return before, after


def one(kind: str, args: argparse.Namespace, base: Path) -> dict[str, float]:
    inv = base / "inventory.yaml"
    port = free_port()
    data = base / f"data-{kind}"
    log = base / f"{kind}.log"
    proc = start_agent(kind, inv, port, data, log)
    try:
        wait_up(port, proc)
        time.sleep(3)
        sampler = Sampler(proc.pid)
        before, _ = sampler.sample()
        flood = Flood(port, args.connections, args.rate, duration=args.duration)
        scraper = Scraper(port)
        t0 = time.monotonic()
        run_all(flood, scraper, sampler, until=flood)
        flood_s = time.monotonic() - t0
        time.sleep(args.settle)
        after, threads_after = sampler.sample()
        return {
            "flood_s": flood_s,
            "rss_before": before,
            "rss_max": max(sampler.rss),
            "rss_after": after,
            "threads_max": max(sampler.threads),
            "threads_after": threads_after,
            "p50": scraper.p(0.5),
            "p95": scraper.p(0.95),
            "max": max(scraper.latencies),
            "scrapes": len(scraper.latencies),
            "scrape_failures": scraper.failures,
            "opened": flood.opened,
            "max_open_client_side": flood.max_open,
            "log_lines": len(log.read_text().splitlines()),
            "tracebacks_in_log": log.read_text().count("Traceback"),
        }
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=40.0)
    ap.add_argument("--settle", type=float, default=10.0)
    args = ap.parse_args()
    before, after = import_cost()
    print(f"importing waitress (+ diag.httpserver) into a process with the agent's imports: "
          f"{before:.1f} -> {after:.1f} MiB (+{after - before:.1f})")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="diag-slowloris-") as tmp:
        base = Path(tmp)
        (base / "inventory.yaml").write_text("hosts: {}\nagent:\n  probes: {load: {interval: 2}}\n")
        res = {k: one(k, args, base) for k in ("bounded", "wsgiref")}
    print(f"\n{args.connections} slow connections at {args.rate:.0f}/s over {args.duration:.0f} s, "
          f"/metrics every 0.2 s; settle {args.settle:.0f} s")  # fmt: skip
    print(f"{'':28} {'bounded':>12} {'wsgiref':>12} {'ratio':>8}")
    for k in res["bounded"]:
        b, w = res["bounded"][k], res["wsgiref"][k]
        ratio = f"{b / w:.2f}x" if w else "-"
        print(f"{k:28} {b:12.3f} {w:12.3f} {ratio:>8}")
    print(f"pid {os.getpid()} done")


if __name__ == "__main__":
    main()
