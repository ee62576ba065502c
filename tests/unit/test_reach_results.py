"""How reachability measurements become metrics and findings, and the service talkers on recorded server lines."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from diag.model import Result
from diag.network import reach
from diag.network.reach import Hop, HttpCheck, PingStats, Probe, Trace

FIX = Path(__file__).parent.parent / "fixtures" / "reach"


def samples(r: Result, name: str) -> dict[tuple[str, ...], float]:
    return {lv: v for m in r.metrics if m.name == name for lv, v in m.samples}


def test_rtt_stats_and_jitter() -> None:
    s = PingStats("h", "10.0.0.1", "raw", rtts=[0.010, None, 0.014, 0.011, None])
    st = s.rtt_stats()
    assert st["min"] == pytest.approx(0.010) and st["max"] == pytest.approx(0.014)
    assert st["avg"] == pytest.approx(0.035 / 3)
    # Mean absolute difference of consecutive received RTTs: (|14-10| + |11-14|) / 2 ms.
    assert st["jitter"] == pytest.approx(0.0035)
    assert s.loss_ratio == pytest.approx(0.4)


def test_ping_result_loss_and_rtt_findings() -> None:
    r = reach.ping_result(PingStats("h", "10.0.0.1", "raw", rtts=[0.9, None, 0.8, 0.7]), 0.1, 0.5)
    assert samples(r, "diag_reach_icmp_loss_ratio") == {("h",): 0.25}
    assert set(samples(r, "diag_reach_icmp_rtt_seconds")) == {("h", "min"), ("h", "avg"), ("h", "max"), ("h", "jitter")}
    assert sorted(f.check for f in r.findings) == ["reach_loss", "reach_rtt"]
    assert samples(r, "diag_reach_up") == {("h", "ping"): 1.0}


def test_ping_result_unreachable_is_critical_and_says_the_fallback() -> None:
    note = "raw sockets not allowed (not root and no CAP_NET_RAW); fell back to TCP connect to port 80"
    r = reach.ping_result(PingStats("h", "10.0.0.1", "tcp", rtts=[None, None], note=note))
    (f,) = r.findings
    assert (f.check, f.severity) == ("reach_unreachable", "critical")
    assert "raw sockets not allowed" in f.evidence[0].text
    assert samples(r, "diag_reach_up") == {("h", "ping"): 0.0}
    assert samples(r, "diag_reach_icmp_rtt_seconds") == {}


def _trace(hops: list[list[Probe]], reached: bool, stopped: str) -> Trace:
    return Trace("b", "10.0.0.10", "icmp", [Hop(i + 1, p) for i, p in enumerate(hops)], reached, stopped)


def test_trace_result_silent_break_names_last_and_first_silent_hop() -> None:
    silent = [Probe(None, None), Probe(None, None)]
    t = _trace([[Probe("10.0.0.2", 0.001, "time_exceeded"), Probe(None, None)], silent, silent], False, "silent")
    r = reach.trace_result(t)
    (f,) = r.findings
    assert f.severity == "critical"
    assert f.summary == "path to b breaks after hop 1 (10.0.0.2): hop 2 and later do not answer"
    assert f.evidence[0].data["first_silent_hop"] == 2
    assert " 1  10.0.0.2" in f.evidence[0].text and " 2  *" in f.evidence[0].text
    assert samples(r, "diag_reach_hop_rtt_seconds") == {("b", "1"): 0.001}


def test_trace_result_unreachable_names_the_router() -> None:
    t = _trace([[Probe("10.0.0.2", 0.001, "network unreachable")]], False, "unreachable")
    (f,) = reach.trace_result(t).findings
    assert "breaks at 10.0.0.2" in f.summary and "network unreachable" in f.summary
    assert "!network unreachable" in f.evidence[0].text


def test_trace_result_reached_has_no_finding() -> None:
    t = _trace([[Probe("10.0.0.2", 0.001, "time_exceeded")], [Probe("10.0.0.10", 0.002, "reached")]], True, "reached")
    r = reach.trace_result(t)
    assert r.findings == [] and samples(r, "diag_reach_up") == {("b", "trace_icmp"): 1.0}


def test_http_result_expiring_untrusted_and_5xx() -> None:
    h = HttpCheck("https://x/", 503, 0.02, cert_expiry_seconds=5 * 86400, verify_error="self-signed certificate")
    r = reach.http_result(h, cert_warn_days=14)
    assert sorted(f.check for f in r.findings) == ["reach_http", "reach_tls_expiry", "reach_tls_untrusted"]
    assert samples(r, "diag_reach_http_status") == {("https://x/",): 503.0}
    assert samples(r, "diag_reach_tls_cert_expiry_seconds") == {("https://x/",): 5 * 86400.0}
    expired = reach.http_result(HttpCheck("https://x/", 200, 0.01, cert_expiry_seconds=-86400))
    assert [f.severity for f in expired.findings] == ["critical"]


def _serve(script: Callable[[socket.socket], None]) -> tuple[socket.socket, threading.Thread]:
    client, server = socket.socketpair()

    def run() -> None:
        with server:
            script(server)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    client.settimeout(5)
    return client, th


def _lines(*names: str) -> Callable[[socket.socket], None]:
    """A server that sends the first recorded file, then one more file after each line it reads."""

    def script(s: socket.socket) -> None:
        s.sendall((FIX / names[0]).read_bytes())
        f = s.makefile("rb")
        for name in names[1:]:
            f.readline()
            s.sendall((FIX / name).read_bytes())
        f.readline()  # QUIT / LOGOUT

    return script


@pytest.mark.parametrize(
    ("talker", "files", "ok", "detail"),
    [
        (reach.talk_smtp, ("smtp_exim_banner.txt", "smtp_exim_ehlo.txt"), True, {"code": 220, "ehlo_code": 250}),
        (reach.talk_imap, ("imap_dovecot_banner.txt",), True, {"status": "OK"}),
        (reach.talk_ftp, ("ftp_vsftpd_banner.txt",), True, {"code": 220}),
        (reach.talk_ftp, ("ftp_vsftpd_oops.txt",), False, {"code": 500}),
    ],
)
def test_talkers_on_recorded_lines(talker: Any, files: tuple[str, ...], ok: bool, detail: dict[str, Any]) -> None:
    client, th = _serve(_lines(*files))
    with client:
        got_ok, banner, got = talker(client)
    th.join(5)
    assert got_ok is ok
    assert {k: got[k] for k in detail} == detail
    assert banner.splitlines()[0] == (FIX / files[0]).read_text().rstrip("\r\n")
    if talker is reach.talk_smtp:
        assert got["extensions"] == [
            "SIZE",
            "8BITMIME",
            "PIPELINING",
            "PIPECONNECT",
            "CHUNKING",
            "STARTTLS",
            "PRDR",
            "HELP",
        ]


def test_mysql_talker_on_recorded_greeting() -> None:
    data = bytes.fromhex((FIX / "mysql_greeting_mariadb.hex").read_text().strip())
    client, th = _serve(lambda s: s.sendall(data))
    with client:
        ok, banner, detail = reach.talk_mysql(client)
    th.join(5)
    assert ok and banner == "protocol 10, server 10.11.19-MariaDB-0+deb12u1" and detail["connection_id"] == 4


def test_service_result_failed_handshake_has_the_banner_as_evidence() -> None:
    h = reach.Handshake("b", 21, "ftp", False, 0.01, "500 OOPS: vsftpd: both local and anonymous access disabled!")
    (f,) = reach.service_result(h).findings
    assert f.check == "reach_service" and "500 OOPS" in f.summary and f.evidence[0].text.startswith("500 OOPS")


def test_ping_result_unreachable_names_who_said_so() -> None:
    s = PingStats("b", "10.0.0.10", "raw", rtts=[None, None], errors=["10.0.0.2: network unreachable"])
    (f,) = reach.ping_result(s).findings
    assert f.summary == "b does not answer: 2 probes lost (10.0.0.2: network unreachable)"
    assert "error: 10.0.0.2: network unreachable" in f.evidence[0].text
