"""Reachability probes: ICMP echo, TCP ports, traceroute (ICMP/UDP/TCP), DNS, HTTP(S) and service handshakes.

One module per check (``ping``, ``ports``, ``dns``, ``http``, ``services``, ``trace``); each measures into a small
dataclass and turns it into a :class:`diag.model.Result` (metrics plus findings with evidence). ICMP uses plain raw
sockets and the encoder in :mod:`diag.network.reach.packets` (no scapy: see docs/reachability.md); when raw sockets
are not allowed it says so and falls back to an unprivileged ping socket, then to a TCP connect. This package
re-exports each check's entry points, so callers write ``reach.ping(...)``.
"""

from __future__ import annotations

from diag.network.reach.common import (
    UDP_BASE_PORT,
    PingMethod,
    PortState,
    ReachError,
    ReachInputError,
    TraceMethod,
    resolve,
)
from diag.network.reach.dns import DnsCheck, dns_check, dns_result
from diag.network.reach.http import HttpCheck, http_check, http_result
from diag.network.reach.ping import PingStats, open_icmp_socket, ping, ping_result
from diag.network.reach.ports import PortCheck, port_check, port_result, tcp_connect
from diag.network.reach.services import (
    SERVICE_PORTS,
    Handshake,
    Service,
    service_check,
    service_result,
    talk_ftp,
    talk_imap,
    talk_mysql,
    talk_smtp,
)
from diag.network.reach.trace import Hop, Probe, Trace, trace_result, traceroute

__all__ = [
    "SERVICE_PORTS",
    "UDP_BASE_PORT",
    "DnsCheck",
    "Handshake",
    "Hop",
    "HttpCheck",
    "PingMethod",
    "PingStats",
    "PortCheck",
    "PortState",
    "Probe",
    "ReachError",
    "ReachInputError",
    "Service",
    "Trace",
    "TraceMethod",
    "dns_check",
    "dns_result",
    "http_check",
    "http_result",
    "open_icmp_socket",
    "ping",
    "ping_result",
    "port_check",
    "port_result",
    "resolve",
    "service_check",
    "service_result",
    "talk_ftp",
    "talk_imap",
    "talk_mysql",
    "talk_smtp",
    "tcp_connect",
    "trace_result",
    "traceroute",
]
