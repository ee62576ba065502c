"""Reachability probes: ICMP echo, TCP ports, traceroute (ICMP/UDP/TCP), DNS, HTTP(S) and service handshakes.

Each check measures into a small dataclass and turns it into a :class:`diag.model.Result` (metrics plus findings with
evidence). ICMP uses plain raw sockets and the encoder in :mod:`diag.network.reach.packets` (no scapy: see
docs/reachability.md); when raw sockets are not allowed it says so and falls back to an unprivileged ping socket,
then to a TCP connect.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import errno
import http.client
import itertools
import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from diag.errors import DiagError
from diag.model import Evidence, Result
from diag.network.reach.packets import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_TIME_EXCEEDED,
    UNREACH_CODES,
    IcmpMessage,
    PacketError,
    encode_echo_request,
    parse_icmp,
    parse_mysql_greeting,
)

PingMethod = Literal["raw", "dgram", "tcp"]
TraceMethod = Literal["icmp", "udp", "tcp"]
PortState = Literal["open", "refused", "timeout", "unreachable", "error"]

#: First UDP destination port of a UDP traceroute, as in traceroute(8).
UDP_BASE_PORT = 33434


class ReachError(DiagError):
    """A check could not run at all (bad target, no permission for what it needs)."""


def resolve(target: str) -> str:
    """The IPv4 address of ``target`` (an address or a name), or a one-line error naming the target."""
    try:
        return socket.gethostbyname(target)
    except (socket.gaierror, UnicodeError) as e:
        raise ReachError(f"{target}: cannot resolve: {e}") from None


def _ident() -> int:
    # The pid tells our echo replies and quoted probes from another ping's running on the same host.
    return os.getpid() & 0xFFFF


# ---------------------------------------------------------------------------------------------------------------
# ICMP echo


@dataclass(slots=True)
class PingStats:
    """N echo probes to one target: how they were sent and the RTT of each (None = lost)."""

    target: str
    address: str
    method: PingMethod
    rtts: list[float | None] = field(default_factory=list)
    #: Why a weaker method was used ("raw sockets not allowed ..."); empty with raw sockets.
    note: str = ""
    tcp_port: int = 0
    #: Distinct reasons probes were lost when someone gave one ("10.0.0.2: network unreachable").
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.rtts)

    @property
    def received(self) -> list[float]:
        return [r for r in self.rtts if r is not None]

    @property
    def loss_ratio(self) -> float:
        return 1.0 - len(self.received) / self.sent if self.sent else 1.0

    def rtt_stats(self) -> dict[str, float]:
        """min/avg/max and jitter: the mean absolute difference of consecutive RTTs (RFC 3550's D, unsmoothed)."""
        got = self.received
        if not got:
            return {}
        diffs = [abs(b - a) for a, b in itertools.pairwise(got)]
        return {
            "min": min(got),
            "avg": sum(got) / len(got),
            "max": max(got),
            "jitter": sum(diffs) / len(diffs) if diffs else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "address": self.address,
            "method": self.method,
            "note": self.note,
            "sent": self.sent,
            "received": len(self.received),
            "loss_ratio": self.loss_ratio,
            "rtt_seconds": self.rtt_stats(),
            "errors": self.errors,
            "rtts": self.rtts,
        }


def open_icmp_socket() -> tuple[socket.socket | None, PingMethod, str]:
    """A raw ICMP socket, else an unprivileged ping socket, else None; with a note saying why it fell back."""
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), "raw", ""
    except PermissionError:
        note = "raw sockets not allowed (not root and no CAP_NET_RAW)"
    try:
        return (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
            "dgram",
            note + "; used a ping socket",
        )
    except PermissionError:
        try:
            with open("/proc/sys/net/ipv4/ping_group_range") as f:
                rng = " ".join(f.read().split())
        except OSError:
            rng = "?"
        note += f"; unprivileged ICMP not allowed either (net.ipv4.ping_group_range = {rng}, gid {os.getgid()})"
    return None, "tcp", note


def _recv_icmp(sock: socket.socket, deadline: float, raw: bool) -> Iterator[tuple[IcmpMessage, float]]:
    """ICMP messages as they arrive until the deadline, each with its arrival time; undecodable ones are skipped."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return
        data, (src, _) = sock.recvfrom(65535)
        now = time.monotonic()
        try:
            yield parse_icmp(data, src, with_ip_header=raw), now
        except PacketError:
            continue  # someone else's malformed packet on a shared raw socket: not ours to judge


def _echo_once(
    sock: socket.socket, method: PingMethod, address: str, ident: int, seq: int, timeout: float
) -> tuple[float | None, str]:
    """(RTT or None, why it was lost when someone said: "10.0.0.2: network unreachable", a local errno)."""
    payload = b"diag-reach" + seq.to_bytes(2, "big")
    sent = time.monotonic()
    try:
        sock.sendto(encode_echo_request(ident, seq, payload), (address, 0))
        for msg, at in _recv_icmp(sock, sent + timeout, method == "raw"):
            # A ping socket rewrites the identifier to its port and only delivers its own replies: match seq only.
            if (
                msg.type == ICMP_ECHO_REPLY
                and msg.src == address
                and msg.seq == seq
                and (method != "raw" or msg.ident == ident)
            ):
                return at - sent, ""
            q = msg.quoted
            if (
                msg.type == ICMP_DEST_UNREACH
                and q is not None
                and q.proto == socket.IPPROTO_ICMP
                and q.dst == address
                and q.sport == ident
                and q.dport == seq
            ):
                return None, f"{msg.src}: {UNREACH_CODES.get(msg.code, f'unreachable code {msg.code}')}"
    except OSError as e:
        # No local route (ENETUNREACH at send), or a ping socket reporting the ICMP error it got as an errno.
        return None, f"{os.strerror(e.errno) if e.errno else e}"
    return None, ""


def _tcp_once(address: str, port: int, timeout: float) -> float | None:
    st, secs, _ = tcp_connect(address, port, timeout)
    # A refusal is an answer from the host (its RST), so it proves reachability as well as an accept.
    return secs if st in ("open", "refused") else None


def ping(
    target: str,
    count: int = 5,
    interval: float = 0.2,
    timeout: float = 1.0,
    tcp_port: int = 80,
    force: PingMethod | None = None,
) -> PingStats:
    """Send ``count`` echo probes; fall back to a ping socket or TCP connects to ``tcp_port`` when raw is denied."""
    address = resolve(target)
    sock: socket.socket | None
    method: PingMethod
    if force == "tcp":
        sock, method, note = None, "tcp", "TCP connect requested"
    else:
        sock, method, note = open_icmp_socket()
        if force == "dgram" and sock is not None and method == "raw":
            sock.close()
            try:
                sock, method, note = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), "dgram", ""
            except PermissionError:
                raise ReachError(
                    f"{target}: ping socket not allowed (gid {os.getgid()} outside net.ipv4.ping_group_range)"
                ) from None
    if method == "tcp" and force != "tcp":
        note += f"; fell back to TCP connect to port {tcp_port}"
    stats = PingStats(target, address, method, note=note.lstrip("; "), tcp_port=tcp_port if method == "tcp" else 0)
    ident = _ident()
    try:
        for seq in range(count):
            start = time.monotonic()
            if sock is None:
                rtt, why = _tcp_once(address, tcp_port, timeout), ""
            else:
                rtt, why = _echo_once(sock, method, address, ident, seq, timeout)
            stats.rtts.append(rtt)
            if why and why not in stats.errors:
                stats.errors.append(why)
            if seq + 1 < count:
                time.sleep(max(0.0, interval - (time.monotonic() - start)))
    finally:
        if sock is not None:
            sock.close()
    return stats


def ping_result(stats: PingStats, loss_threshold: float = 0.1, rtt_threshold: float = 0.5) -> Result:
    """Metrics and findings of a ping: unreachable (critical), loss or average RTT above the thresholds (warning)."""
    r = Result()
    t = stats.target
    r.metric("diag_reach_icmp_loss_ratio", "Share of echo probes without a reply.", labels=("target",)).add(
        stats.loss_ratio, t
    )
    rtt = r.metric(
        "diag_reach_icmp_rtt_seconds",
        "Echo round-trip time; jitter = mean |RTT(i) - RTT(i-1)|.",
        labels=("target", "stat"),
    )
    st = stats.rtt_stats()
    for name in ("min", "avg", "max", "jitter"):
        if name in st:
            rtt.add(st[name], t, name)
    up = 1.0 if stats.received else 0.0
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        up, t, "ping"
    )
    ev = Evidence(
        "metric",
        f"ping {t} ({stats.address}) via {stats.method}",
        _ping_text(stats),
        {k: v for k, v in stats.to_dict().items() if k != "rtts"},
    )
    if not stats.received:
        why = f" ({'; '.join(stats.errors)})" if stats.errors else ""
        summary = f"{t} does not answer: {stats.sent} probes lost{why}"
        r.find("reach_unreachable", "critical", summary, t, "target_down", [ev])
    elif stats.loss_ratio > loss_threshold:
        r.find(
            "reach_loss",
            "warning",
            f"{t}: {stats.loss_ratio:.0%} of {stats.sent} probes lost (threshold {loss_threshold:.0%})",
            t,
            "packet_loss",
            [ev],
        )
    if st and st["avg"] > rtt_threshold:
        r.find(
            "reach_rtt",
            "warning",
            f"{t}: average RTT {st['avg'] * 1000:.1f} ms above {rtt_threshold * 1000:.0f} ms",
            t,
            "latency",
            [ev],
        )
    return r


def _ping_text(stats: PingStats) -> str:
    lines = [f"{i}: {'lost' if v is None else f'{v * 1000:.3f} ms'}" for i, v in enumerate(stats.rtts)]
    lines += [f"error: {e}" for e in stats.errors]
    if stats.note:
        lines.append(f"note: {stats.note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# TCP port, DNS


def tcp_connect(address: str, port: int, timeout: float) -> tuple[PortState, float, str]:
    """(state, seconds, error text) of one TCP connect: open, refused (RST), timeout (silence), unreachable (ICMP)."""
    start = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open", time.monotonic() - start, ""
    except ConnectionRefusedError as e:
        return "refused", time.monotonic() - start, str(e)
    except TimeoutError:
        return "timeout", time.monotonic() - start, f"no answer within {timeout:g} s"
    except OSError as e:
        state: PortState = "unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
        return state, time.monotonic() - start, os.strerror(e.errno) if e.errno else str(e)


@dataclass(slots=True)
class PortCheck:
    target: str
    port: int
    state: PortState
    seconds: float
    error: str = ""


def port_check(target: str, port: int, timeout: float = 3.0) -> PortCheck:
    state, secs, err = tcp_connect(resolve(target), port, timeout)
    return PortCheck(target, port, state, secs, err)


def port_result(pc: PortCheck) -> Result:
    """Connect time when open; a critical finding when refused, filtered (timeout) or unreachable."""
    r = Result()
    if pc.state == "open":
        r.metric("diag_reach_tcp_connect_seconds", "Time to complete a TCP connect.", labels=("target", "port")).add(
            pc.seconds, pc.target, str(pc.port)
        )
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        1.0 if pc.state == "open" else 0.0, pc.target, f"tcp:{pc.port}"
    )
    if pc.state != "open":
        why = {
            "refused": "connection refused (the host answers; nothing listens)",
            "timeout": "no answer (filtered or dropped on the path)",
            "unreachable": f"unreachable ({pc.error})",
            "error": pc.error,
        }[pc.state]
        r.find(
            "reach_tcp_port",
            "critical",
            f"{pc.target}:{pc.port}: {why}",
            f"{pc.target}:{pc.port}",
            f"port_{pc.state}",
            [
                Evidence(
                    "metric", f"tcp connect {pc.target}:{pc.port}", f"{pc.state} after {pc.seconds:.3f} s", asdict(pc)
                )
            ],
        )
    return r


@dataclass(slots=True)
class DnsCheck:
    name: str
    seconds: float
    answers: list[str]
    #: "" on success, else nxdomain, nodata (name exists, no record of the type), temporary (server failure or
    #: no server answering), timeout, error.
    failure: str = ""
    error: str = ""
    #: The server asked ("" = the system resolver) and the record type (server queries only).
    server: str = ""
    rdtype: str = ""


_DNS_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="diag-dns")


def dns_check(name: str, timeout: float = 5.0, server: str | None = None, rdtype: str = "A") -> DnsCheck:
    """Resolve ``name`` with the system resolver (getaddrinfo: nsswitch, /etc/hosts, resolv.conf) under a timeout.

    getaddrinfo cannot be interrupted, so it runs on a worker thread; on timeout the thread finishes on its own.
    With ``server`` ("IP" or "IP:PORT") the query goes to that server only, with dnspython, for ``rdtype`` records.
    """
    if server:
        return _dns_query(name, timeout, server, rdtype)
    start = time.monotonic()
    fut = _DNS_POOL.submit(socket.getaddrinfo, name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    try:
        infos = fut.result(timeout)
    except concurrent.futures.TimeoutError:
        return DnsCheck(name, time.monotonic() - start, [], "timeout", f"no answer within {timeout:g} s")
    except UnicodeError as e:  # a label longer than 63 characters, or not encodable with IDNA
        return DnsCheck(name, time.monotonic() - start, [], "error", f"invalid name: {e}")
    except socket.gaierror as e:
        kind = {socket.EAI_NONAME: "nxdomain", socket.EAI_AGAIN: "temporary"}.get(e.errno or 0, "error")
        if getattr(socket, "EAI_NODATA", None) == e.errno:
            kind = "nxdomain"
        return DnsCheck(name, time.monotonic() - start, [], kind, str(e.strerror))
    answers = sorted({str(i[4][0]) for i in infos})
    return DnsCheck(name, time.monotonic() - start, answers)


def _dns_query(name: str, timeout: float, server: str, rdtype: str) -> DnsCheck:
    import dns.exception  # imported here: only server queries need dnspython
    import dns.resolver

    host, _, port = server.partition(":")
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [host]
    res.port = int(port) if port else 53
    start = time.monotonic()

    def fail(kind: str, e: Exception) -> DnsCheck:
        return DnsCheck(name, time.monotonic() - start, [], kind, str(e), server, rdtype)

    try:
        ans = res.resolve(name, rdtype, lifetime=timeout, search=False)
    except dns.resolver.NXDOMAIN as e:
        return fail("nxdomain", e)
    except dns.resolver.NoAnswer as e:
        return fail("nodata", e)
    except dns.resolver.LifetimeTimeout as e:
        return fail("timeout", e)
    except dns.resolver.NoNameservers as e:  # SERVFAIL, REFUSED, or an ICMP error from the server's address
        return fail("temporary", e)
    except (dns.exception.DNSException, ValueError) as e:
        return fail("error", e)
    return DnsCheck(name, time.monotonic() - start, sorted(r.to_text() for r in ans), server=server, rdtype=rdtype)


def dns_result(d: DnsCheck) -> Result:
    r = Result()
    r.metric("diag_reach_dns_seconds", "Time the resolver (system or --server) took.", labels=("target",)).add(
        d.seconds, d.name
    )
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        0.0 if d.failure else 1.0, d.name, "dns"
    )
    if d.failure:
        r.find(
            "reach_dns",
            "critical",
            f"{d.name}: name resolution failed ({d.failure}: {d.error})",
            d.name,
            f"dns_{d.failure}",
            [Evidence("metric", f"getaddrinfo {d.name}", d.error, asdict(d))],
        )
    return r


# ---------------------------------------------------------------------------------------------------------------
# HTTP(S)


@dataclass(slots=True)
class HttpCheck:
    url: str
    status: int = 0
    seconds: float = 0.0
    error: str = ""
    #: Seconds until the server certificate's notAfter (negative when expired); None for plain HTTP.
    cert_expiry_seconds: float | None = None
    cert_subject: str = ""
    #: Why the certificate was not trusted ("" when trusted or not checked).
    verify_error: str = ""


def _cert_info(der: bytes) -> tuple[float, str]:
    from cryptography import x509  # imported here: only HTTPS checks need it

    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    return (not_after - dt.datetime.now(dt.UTC)).total_seconds(), cert.subject.rfc4514_string()


def http_check(url: str, timeout: float = 5.0, verify: bool = True, cafile: str | None = None) -> HttpCheck:
    """GET ``url``: status, time to the response headers, and for HTTPS the certificate's expiry.

    An untrusted certificate is recorded (``verify_error``) and the request is repeated without verification, so
    that a self-signed or expired certificate still yields its status and expiry.
    """
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ReachError(f"{url}: not an http(s) URL")
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    # Credentials in the URL never reach labels or evidence (and are not sent: this check does not log in).
    shown = url if "@" not in u.netloc else url.replace(u.netloc, u.netloc.rpartition("@")[2], 1)
    res = HttpCheck(shown)

    def attempt(ctx: ssl.SSLContext | None) -> None:
        conn: http.client.HTTPConnection
        if ctx is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        start = time.monotonic()
        try:
            conn.connect()
            if isinstance(conn.sock, ssl.SSLSocket):
                der = conn.sock.getpeercert(binary_form=True)
                if der:
                    res.cert_expiry_seconds, res.cert_subject = _cert_info(der)
            conn.request("GET", path, headers={"User-Agent": "diag-reach", "Connection": "close"})
            resp = conn.getresponse()
            res.seconds = time.monotonic() - start
            res.status = resp.status
            resp.read(65536)  # a little of the body; the check is about the answer, not the download
        finally:
            conn.close()

    try:
        if u.scheme == "http":
            attempt(None)
            return res
        ctx = ssl.create_default_context(cafile=cafile)
        if not verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        try:
            attempt(ctx)
        except ssl.SSLCertVerificationError as e:
            res.verify_error = e.verify_message or str(e)
            loose = ssl.create_default_context()
            loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
            attempt(loose)
    except (OSError, http.client.HTTPException) as e:
        res.error = f"{type(e).__name__}: {e}"
    return res


def http_result(h: HttpCheck, cert_warn_days: float = 14.0) -> Result:
    """Status and latency; findings when the request fails, answers 5xx, or the certificate is untrusted or expiring."""
    r = Result()
    up = 1.0 if h.status and h.status < 500 else 0.0
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        up, h.url, "http"
    )
    if h.status:
        r.metric("diag_reach_http_status", "HTTP status code of the answer.", labels=("target",)).add(h.status, h.url)
        r.metric("diag_reach_http_seconds", "Time to the response headers.", labels=("target",)).add(h.seconds, h.url)
    if h.cert_expiry_seconds is not None:
        r.metric(
            "diag_reach_tls_cert_expiry_seconds", "Seconds until the server certificate expires.", labels=("target",)
        ).add(h.cert_expiry_seconds, h.url)
    ev = [Evidence("metric", f"GET {h.url}", h.error or f"status {h.status} in {h.seconds:.3f} s", asdict(h))]
    if h.error:
        r.find("reach_http", "critical", f"{h.url}: request failed: {h.error}", h.url, "http_failed", ev)
    elif h.status >= 500:
        r.find("reach_http", "critical", f"{h.url}: server error {h.status}", h.url, "http_5xx", ev)
    if h.cert_expiry_seconds is not None:
        days = h.cert_expiry_seconds / 86400
        if days < 0:
            r.find(
                "reach_tls_expiry",
                "critical",
                f"{h.url}: TLS certificate expired {-days:.1f} days ago",
                h.url,
                "tls_expired",
                ev,
            )
        elif days < cert_warn_days:
            r.find(
                "reach_tls_expiry",
                "warning",
                f"{h.url}: TLS certificate expires in {days:.1f} days (threshold {cert_warn_days:g})",
                h.url,
                "tls_expiring",
                ev,
            )
    if h.verify_error:
        r.find(
            "reach_tls_untrusted",
            "warning",
            f"{h.url}: certificate not trusted: {h.verify_error}",
            h.url,
            "tls_untrusted",
            ev,
        )
    return r


# ---------------------------------------------------------------------------------------------------------------
# Service handshakes


Service = Literal["smtp", "imap", "ftp", "mysql"]
SERVICE_PORTS: dict[str, int] = {"smtp": 25, "imap": 143, "ftp": 21, "mysql": 3306}


@dataclass(slots=True)
class Handshake:
    target: str
    port: int
    service: str
    ok: bool
    seconds: float
    #: The server's first words (banner line(s) or parsed greeting), capped.
    banner: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class _Lines:
    """CRLF lines from a socket, with a per-read timeout (the servers talk line by line)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def line(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
            if len(self.buf) > 65536:
                raise ConnectionError("line longer than 64 KiB")
        raw, self.buf = self.buf.split(b"\n", 1)
        return raw.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self) -> tuple[int, list[str]]:
        """An SMTP/FTP reply: code and its lines (``250-...`` continues, ``250 ...`` ends)."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        code = lines[-1][:3]
        if not code.isdigit():
            raise ConnectionError(f"not a reply line: {lines[-1][:80]!r}")
        return int(code), lines


def talk_smtp(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    rd = _Lines(sock)
    code, lines = rd.reply()
    if code != 220:
        return False, "\n".join(lines), {"code": code}
    sock.sendall(b"EHLO diag.invalid\r\n")
    ecode, elines = rd.reply()
    sock.sendall(b"QUIT\r\n")
    ext = [ln[4:].split()[0] for ln in elines[1:] if len(ln) > 4]
    return ecode == 250, "\n".join(lines + elines), {"code": code, "ehlo_code": ecode, "extensions": ext}


def talk_ftp(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    rd = _Lines(sock)
    code, lines = rd.reply()
    with contextlib.suppress(OSError):
        sock.sendall(b"QUIT\r\n")
    return code == 220, "\n".join(lines), {"code": code}


def talk_imap(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    rd = _Lines(sock)
    line = rd.line()
    with contextlib.suppress(OSError):
        sock.sendall(b"a1 LOGOUT\r\n")
    status = line.split(" ", 2)[1] if line.startswith("* ") and " " in line[2:] else ""
    return line.startswith(("* OK", "* PREAUTH")), line, {"status": status or line[:20]}


def talk_mysql(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:3], "little"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    try:
        g = parse_mysql_greeting(data)
    except PacketError as e:
        return False, data[:80].hex(), {"parse_error": str(e)}
    if g.error_code:
        return False, f"ERROR {g.error_code}: {g.error_message}", asdict(g)
    return True, f"protocol {g.protocol}, server {g.server_version}", asdict(g)


TALKERS: dict[str, Callable[[socket.socket], tuple[bool, str, dict[str, Any]]]] = {
    "smtp": talk_smtp,
    "imap": talk_imap,
    "ftp": talk_ftp,
    "mysql": talk_mysql,
}


def service_check(target: str, service: str, port: int | None = None, timeout: float = 5.0) -> Handshake:
    """Connect and run the first steps of ``service``'s protocol (greeting; EHLO for SMTP), then leave politely."""
    if service not in TALKERS:
        raise ReachError(f"{service}: unknown service (known: {', '.join(sorted(TALKERS))})")
    port = port or SERVICE_PORTS[service]
    address = resolve(target)
    start = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            ok, banner, detail = TALKERS[service](sock)
    except (OSError, ConnectionError) as e:
        err = "timeout" if isinstance(e, TimeoutError) else (os.strerror(e.errno) if e.errno else str(e))
        return Handshake(target, port, service, False, time.monotonic() - start, error=err)
    return Handshake(target, port, service, ok, time.monotonic() - start, banner[:1000], detail)


def service_result(h: Handshake) -> Result:
    r = Result()
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        1.0 if h.ok else 0.0, h.target, h.service
    )
    if h.ok:
        r.metric(
            "diag_reach_handshake_seconds", "Time to connect and complete the greeting.", labels=("target", "service")
        ).add(h.seconds, h.target, h.service)
    else:
        why = h.error or f"unexpected greeting: {h.banner.splitlines()[0][:120] if h.banner else '(empty)'}"
        r.find(
            "reach_service",
            "critical",
            f"{h.target}:{h.port}: {h.service} handshake failed: {why}",
            f"{h.target}:{h.port}/{h.service}",
            "handshake_failed",
            [
                Evidence(
                    "text", f"{h.service} handshake with {h.target}:{h.port}", h.banner, {"error": h.error, **h.detail}
                )
            ],
        )
    return r


# ---------------------------------------------------------------------------------------------------------------
# Traceroute


@dataclass(slots=True)
class Probe:
    address: str | None
    rtt: float | None
    #: time_exceeded, reached, or an unreachable reason ("network unreachable"); "" when silent.
    kind: str = ""


@dataclass(slots=True)
class Hop:
    ttl: int
    probes: list[Probe] = field(default_factory=list)

    @property
    def address(self) -> str | None:
        return next((p.address for p in self.probes if p.address), None)

    @property
    def silent(self) -> bool:
        return self.address is None

    def best_rtt(self) -> float | None:
        rtts = [p.rtt for p in self.probes if p.rtt is not None]
        return min(rtts) if rtts else None


@dataclass(slots=True)
class Trace:
    target: str
    address: str
    method: TraceMethod
    hops: list[Hop] = field(default_factory=list)
    reached: bool = False
    #: Why the trace stopped: reached, unreachable, silent (N silent hops in a row), max_hops.
    stopped: str = ""

    def table(self) -> str:
        """The traceroute table as traceroute(8) prints it: TTL, address, one column per probe."""
        out = [f"traceroute ({self.method}) to {self.target} ({self.address})"]
        for h in self.hops:
            cols = []
            for p in h.probes:
                if p.rtt is None:
                    cols.append("*")
                else:
                    mark = "" if p.kind in ("time_exceeded", "reached") else f" !{p.kind}"
                    cols.append(f"{p.rtt * 1000:.3f} ms{mark}")
            out.append(f"{h.ttl:2d}  {h.address or '*':15s}  {'  '.join(cols)}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "address": self.address,
            "method": self.method,
            "reached": self.reached,
            "stopped": self.stopped,
            "hops": [{"ttl": h.ttl, "address": h.address, "probes": [asdict(p) for p in h.probes]} for h in self.hops],
        }


def _classify(msg: IcmpMessage, address: str) -> str:
    if msg.type == ICMP_TIME_EXCEEDED:
        return "time_exceeded"
    if msg.type == ICMP_ECHO_REPLY:
        return "reached"
    if msg.type == ICMP_DEST_UNREACH:
        # The destination answering "port unreachable" (UDP) or "protocol unreachable" means we got there.
        if msg.src == address and msg.code in (2, 3):
            return "reached"
        return UNREACH_CODES.get(msg.code, f"unreachable code {msg.code}")
    return ""


class _Tracer:
    """Sends one TTL-limited probe at a time and waits for the ICMP answer that quotes it."""

    def __init__(self, address: str, method: TraceMethod, timeout: float, port: int) -> None:
        self.address, self.method, self.timeout, self.port = address, method, timeout, port
        self.ident = _ident()
        self.seq = 0
        try:
            self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except PermissionError:
            raise ReachError(
                "traceroute needs raw sockets to read ICMP time-exceeded replies: not allowed here "
                "(not root and no CAP_NET_RAW); run as root or grant CAP_NET_RAW"
            ) from None

    def close(self) -> None:
        self.icmp.close()

    def probe(self, ttl: int) -> Probe:
        self.seq = (self.seq + 1) & 0xFFFF
        if self.method == "icmp":
            return self._probe_icmp(ttl)
        if self.method == "udp":
            return self._probe_udp(ttl)
        return self._probe_tcp(ttl)

    def _wait(self, sent: float, match: Callable[[IcmpMessage], bool], extra: socket.socket | None = None) -> Probe:
        deadline = sent + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            r, w, _ = select.select([self.icmp], [extra] if extra is not None else [], [], left)
            if w and extra is not None:
                err = extra.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                # Accepted or refused: the destination's own TCP answered.
                if err in (0, errno.ECONNREFUSED):
                    return Probe(self.address, time.monotonic() - sent, "reached")
                # Any other error (EHOSTUNREACH also for time exceeded: in SYN_SENT the kernel treats ICMP errors
                # as fatal) ends the connect; reading SO_ERROR cleared it, so stop watching the socket. The ICMP
                # message itself arrives on the raw socket and says who sent it.
                extra = None
            if r:
                data, (src, _) = self.icmp.recvfrom(65535)
                now = time.monotonic()
                try:
                    msg = parse_icmp(data, src)
                except PacketError:
                    continue
                if match(msg):
                    return Probe(msg.src, now - sent, _classify(msg, self.address))
        return Probe(None, None)

    def _quotes(self, msg: IcmpMessage, proto: int, sport: int, dport: int) -> bool:
        q = msg.quoted
        return (
            q is not None
            and msg.type in (ICMP_TIME_EXCEEDED, ICMP_DEST_UNREACH)
            and q.proto == proto
            and q.dst == self.address
            and q.sport == sport
            and q.dport == dport
        )

    def _probe_icmp(self, ttl: int) -> Probe:
        seq = self.seq
        self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sent = time.monotonic()
        self.icmp.sendto(encode_echo_request(self.ident, seq, b"diag-trace"), (self.address, 0))

        def match(m: IcmpMessage) -> bool:
            if m.type == ICMP_ECHO_REPLY:
                return m.src == self.address and m.ident == self.ident and m.seq == seq
            return self._quotes(m, socket.IPPROTO_ICMP, self.ident, seq)

        return self._wait(sent, match)

    def _probe_udp(self, ttl: int) -> Probe:
        dport = self.port + self.seq - 1 if self.port == UDP_BASE_PORT else self.port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            s.bind(("", 0))
            sport = s.getsockname()[1]
            sent = time.monotonic()
            s.sendto(b"diag-trace", (self.address, dport))
            return self._wait(sent, lambda m: self._quotes(m, socket.IPPROTO_UDP, sport, dport))

    def _probe_tcp(self, ttl: int) -> Probe:
        # A non-blocking connect with a small TTL: the kernel sends the SYN, routers quote its ports when they
        # drop it, and the destination's SYN-ACK or RST completes the connect. No raw TCP needed.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            s.setblocking(False)
            s.bind(("", 0))
            sport = s.getsockname()[1]
            sent = time.monotonic()
            rc = s.connect_ex((self.address, self.port))
            if rc not in (0, errno.EINPROGRESS):
                return Probe(None, None, os.strerror(rc))
            return self._wait(sent, lambda m: self._quotes(m, socket.IPPROTO_TCP, sport, self.port), extra=s)


def traceroute(
    target: str,
    method: TraceMethod = "icmp",
    max_hops: int = 30,
    probes: int = 3,
    timeout: float = 1.0,
    port: int | None = None,
    max_silent: int = 3,
) -> Trace:
    """Trace the path with TTL-limited probes.

    Stops at the destination, at an ICMP unreachable, after ``max_silent`` silent hops in a row, or at ``max_hops``.
    """
    address = resolve(target)
    port = port or {"icmp": 0, "udp": UDP_BASE_PORT, "tcp": 80}[method]
    tracer = _Tracer(address, method, timeout, port)
    trace = Trace(target, address, method)
    silent = 0
    try:
        for ttl in range(1, max_hops + 1):
            hop = Hop(ttl, [tracer.probe(ttl) for _ in range(probes)])
            trace.hops.append(hop)
            kinds = {p.kind for p in hop.probes if p.address}
            if "reached" in kinds:
                trace.reached, trace.stopped = True, "reached"
                break
            if kinds - {"time_exceeded", ""}:
                trace.stopped = "unreachable"
                break
            silent = silent + 1 if hop.silent else 0
            if silent >= max_silent:
                trace.stopped = "silent"
                break
        else:
            trace.stopped = "max_hops"
    finally:
        tracer.close()
    return trace


def trace_result(trace: Trace) -> Result:
    """Per-hop RTT metrics; when the destination is not reached, a critical finding naming where the path breaks."""
    r = Result()
    t = trace.target
    hop_m = r.metric("diag_reach_hop_rtt_seconds", "Best RTT to each hop of the traceroute.", labels=("target", "hop"))
    for h in trace.hops:
        best = h.best_rtt()
        if best is not None:
            hop_m.add(best, t, str(h.ttl))
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        1.0 if trace.reached else 0.0, t, f"trace_{trace.method}"
    )
    if trace.reached:
        return r
    answering = [h for h in trace.hops if not h.silent]
    last = answering[-1] if answering else None
    ev = [Evidence("command", f"traceroute {trace.method} {t}", trace.table(), trace.to_dict())]
    if trace.stopped == "unreachable" and last is not None:
        reason = next(p.kind for p in last.probes if p.address and p.kind not in ("time_exceeded", ""))
        summary = f"path to {t} breaks at {last.address}: it answered the TTL-{last.ttl} probe with {reason}"
        data = {"last_responding_hop": last.ttl, "last_responding_address": last.address, "first_silent_hop": None}
    else:
        first_silent = next((h.ttl for h in trace.hops if h.silent and (last is None or h.ttl > last.ttl)), None)
        if last is None:
            summary = f"path to {t} breaks at hop 1: no hop answers"
        else:
            summary = (
                f"path to {t} breaks after hop {last.ttl} ({last.address}): hop {first_silent} and later do not answer"
            )
        data = {
            "last_responding_hop": last.ttl if last else None,
            "last_responding_address": last.address if last else None,
            "first_silent_hop": first_silent,
        }
    ev[0].data.update(data)
    f = r.find("reach_path_break", "critical", summary, t, "path_break", ev)
    f.labels.update({k: str(v) for k, v in data.items() if v is not None})
    return r
