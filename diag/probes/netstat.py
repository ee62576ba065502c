"""Protocol counters of the kernel's network stack: /proc/net/snmp, /proc/net/netstat, /proc/net/snmp6, sockstat.

Every counter is exported, one family per field: ``diag_netstat_<proto>_<field>_total`` with the
kernel's names lowercased (``Tcp RetransSegs`` -> ``diag_netstat_tcp_retranssegs_total``,
``TcpExt ListenOverflows`` -> ``diag_netstat_tcpext_listenoverflows_total``, ``Ip6InReceives`` ->
``diag_netstat_ip6_inreceives_total``), so that a name found with ``nstat`` maps onto a metric without a
lookup table. The few fields that are states rather than counters (``Tcp CurrEstab``, ``Ip Forwarding``,
``Tcp RtoMin``...) are gauges, RTO limits in seconds. Socket counts from /proc/net/sockstat{,6} are
gauges ``diag_sockstat_<proto>_<field>``, memory in bytes. ``exclude`` (a regex over ``Proto_Field``)
leaves out what a site does not want, e.g. ``^MPTcpExt_``.

Findings: TCP listen queue overflows rising (a server not accepting fast enough), a high share of
retransmitted TCP segments (loss on the path), UDP receive buffer errors rising (datagrams dropped).
"""

from __future__ import annotations

import os
import re

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Metric, MetricKind, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

# fields that are states, not counters: (proto, field) -> (metric suffix, divisor to the base unit)
GAUGES: dict[tuple[str, str], tuple[str, float]] = {
    ("Ip", "Forwarding"): ("forwarding", 1.0),
    ("Ip", "DefaultTTL"): ("defaultttl", 1.0),
    ("Tcp", "RtoAlgorithm"): ("rtoalgorithm", 1.0),
    ("Tcp", "RtoMin"): ("rto_min_seconds", 1000.0),
    ("Tcp", "RtoMax"): ("rto_max_seconds", 1000.0),
    ("Tcp", "MaxConn"): ("maxconn", 1.0),
    ("Tcp", "CurrEstab"): ("currestab", 1.0),
    ("MPTcpExt", "MPCurrEstab"): ("mpcurrestab", 1.0),
}

# better help for the counters people look at; the rest get a generic one naming the kernel field
HELP: dict[tuple[str, str], str] = {
    ("Ip", "Forwarding"): "IP forwarding: 1 the host routes, 2 it does not.",
    ("Tcp", "CurrEstab"): "TCP connections in state ESTABLISHED or CLOSE-WAIT right now.",
    ("Tcp", "ActiveOpens"): "TCP connections this host opened (SYN sent).",
    ("Tcp", "PassiveOpens"): "TCP connections this host accepted (SYN received).",
    ("Tcp", "AttemptFails"): "TCP connection attempts that failed.",
    ("Tcp", "EstabResets"): "Established TCP connections that were reset.",
    ("Tcp", "InSegs"): "TCP segments received.",
    ("Tcp", "OutSegs"): "TCP segments sent, without retransmissions.",
    ("Tcp", "RetransSegs"): "TCP segments retransmitted (a sign of loss on the path).",
    ("Tcp", "InErrs"): "TCP segments received with errors.",
    ("Tcp", "OutRsts"): "TCP segments sent with the RST flag.",
    ("Tcp", "RtoMin"): "Minimum TCP retransmission timeout.",
    ("Tcp", "RtoMax"): "Maximum TCP retransmission timeout.",
    ("TcpExt", "ListenOverflows"): "Connections dropped because a listening socket's accept queue was full.",
    ("TcpExt", "ListenDrops"): "Connections dropped at a listening socket for any reason, overflows included.",
    ("TcpExt", "SyncookiesSent"): "SYN cookies sent because a SYN queue was full.",
    ("TcpExt", "TCPTimeouts"): "TCP retransmission timer expiries.",
    ("Udp", "InDatagrams"): "UDP datagrams delivered to sockets.",
    ("Udp", "NoPorts"): "UDP datagrams for a port nobody listens on.",
    ("Udp", "InErrors"): "UDP datagrams that could not be delivered (buffer errors included).",
    ("Udp", "RcvbufErrors"): "UDP datagrams dropped because a socket's receive buffer was full.",
    ("Udp", "SndbufErrors"): "UDP datagrams dropped because a socket's send buffer was full.",
    ("IpExt", "InOctets"): "IP bytes received, all interfaces.",
    ("IpExt", "OutOctets"): "IP bytes sent, all interfaces.",
}


SOCKSTAT_HELP = {
    "used": "in use, all protocols",
    "inuse": "in use",
    "orphan": "orphaned (closed by the program, still in the kernel)",
    "tw": "in TIME_WAIT",
    "alloc": "allocated",
}


class NetstatOptions(ProbeOptions, kw_only=True):
    exclude: str = ""  # regex over "Proto_Field" (e.g. "^MPTcpExt_") of counters not to export
    listen_overflows_warning_delta: float = 0.0  # accept-queue overflows added since the previous run
    retransmit_warning_percent: float = 5.0  # retransmitted / sent segments since the previous run
    retransmit_min_segments: float = 1000.0  # judge the retransmit share only above this many sent segments
    udp_rcvbuf_errors_warning_delta: float = 100.0  # UDP datagrams dropped for a full receive buffer


def _bad(source: str, lineno: int, line: str) -> ProbeError:
    return ProbeError(f"{source}:{lineno}: not a counter line: {line[:80]!r}")


def parse_table(text: str, source: str = "/proc/net/snmp") -> dict[str, dict[str, float]]:
    """/proc/net/snmp and /proc/net/netstat: pairs of ``Proto: names`` / ``Proto: values`` lines."""
    out: dict[str, dict[str, float]] = {}
    lines = text.splitlines()
    for i in range(0, len(lines) - 1, 2):
        head, values = lines[i].split(), lines[i + 1].split()
        if not head or not values or head[0] != values[0] or len(head) != len(values):
            continue  # a mismatched pair is skipped rather than mislabelled
        try:
            out.setdefault(head[0].rstrip(":"), {}).update(zip(head[1:], map(float, values[1:]), strict=True))
        except ValueError:
            raise _bad(source, i + 2, lines[i + 1]) from None
    return out


def parse_snmp6(text: str, source: str = "/proc/net/snmp6") -> dict[str, dict[str, float]]:
    """/proc/net/snmp6: ``Ip6InReceives 16`` lines -> {"Ip6": {"InReceives": 16}}."""
    out: dict[str, dict[str, float]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) != 2:
            continue
        key = parts[0]
        cut = key.find("6") + 1  # protocol names end in 6: Ip6, Icmp6, Udp6, UdpLite6
        if cut <= 0:
            continue
        try:
            out.setdefault(key[:cut], {})[key[cut:]] = float(parts[1])
        except ValueError:
            raise _bad(source, lineno, line) from None
    return out


def parse_sockstat(text: str, source: str = "/proc/net/sockstat") -> dict[str, dict[str, float]]:
    """``TCP: inuse 1 orphan 0 tw 224 alloc 1 mem 6`` -> {"TCP": {"inuse": 1, ...}}."""
    out: dict[str, dict[str, float]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        proto, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        try:
            out[proto] = {parts[i]: float(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}
        except ValueError:
            raise _bad(source, lineno, line) from None
    return out


@register
class NetstatProbe(Probe):
    name = "netstat"
    help = "Network stack counters (IP, ICMP, TCP, UDP, IPv6, sockets); listen overflows and retransmits."
    Options = NetstatOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        assert isinstance(options, NetstatOptions)
        self._exclude = re.compile(options.exclude) if options.exclude else None
        # (proto, field) -> (name, help, kind, scale) or None when excluded: built once per field
        self._meta: dict[tuple[str, str], tuple[str, str, MetricKind, float] | None] = {}
        self._page = float(os.sysconf("SC_PAGE_SIZE"))
        self._last: dict[str, dict[str, float]] = {}

    def _describe(self, proto: str, field: str, source: str) -> tuple[str, str, MetricKind, float] | None:
        key = (proto, field)
        if key in self._meta:
            return self._meta[key]
        meta: tuple[str, str, MetricKind, float] | None = None
        if self._exclude is None or not self._exclude.search(f"{proto}_{field}"):
            help_text = HELP.get(key, f"Kernel counter {proto} {field} from {source}.")
            gauge = GAUGES.get(key)
            if gauge is not None:
                meta = (f"diag_netstat_{proto.lower()}_{gauge[0]}", help_text, "gauge", gauge[1])
            else:
                meta = (f"diag_netstat_{proto.lower()}_{field.lower()}_total", help_text, "counter", 1.0)
        self._meta[key] = meta
        return meta

    def collect(self) -> Result:
        assert isinstance(self.options, NetstatOptions)
        tables: list[tuple[str, dict[str, dict[str, float]]]] = []
        snmp = parse_table(read_text(self.paths.proc("net", "snmp")), "/proc/net/snmp")  # every kernel has it
        tables.append(("/proc/net/snmp", snmp))
        for name, parser in (("netstat", parse_table), ("snmp6", parse_snmp6)):
            try:
                tables.append(
                    (f"/proc/net/{name}", parser(read_text(self.paths.proc("net", name)), f"/proc/net/{name}"))
                )
            except NoData:
                continue  # no IPv6, or an old kernel: the rest still counts
        if not snmp:
            raise NoData("/proc/net/snmp holds no counters")
        r = Result()
        merged: dict[str, dict[str, float]] = {}
        for source, table in tables:
            for proto, fields in table.items():
                merged.setdefault(proto, {}).update(fields)
                for field, value in fields.items():
                    meta = self._describe(proto, field, source)
                    if meta is not None:
                        r.metrics.append(Metric(meta[0], meta[1], meta[2], samples=[((), value / meta[3])]))
        for name in ("sockstat", "sockstat6"):
            try:
                socks = parse_sockstat(read_text(self.paths.proc("net", name)), f"/proc/net/{name}")
            except NoData:
                continue
            for proto, fields in socks.items():
                p = proto.lower()
                for field, value in fields.items():
                    if field == "mem":
                        r.metric(
                            f"diag_sockstat_{p}_mem_bytes", f"Memory the kernel holds for {proto} socket buffers."
                        ).add(value * self._page)
                    elif field == "memory":  # FRAG: already bytes
                        r.metric(f"diag_sockstat_{p}_memory_bytes", f"Memory used by {proto} reassembly.").add(value)
                    else:
                        what = SOCKSTAT_HELP.get(field, field)
                        r.metric(f"diag_sockstat_{p}_{field}", f"{proto} sockets {what} (/proc/net/{name}).").add(value)
        self._judge(r, merged)
        self._last = merged
        return r

    def _delta(self, now: dict[str, dict[str, float]], proto: str, field: str) -> tuple[float, float, float] | None:
        before = self._last.get(proto, {}).get(field)
        value = now.get(proto, {}).get(field)
        if before is None or value is None or value < before:
            return None  # first run, field absent, or counter reset
        return before, value, value - before

    def _judge(self, r: Result, now: dict[str, dict[str, float]]) -> None:
        assert isinstance(self.options, NetstatOptions)
        o = self.options
        if not self._last:
            return
        ov = self._delta(now, "TcpExt", "ListenOverflows")
        if ov is not None and ov[2] > o.listen_overflows_warning_delta:
            drops = self._delta(now, "TcpExt", "ListenDrops")
            text = f"TcpExt ListenOverflows {ov[0]:.0f} -> {ov[1]:.0f}"
            if drops is not None:
                text += f"\nTcpExt ListenDrops {drops[0]:.0f} -> {drops[1]:.0f}"
            r.find(
                "tcp_listen_overflows",
                "warning",
                f"{ov[2]:.0f} TCP connections dropped since the previous run: a listen queue was full",
                subject="tcp_listen",
                cause="listen_queue_full",
                evidence=[Evidence("metric", "/proc/net/netstat (previous run -> this run)", text, {"delta": ov[2]})],
            )
        retrans, out = self._delta(now, "Tcp", "RetransSegs"), self._delta(now, "Tcp", "OutSegs")
        if retrans is not None and out is not None and out[2] >= o.retransmit_min_segments:
            pct = 100.0 * retrans[2] / out[2]
            if pct >= o.retransmit_warning_percent:
                r.find(
                    "tcp_retransmits",
                    "warning",
                    f"{pct:.1f} % of TCP segments retransmitted since the previous run",
                    subject="tcp_retransmit",
                    cause="packet_loss",
                    evidence=[
                        Evidence(
                            "metric",
                            "/proc/net/snmp (previous run -> this run)",
                            f"Tcp RetransSegs {retrans[0]:.0f} -> {retrans[1]:.0f}\n"
                            f"Tcp OutSegs {out[0]:.0f} -> {out[1]:.0f}",
                            {"retransmitted": retrans[2], "sent": out[2], "percent": round(pct, 2)},
                        )
                    ],
                )
        rcvbuf = self._delta(now, "Udp", "RcvbufErrors")
        if rcvbuf is not None and rcvbuf[2] > o.udp_rcvbuf_errors_warning_delta:
            r.find(
                "udp_rcvbuf_errors",
                "warning",
                f"{rcvbuf[2]:.0f} UDP datagrams dropped for a full receive buffer since the previous run",
                subject="udp_rcvbuf",
                cause="socket_buffer_full",
                evidence=[
                    Evidence(
                        "metric",
                        "/proc/net/snmp (previous run -> this run)",
                        f"Udp RcvbufErrors {rcvbuf[0]:.0f} -> {rcvbuf[1]:.0f}",
                        {"delta": rcvbuf[2]},
                    )
                ],
            )
