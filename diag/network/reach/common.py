"""What every reachability check shares: the error type, name resolution, the probe identity, method names."""

from __future__ import annotations

import os
import socket
from typing import Literal

from diag.errors import DiagError

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


def probe_ident() -> int:
    # The pid tells our echo replies and quoted probes from another ping's running on the same host.
    return os.getpid() & 0xFFFF
