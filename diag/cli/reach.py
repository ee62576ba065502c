"""Subcommands ``diag net ping|trace|port|dns|http|service``: one reachability check, printed as text or JSON.

Exit status as Nagios plugins: 0 no finding, 1 warnings, 2 a critical finding (e.g. unreachable). The reach module
is imported inside the commands so that ``diag --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from diag.cli.common import nonnegative_float, port, positive_float, positive_int, seconds, seconds_or_zero
from diag.model import Result, worst_severity


def _emit(args: argparse.Namespace, details: dict[str, Any], result: Result, text: str) -> int:
    if args.json:
        out = {
            "details": details,
            "metrics": [
                {"name": m.name, "labels": dict(zip(m.label_names, lv, strict=True)), "value": v}
                for m in result.metrics
                for lv, v in m.samples
            ],
            "findings": [f.to_dict() for f in result.findings],
        }
        print(json.dumps(out, indent=2, default=str))
    else:
        print(text)
        for f in result.findings:
            print(f"{f.severity.upper()}: {f.summary}")
    return {None: 0, "info": 0, "warning": 1, "critical": 2}[worst_severity(result.findings)]


def cmd_ping(args: argparse.Namespace) -> int:
    from diag.network import reach

    s = reach.ping(args.target, args.count, args.interval, args.timeout, args.tcp_port, args.method)
    st = s.rtt_stats()
    text = f"{s.target} ({s.address}) via {s.method}: {len(s.received)}/{s.sent} replies, loss {s.loss_ratio:.0%}"
    if st:
        text += " rtt min/avg/max/jitter = " + "/".join(f"{st[k] * 1000:.3f}" for k in ("min", "avg", "max", "jitter"))
        text += " ms"
    if s.note:
        text += f"\nnote: {s.note}"
    return _emit(args, s.to_dict(), reach.ping_result(s, args.loss_threshold, args.rtt_threshold), text)


def cmd_trace(args: argparse.Namespace) -> int:
    from diag.network import reach

    t = reach.traceroute(args.target, args.method, args.max_hops, args.probes, args.timeout, args.port, args.max_silent)
    return _emit(args, t.to_dict(), reach.trace_result(t), t.table())


def cmd_port(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from diag.network import reach

    pc = reach.port_check(args.target, args.port, args.timeout)
    text = f"{pc.target}:{pc.port} {pc.state} in {pc.seconds * 1000:.1f} ms"
    return _emit(args, asdict(pc), reach.port_result(pc), text)


def cmd_dns(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from diag.network import reach

    d = reach.dns_check(args.name, args.timeout, args.server, args.type)
    text = f"{d.name}: {', '.join(d.answers) or d.failure + ' ' + d.error} in {d.seconds * 1000:.1f} ms"
    return _emit(args, asdict(d), reach.dns_result(d), text)


def cmd_http(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from diag.network import reach

    h = reach.http_check(args.url, args.timeout, not args.insecure, args.cafile)
    text = f"{h.url}: {h.error or f'status {h.status} in {h.seconds * 1000:.1f} ms'}"
    if h.cert_expiry_seconds is not None:
        text += f"; certificate expires in {h.cert_expiry_seconds / 86400:.1f} days"
    return _emit(args, asdict(h), reach.http_result(h, args.cert_days), text)


def cmd_service(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from diag.network import reach

    h = reach.service_check(args.target, args.service, args.port, args.timeout)
    text = f"{h.target}:{h.port} {h.service}: {'ok' if h.ok else 'FAILED ' + h.error}\n{h.banner}"
    return _emit(args, asdict(h), reach.service_result(h), text)


def add_commands(sub: Any) -> None:
    """Add ``diag net ...`` to the top-level subparsers."""
    net = sub.add_parser(
        "net", help="reachability checks: ping, traceroute, TCP port, DNS, HTTP(S), service handshakes"
    )
    nsub = net.add_subparsers(dest="net_command", required=True)

    def common(p: argparse.ArgumentParser, timeout: float) -> None:
        p.add_argument(
            "--timeout",
            type=seconds,
            default=timeout,
            help=f"seconds per probe (default {timeout:g})",
        )
        p.add_argument("--json", action="store_true", help="details, metrics and findings as JSON")

    p = nsub.add_parser("ping", help="ICMP echo (raw socket; falls back to a ping socket, then TCP connect)")
    p.add_argument("target")
    p.add_argument("-c", "--count", type=positive_int, default=5)
    p.add_argument("-i", "--interval", type=seconds_or_zero, default=0.2, help="seconds between probes")
    p.add_argument("--tcp-port", type=port, default=80, help="port of the TCP-connect fallback (default 80)")
    p.add_argument("--method", choices=["dgram", "tcp"], help="force a ping socket or TCP connects")
    p.add_argument(
        "--loss-threshold", type=nonnegative_float, default=0.1, help="loss ratio that makes a finding (default 0.1)"
    )
    p.add_argument(
        "--rtt-threshold", type=positive_float, default=0.5, help="average RTT in seconds that makes a finding"
    )
    common(p, 1.0)
    p.set_defaults(func=cmd_ping)

    p = nsub.add_parser("trace", help="traceroute with per-hop RTT; says at which hop the path breaks")
    p.add_argument("target")
    p.add_argument("-m", "--method", choices=["icmp", "udp", "tcp"], default="icmp")
    p.add_argument("--max-hops", type=positive_int, default=30)
    p.add_argument("-q", "--probes", type=positive_int, default=3, help="probes per hop")
    p.add_argument("-p", "--port", type=port, help="destination port (udp: first port, default 33434; tcp: 80)")
    p.add_argument("--max-silent", type=positive_int, default=3, help="stop after this many silent hops in a row")
    common(p, 1.0)
    p.set_defaults(func=cmd_trace)

    p = nsub.add_parser("port", help="TCP connect: open, refused, timeout (filtered) or unreachable")
    p.add_argument("target")
    p.add_argument("port", type=port)
    common(p, 3.0)
    p.set_defaults(func=cmd_port)

    p = nsub.add_parser("dns", help="resolve a name with the system resolver, or ask one server")
    p.add_argument("name")
    p.add_argument("--server", help="ask this server (IP or IP:PORT) with dnspython instead of the system resolver")
    p.add_argument("--type", default="A", help="record type for --server (default A)")
    common(p, 5.0)
    p.set_defaults(func=cmd_dns)

    p = nsub.add_parser("http", help="HTTP(S) GET: status, latency, TLS certificate expiry")
    p.add_argument("url")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--cafile", help="trust this CA file")
    p.add_argument("--cert-days", type=nonnegative_float, default=14.0, help="warn when the certificate expires sooner")
    common(p, 5.0)
    p.set_defaults(func=cmd_http)

    p = nsub.add_parser("service", help="greeting/handshake of smtp, imap, ftp or mysql")
    p.add_argument("target")
    p.add_argument("service", choices=["smtp", "imap", "ftp", "mysql"])
    p.add_argument("-p", "--port", type=port)
    common(p, 5.0)
    p.set_defaults(func=cmd_service)
