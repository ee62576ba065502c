"""ICMP messages with the time the kernel received them, not the time this process got round to reading them.

On a loaded machine a process can be descheduled for longer than a probe's timeout while its reply sits in the
socket's queue. Measured at read time that reply is late or lost: invented latency and loss, i.e. false incidents.
iputils ping avoids it by asking the kernel for each packet's receive timestamp (``SO_TIMESTAMP``, read from the
``recvmsg`` ancillary data); :class:`IcmpReceiver` does the same with ``SO_TIMESTAMPNS`` on the raw or ping
socket, computes the RTT from the send time to that arrival, and at the deadline still reads what is already
queued, so a reply counts when it *arrived* in time. Where the kernel gives no timestamps it falls back to read
time and says so (:attr:`IcmpReceiver.clock`). Ping and traceroute both read ICMP through it.
"""

from __future__ import annotations

import platform
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from diag.network.reach.packets import IcmpMessage, PacketError, parse_icmp

#: Linux's SO_TIMESTAMPNS_NEW (5.1+: ``struct __kernel_timespec``, two s64 on every architecture) and
#: SO_TIMESTAMPNS_OLD (``struct timespec``, two native longs). Python's socket module defines neither. The numbers
#: are asm-generic's; alpha, mips, parisc and sparc number them differently, so there we take no stamps.
SO_TIMESTAMPNS_NEW = 64
SO_TIMESTAMPNS_OLD = 35
_GENERIC_ARCHES = frozenset({"x86_64", "i386", "i686", "aarch64", "armv7l", "armv6l", "riscv64", "ppc64le", "s390x"})

#: How far an arrival may lie after the read (the two clocks are sampled a few microseconds apart at send).
#: Beyond it the wall clock was stepped between send and read, and the read-time RTT is the honest one.
_CLOCK_SLACK = 0.001

Clock = Literal["kernel", "read"]


@dataclass(frozen=True, slots=True)
class SendTime:
    """When a probe left: the monotonic clock (deadlines) and the wall clock the kernel stamps arrivals with."""

    mono: float
    wall_ns: int

    @classmethod
    def now(cls) -> SendTime:
        wall = time.time_ns()  # first: an arrival stamp can then never precede it
        return cls(time.monotonic(), wall)


def enable_arrival_stamps(sock: socket.socket) -> tuple[int, str] | None:
    """Ask the kernel to stamp each received packet; (cmsg type, struct format) of the stamp, or None if it won't."""
    if platform.system() != "Linux" or platform.machine() not in _GENERIC_ARCHES:
        return None
    for opt, fmt in ((SO_TIMESTAMPNS_NEW, "=qq"), (SO_TIMESTAMPNS_OLD, "@ll")):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 1)
        except OSError:
            continue  # ENOPROTOOPT: a kernel older than the option
        return opt, fmt
    return None


def arrival_rtt(ancdata: list[tuple[int, int, bytes]], stamp: tuple[int, str] | None, sent: SendTime,
                read_rtt: float) -> float:  # fmt: skip
    """The RTT to the kernel's arrival stamp in ``ancdata``; ``read_rtt`` when there is none or it cannot be right.

    An arrival before the send or after the read means the wall clock was stepped (NTP, an operator) in between.
    """
    if stamp is None:
        return read_rtt
    kind, fmt = stamp
    for level, typ, data in ancdata:
        if level == socket.SOL_SOCKET and typ == kind and len(data) >= struct.calcsize(fmt):
            sec, nsec = struct.unpack_from(fmt, data)
            rtt = (sec * 1_000_000_000 + nsec - sent.wall_ns) / 1e9
            return rtt if 0.0 <= rtt <= read_rtt + _CLOCK_SLACK else read_rtt
    return read_rtt


class IcmpReceiver:
    """Reads ICMP messages from a raw socket (IP header included) or a ping socket (without) with arrival RTTs."""

    def __init__(self, sock: socket.socket, with_ip_header: bool) -> None:
        self.sock, self.with_ip_header = sock, with_ip_header
        self._stamp = enable_arrival_stamps(sock)
        self._ancsize = socket.CMSG_SPACE(16)

    @property
    def clock(self) -> Clock:
        """``kernel`` when RTTs run to the kernel's arrival stamp, ``read`` when to the moment the process read."""
        return "kernel" if self._stamp is not None else "read"

    def arrivals(
        self, sent: SendTime, timeout: float, also: socket.socket | None = None
    ) -> Iterator[tuple[IcmpMessage | None, float]]:
        """(message, RTT) for each ICMP message that arrived within ``timeout`` of ``sent``; undecodable ones skipped.

        Waits until the deadline, then reads what is already queued: a reply the kernel received in time counts
        even when this process only runs again later. The queue is in arrival order, so the first message that
        arrived too late ends it. ``also``: a connecting socket to watch too; when it becomes writable (the connect
        finished either way) this yields (None, RTT at that moment) once and stops watching it. A connect has no
        arrival stamp, so it counts only when seen before the deadline.
        """
        deadline = sent.mono + timeout
        while True:
            left = deadline - time.monotonic()
            watch = [also] if also is not None and left > 0 else []
            readable, writable, _ = select.select([self.sock], watch, [], max(left, 0.0))
            if writable:
                also = None
                yield None, time.monotonic() - sent.mono
                continue
            if not readable:
                return
            data, anc, _flags, addr = self.sock.recvmsg(65535, self._ancsize)
            rtt = arrival_rtt(anc, self._stamp, sent, time.monotonic() - sent.mono)
            if rtt > timeout:
                return
            try:
                yield parse_icmp(data, addr[0], with_ip_header=self.with_ip_header), rtt
            except PacketError:
                continue  # someone else's malformed packet on a shared raw socket: not ours to judge
