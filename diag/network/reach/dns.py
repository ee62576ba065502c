"""DNS checks: does the name resolve (on the system resolver or a given server), how fast, to what."""

from __future__ import annotations

import concurrent.futures
import socket
import time
from dataclasses import asdict, dataclass

from diag.model import Evidence, Result
from diag.network.reach.common import ReachInputError, check_port, check_positive


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
    check_positive(timeout, "timeout")
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
    import dns.rdatatype
    import dns.resolver

    host, port = check_query(server, rdtype)
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [host]
    res.port = port
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


def check_query(server: str, rdtype: str) -> tuple[str, int]:
    """The (address, port) of ``server`` when it and ``rdtype`` can be asked; ReachInputError otherwise.

    What ``diag net dns --server`` and a scheduled dns check (validated at start) both refuse.
    """
    import dns.exception
    import dns.rdatatype

    host, port = _server(server)
    try:
        dns.rdatatype.from_text(rdtype)
    except dns.exception.DNSException:
        raise ReachInputError(f"{rdtype}: not a DNS record type (A, AAAA, MX, TXT, ...)") from None
    return host, port


def _server(server: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` -> (address, port); ReachInputError otherwise (not a runtime failure)."""
    import ipaddress

    host, port = server, "53"
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif server.count(":") == 1:
        host, _, port = server.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ReachInputError(f"server {server!r}: not an IP address or IP:PORT") from None
    return host, check_port(number, "server port")


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
