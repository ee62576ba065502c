"""ICMP echo: loss, round-trip times and jitter (raw socket, unprivileged ping socket, or TCP connect)."""

from __future__ import annotations

import itertools
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from diag.model import Evidence, Gap, Result
from diag.network.reach.arrival import Clock, IcmpReceiver, SendTime
from diag.network.reach.common import PingMethod, ReachError, check_port, check_positive, probe_ident, resolve
from diag.network.reach.packets import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    UNREACH_CODES,
    encode_echo_request,
)
from diag.network.reach.ports import tcp_connect


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
    #: What the RTTs run to: the kernel's arrival stamp of each reply, or the moment it was read (no stamps, TCP).
    clock: Clock = "read"

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
            "rtt_clock": self.clock,
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


def _echo_once(
    rx: IcmpReceiver, method: PingMethod, address: str, ident: int, seq: int, timeout: float
) -> tuple[float | None, str]:
    """(RTT or None, why it was lost when someone said: "10.0.0.2: network unreachable", a local errno).

    The RTT runs from the send to the kernel's arrival stamp of the reply (:mod:`diag.network.reach.arrival`).
    """
    request = encode_echo_request(ident, seq, b"diag-reach" + seq.to_bytes(2, "big"))
    try:
        sent = SendTime.now()  # right before the send: encoding is not part of the round trip
        rx.sock.sendto(request, (address, 0))
        for msg, rtt in rx.arrivals(sent, timeout):
            if msg is None:
                continue
            # A ping socket rewrites the identifier to its port and only delivers its own replies: match seq only.
            if (
                msg.type == ICMP_ECHO_REPLY
                and msg.src == address
                and msg.seq == seq
                and (method != "raw" or msg.ident == ident)
            ):
                return rtt, ""
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
    check_positive(count, "count")
    check_positive(interval, "interval", zero=True)
    check_positive(timeout, "timeout")
    check_port(tcp_port, "tcp port")
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
    ident = probe_ident()
    rx = IcmpReceiver(sock, with_ip_header=method == "raw") if sock is not None else None
    if rx is not None:
        stats.clock = rx.clock
    try:
        for seq in range(count):
            start = time.monotonic()
            if rx is None:
                rtt, why = _tcp_once(address, tcp_port, timeout), ""
            else:
                rtt, why = _echo_once(rx, method, address, ident, seq, timeout)
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
        # no answer, no round-trip time: a loss or RTT incident is not over because the target went silent
        r.gaps.append(Gap(f"{t} does not answer: loss and RTT not measured", frozenset({"reach_loss", "reach_rtt"}),
                          frozenset({t})))  # fmt: skip
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
    if stats.method != "tcp" and stats.clock == "read":
        lines.append("note: no kernel receive timestamps here: RTTs measured when read")
    if stats.note:
        lines.append(f"note: {stats.note}")
    return "\n".join(lines)
