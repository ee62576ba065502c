"""Traceroute over ICMP, UDP or TCP: the hops to a target and the one where the path breaks."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from diag.model import Evidence, Result
from diag.network.reach.arrival import IcmpReceiver, SendTime
from diag.network.reach.common import (
    UDP_BASE_PORT,
    ReachError,
    ReachInputError,
    TraceMethod,
    check_port,
    check_positive,
    probe_ident,
    resolve,
)
from diag.network.reach.packets import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_TIME_EXCEEDED,
    UNREACH_CODES,
    IcmpMessage,
    encode_echo_request,
)


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
        self.ident = probe_ident()
        self.seq = 0
        try:
            self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except PermissionError:
            raise ReachError(
                "traceroute needs raw sockets to read ICMP time-exceeded replies: not allowed here "
                "(not root and no CAP_NET_RAW); run as root or grant CAP_NET_RAW"
            ) from None
        self.rx = IcmpReceiver(self.icmp, with_ip_header=True)

    def close(self) -> None:
        self.icmp.close()

    def probe(self, ttl: int) -> Probe:
        self.seq = (self.seq + 1) & 0xFFFF
        if self.method == "icmp":
            return self._probe_icmp(ttl)
        if self.method == "udp":
            return self._probe_udp(ttl)
        return self._probe_tcp(ttl)

    def _wait(self, sent: SendTime, match: Callable[[IcmpMessage], bool], extra: socket.socket | None = None) -> Probe:
        for msg, rtt in self.rx.arrivals(sent, self.timeout, also=extra):
            if msg is None and extra is not None:
                err = extra.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                # Accepted or refused: the destination's own TCP answered.
                if err in (0, errno.ECONNREFUSED):
                    return Probe(self.address, rtt, "reached")
                # Any other error (EHOSTUNREACH also for time exceeded: in SYN_SENT the kernel treats ICMP errors
                # as fatal) ends the connect; reading SO_ERROR cleared it, and the receiver stops watching the
                # socket. The ICMP message itself arrives on the raw socket and says who sent it.
            elif msg is not None and match(msg):
                return Probe(msg.src, rtt, _classify(msg, self.address))
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
        request = encode_echo_request(self.ident, seq, b"diag-trace")
        sent = SendTime.now()
        self.icmp.sendto(request, (self.address, 0))

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
            sent = SendTime.now()
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
            sent = SendTime.now()
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
    if not 1 <= max_hops <= 255:
        raise ReachInputError(f"max hops {max_hops} must be 1 to 255 (an IP TTL)")
    check_positive(probes, "probes per hop")
    check_positive(timeout, "timeout")
    check_positive(max_silent, "max silent hops")
    if port is not None:
        check_port(port)
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
