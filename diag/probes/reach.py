"""Scheduled reachability checks (``agent.probes.reach``): ping, TCP port, HTTP(S), DNS and service handshakes.

Each run does every configured check at once (a small thread pool: they mostly wait on the network) with
:mod:`diag.network.reach`, and returns their metrics (``diag_reach_*``) and findings together. Off until
checks are configured; the network code is imported only when the probe first runs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import msgspec

from diag.errors import DiagError
from diag.model import Evidence, Gap, Result
from diag.probes.base import Probe, ProbeOptions, register

CheckType = Literal["ping", "tcp", "http", "dns", "smtp", "imap", "ftp", "mysql"]


class ReachCheck(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: CheckType
    target: str  # host or address; a URL for http; the name to resolve for dns
    port: int | None = None  # tcp (required); the port of a service check; ping's TCP fallback
    timeout: float = 3.0
    count: int = 3  # ping: echo probes per run
    loss_threshold: float = 0.1  # ping: loss above this is a warning
    rtt_threshold: float = 0.5  # ping: average RTT (s) above this is a warning
    server: str | None = None  # dns: ask this server (IP[:PORT]) instead of the system resolver
    record: str = "A"  # dns: record type
    cafile: str | None = None  # http: CA bundle to verify the certificate with
    cert_warn_days: float = 14.0  # http: a certificate expiring sooner is a warning

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("a reach check needs a target")
        if self.type == "tcp" and self.port is None:
            raise ValueError(f"tcp check of {self.target!r} needs a port")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")
        if self.type == "http" and not self.target.startswith(("http://", "https://")):
            raise ValueError(f"http check target {self.target!r} must be an http:// or https:// URL")
        if self.timeout <= 0 or self.count < 1:
            raise ValueError("timeout must be positive and count at least 1")
        # The checks' own limits, as `diag net` applies them: refused at start, not as an error at every run.
        from diag.network.reach.common import ReachError, check_positive

        try:
            check_positive(self.timeout, "timeout")
            check_positive(self.count, "count")
            check_positive(self.loss_threshold, "loss_threshold", zero=True)
            check_positive(self.rtt_threshold, "rtt_threshold")
            check_positive(self.cert_warn_days, "cert_warn_days", zero=True)
            if self.type == "dns" and self.server:
                from diag.network.reach.dns import check_query

                check_query(self.server, self.record)
        except ReachError as e:
            raise ValueError(str(e)) from None

    @property
    def label(self) -> str:
        return f"{self.type} {self.target}" + (f":{self.port}" if self.port and self.type != "ping" else "")


class ReachOptions(ProbeOptions, kw_only=True):
    interval: float = 60.0
    timeout: float = 30.0
    workers: int = 8
    checks: list[ReachCheck] = []

    def __post_init__(self) -> None:
        if not self.checks:
            self.enabled = False  # nothing to check: off until checks are configured
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


def run_check(c: ReachCheck) -> Result:
    """One check's Result; a check that cannot run at all (a name that does not resolve) is a finding too."""
    from diag.network import reach

    try:
        if c.type == "ping":
            stats = reach.ping(c.target, count=c.count, timeout=c.timeout, tcp_port=c.port or 80)
            return reach.ping_result(stats, c.loss_threshold, c.rtt_threshold)
        if c.type == "tcp":
            assert c.port is not None
            return reach.port_result(reach.port_check(c.target, c.port, c.timeout))
        if c.type == "http":
            return reach.http_result(reach.http_check(c.target, c.timeout, cafile=c.cafile), c.cert_warn_days)
        if c.type == "dns":
            return reach.dns_result(reach.dns_check(c.target, c.timeout, c.server, c.record))
        return reach.service_result(reach.service_check(c.target, c.type, c.port, c.timeout))
    except DiagError as e:
        r = Result()
        r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
            0.0, c.target, c.type
        )
        evidence = [Evidence("text", c.label, str(e))]
        r.find("reach_check_failed", "critical", f"{c.label}: {e}", c.target, evidence=evidence)
        # the check did not run: nothing else about the target was looked at (its incidents hold)
        failed = frozenset({"reach_check_failed"})
        r.gaps.append(Gap(f"{c.label}: {e}", subjects=frozenset({c.target}), observed=failed))
        return r


@register
class ReachProbe(Probe):
    name = "reach"
    help = "Reachability of configured targets: ping, TCP ports, HTTP(S), DNS, service handshakes."
    Options = ReachOptions

    def collect(self) -> Result:
        opts = self.options
        assert isinstance(opts, ReachOptions)
        out = Result()
        with ThreadPoolExecutor(min(opts.workers, len(opts.checks)), "reach") as pool:
            for r in pool.map(run_check, opts.checks):
                out.metrics.extend(r.metrics)
                out.findings.extend(r.findings)
                out.gaps.extend(r.gaps)
        return out
