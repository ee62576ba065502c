"""What every reachability check shares: the error type, name resolution, the probe identity, method names."""

from __future__ import annotations

import os
import socket
from typing import Literal

from diag.errors import DiagError, InvalidInput

PingMethod = Literal["raw", "dgram", "tcp"]
TraceMethod = Literal["icmp", "udp", "tcp"]
PortState = Literal["open", "refused", "timeout", "unreachable", "error"]

#: First UDP destination port of a UDP traceroute, as in traceroute(8).
UDP_BASE_PORT = 33434


class ReachError(DiagError):
    """A check could not run at all (bad target, no permission for what it needs)."""


class ReachInputError(ReachError, InvalidInput):
    """What was asked can never run (a port over 65535, a URL that is not one, an unknown record type).

    InvalidInput, so the command line exits 2 and the API answers 400; a ReachError, so callers that handle a
    check that could not run (the agent's scheduled checks) handle it too.
    """


def check_port(port: int, what: str = "port") -> int:
    """``port`` when it is a TCP/UDP port number; ReachInputError (exit 2, HTTP 400) naming ``what`` otherwise.

    Without it a port over 65535 was passed on and came back as "refused" (the kernel saw another port).
    """
    if not 1 <= port <= 65535:
        raise ReachInputError(f"{what} {port} is not a port number (1-65535)")
    return port


#: The longest time or count a check takes (30 days): beyond it a value is a typo, and 1e300 s made the socket
#: layer raise OverflowError (a traceback) instead of a one-line refusal.
MAX_VALUE = 30 * 86400.0


def check_positive(value: float, what: str, zero: bool = False) -> float:
    """``value`` when it is above zero (or zero, when ``zero``) and at most :data:`MAX_VALUE`; ReachInputError
    naming ``what`` otherwise."""
    if value < 0 or (value == 0 and not zero) or value != value:  # value != value: NaN
        raise ReachInputError(f"{what} {value:g} must be {'zero or more' if zero else 'positive'}")
    if value > MAX_VALUE:
        raise ReachInputError(f"{what} {value:g} is too large (at most {MAX_VALUE:g})")
    return value


def resolve(target: str) -> str:
    """The IPv4 address of ``target`` (an address or a name), or a one-line error naming the target.

    A target that cannot be a host name at all (empty, blanks, control characters) is InvalidInput; one that
    does not resolve is a ReachError (the resolver's answer can change, the input cannot).
    """
    if not target or any(c.isspace() or not c.isprintable() for c in target):
        raise ReachInputError(f"{target!r} is not a host name or address")
    try:
        return socket.gethostbyname(target)
    except (socket.gaierror, UnicodeError) as e:
        raise ReachError(f"{target}: cannot resolve: {e}") from None


def probe_ident() -> int:
    # The pid tells our echo replies and quoted probes from another ping's running on the same host.
    return os.getpid() & 0xFFFF
