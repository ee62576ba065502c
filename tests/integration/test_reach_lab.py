"""Reachability checks in a routed lab (labs/routedlab.py): traceroute hops, a broken path, loss, ports, HTTPS, DNS.

Every probe runs ``diag net ... --json`` inside namespace dgr-a; peers (HTTP servers) run in dgr-b. Tests that break
the lab (link down, blackhole, loss, sysctl) restore it in ``finally`` so the module can share one lab.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.labs.routedlab import ADDR, BLACKHOLE, NETNS_ETC, RoutedLab, nsx, run

pytestmark = pytest.mark.integration

B = ADDR["b"]
PY = sys.executable
HTTPS_SERVER = """
import http.server, ssl, sys
srv = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutedLab]:
    if os.geteuid() != 0:
        pytest.fail("the routed lab needs root (network namespaces); CI runs the tests as root")
    docroot = tmp_path_factory.mktemp("dgr-www")
    with RoutedLab() as lab:
        # A plain HTTP server on b: an open port for the port check and the TCP-connect ping fallback.
        lab.spawn("dgr-b", [PY, "-m", "http.server", "8080", "--bind", B, "-d", str(docroot)], (B, 8080))
        yield lab


def findings(out: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for f in out["findings"] if f["check"] == check]


def metric(out: dict[str, Any], name: str, **labels: str) -> list[float]:
    return [
        m["value"]
        for m in out["metrics"]
        if m["name"] == name and all(m["labels"].get(k) == v for k, v in labels.items())
    ]


@pytest.mark.parametrize("method", ["icmp", "udp", "tcp"])
def test_trace_shows_real_hops(lab: RoutedLab, method: str) -> None:
    extra = ["-p", "8080"] if method == "tcp" else []
    rc, out = lab.diag("net", "trace", B, "-m", method, "-q", "2", "--timeout", "1", *extra)
    hops = [h["address"] for h in out["details"]["hops"]]
    assert hops == [ADDR["r1"], ADDR["r2"], B], out["details"]
    assert out["details"]["reached"] is True
    assert rc == 0 and out["findings"] == []
    assert sorted(m["labels"]["hop"] for m in out["metrics"] if m["name"] == "diag_reach_hop_rtt_seconds") == [
        "1",
        "2",
        "3",
    ]


def test_link_down_names_the_failing_hop(lab: RoutedLab) -> None:
    lab.link("dgr-r1", "r1-r2", up=False)
    try:
        rc, out = lab.diag("net", "trace", B, "-q", "2", "--timeout", "0.6")
    finally:
        lab.link("dgr-r1", "r1-r2", up=True)
        # Setting the link down removed r1's route through it.
        run(["ip", "-n", "dgr-r1", "route", "replace", "10.233.0.8/30", "via", ADDR["r2"]])
    assert rc == 2
    (f,) = findings(out, "reach_path_break")
    assert f["severity"] == "critical"
    assert ADDR["r1"] in f["summary"]
    data = f["evidence"][0]["data"]
    assert data["last_responding_address"] == ADDR["r1"]
    assert ADDR["r1"] in f["evidence"][0]["text"]  # the traceroute table
    seen = {h["address"] for h in out["details"]["hops"]}
    assert ADDR["r2"] not in seen and B not in seen


def test_silent_path_break_names_last_and_first_silent_hop(lab: RoutedLab) -> None:
    # A blackhole route on r2 drops the probes without any ICMP answer: hop 2 and beyond go silent.
    run(["ip", "-n", "dgr-r2", "route", "add", "blackhole", f"{B}/32"])
    try:
        rc, out = lab.diag("net", "trace", B, "-q", "1", "--timeout", "0.5", "--max-silent", "2")
    finally:
        run(["ip", "-n", "dgr-r2", "route", "del", "blackhole", f"{B}/32"])
    assert rc == 2
    (f,) = findings(out, "reach_path_break")
    data = f["evidence"][0]["data"]
    assert (data["last_responding_hop"], data["last_responding_address"], data["first_silent_hop"]) == (
        1,
        ADDR["r1"],
        2,
    )
    assert "after hop 1" in f["summary"]


def _loss_check(lab: RoutedLab) -> None:
    rc, out = lab.diag("net", "ping", B, "-c", "60", "-i", "0.01", "--timeout", "0.3")
    (loss,) = metric(out, "diag_reach_icmp_loss_ratio", target=B)
    # 30% random loss over 60 probes: 0 or 60 lost would have a probability below 1e-9.
    assert 0.0 < loss < 1.0, out["details"]
    assert findings(out, "reach_loss") and rc == 1
    assert {m["labels"]["stat"] for m in out["metrics"] if m["name"] == "diag_reach_icmp_rtt_seconds"} == {
        "min",
        "avg",
        "max",
        "jitter",
    }


def test_loss_with_netem(lab: RoutedLab) -> None:
    ok, why = lab.netem_available()
    if not ok:
        pytest.skip(f"tc netem is not available in this kernel ({why}); test_loss_with_nft covers loss")
    nsx("dgr-r2", "tc", "qdisc", "add", "dev", "r2-b", "root", "netem", "loss", "30%")
    try:
        _loss_check(lab)
    finally:
        nsx("dgr-r2", "tc", "qdisc", "del", "dev", "r2-b", "root", check=False)


def test_loss_with_nft(lab: RoutedLab) -> None:
    # The same loss without netem: nftables drops 30% of the echo requests reaching b, at random.
    rules = (
        "add table inet dgrloss; add chain inet dgrloss in { type filter hook input priority 0; }; "
        "add rule inet dgrloss in icmp type echo-request numgen random mod 100 < 30 drop"
    )
    nsx("dgr-b", "nft", rules)
    try:
        _loss_check(lab)
    finally:
        nsx("dgr-b", "nft", "delete table inet dgrloss", check=False)


def test_clean_ping(lab: RoutedLab) -> None:
    rc, out = lab.diag("net", "ping", B, "-c", "5", "-i", "0.01")
    assert rc == 0 and out["details"]["method"] == "raw" and out["details"]["received"] == 5
    assert metric(out, "diag_reach_icmp_loss_ratio", target=B) == [0.0]
    assert metric(out, "diag_reach_up", target=B, check="ping") == [1.0]


def test_unreachable_target_is_critical(lab: RoutedLab) -> None:
    rc, out = lab.diag("net", "ping", BLACKHOLE, "-c", "2", "-i", "0.01", "--timeout", "0.3")
    assert rc == 2
    (f,) = findings(out, "reach_unreachable")
    assert f["severity"] == "critical"
    assert metric(out, "diag_reach_up", target=BLACKHOLE, check="ping") == [0.0]


def test_port_open_refused_and_filtered(lab: RoutedLab) -> None:
    rc, out = lab.diag("net", "port", B, "8080")
    assert rc == 0 and out["details"]["state"] == "open"
    assert len(metric(out, "diag_reach_tcp_connect_seconds", target=B, port="8080")) == 1
    rc, out = lab.diag("net", "port", B, "8081")
    assert rc == 2 and out["details"]["state"] == "refused"
    assert findings(out, "reach_tcp_port")[0]["cause"] == "port_refused"
    rc, out = lab.diag("net", "port", BLACKHOLE, "80", "--timeout", "1")
    assert rc == 2 and out["details"]["state"] == "timeout"
    assert findings(out, "reach_tcp_port")[0]["cause"] == "port_timeout"


def _self_signed(tmp: Path, days: int) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "b.dgr.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / "cert.pem", tmp / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return crt, pem


def test_https_status_latency_and_cert_expiry(lab: RoutedLab, tmp_path: Path) -> None:
    crt, key = _self_signed(tmp_path, days=5)
    lab.spawn("dgr-b", [PY, "-c", HTTPS_SERVER, B, "8443", str(crt), str(key)], (B, 8443))
    rc, out = lab.diag("net", "http", f"https://{B}:8443/")
    url = f"https://{B}:8443/"
    assert metric(out, "diag_reach_http_status", target=url) == [200.0]
    assert len(metric(out, "diag_reach_http_seconds", target=url)) == 1
    (expiry,) = metric(out, "diag_reach_tls_cert_expiry_seconds", target=url)
    assert 4 * 86400 < expiry <= 5 * 86400
    (f,) = findings(out, "reach_tls_expiry")
    assert f["severity"] == "warning" and "TLS certificate expires in" in f["summary"]
    assert findings(out, "reach_tls_untrusted"), "a self-signed certificate is not trusted by default"
    assert rc == 1


def test_dns_system_resolver(lab: RoutedLab) -> None:
    # ip netns exec bind-mounts /etc/netns/dgr-a/* over /etc: our own hosts file and resolv.conf for dgr-a. The
    # resolver is a real dnsmasq on b that answers www.dgr.test and is authoritative (NXDOMAIN) for the rest of
    # dgr.test; the queries never leave the lab.
    lab.spawn(
        "dgr-b",
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={B}",
            "--port=53",
            f"--host-record=www.dgr.test,{B}",
            "--local=/dgr.test/",
            "--pid-file=",
            "--user=root",
        ],
        (B, 53),
    )
    NETNS_ETC.mkdir(parents=True, exist_ok=True)
    try:
        (NETNS_ETC / "hosts").write_text(f"127.0.0.1 localhost\n{B} b.dgr.test\n")
        (NETNS_ETC / "resolv.conf").write_text(f"nameserver {B}\noptions timeout:1 attempts:1\n")
        rc, out = lab.diag("net", "dns", "b.dgr.test")  # from the hosts file
        assert rc == 0 and out["details"]["answers"] == [B]
        rc, out = lab.diag("net", "dns", "www.dgr.test")  # from dnsmasq
        assert rc == 0 and out["details"]["answers"] == [B], out["details"]
        assert metric(out, "diag_reach_up", target="www.dgr.test", check="dns") == [1.0]
        assert len(metric(out, "diag_reach_dns_seconds", target="www.dgr.test")) == 1
        rc, out = lab.diag("net", "dns", "nothing.dgr.test")
        assert rc == 2 and out["details"]["failure"] == "nxdomain", out["details"]
        assert findings(out, "reach_dns")[0]["cause"] == "dns_nxdomain"
        # The same server asked directly (dnspython), with record types.
        rc, out = lab.diag("net", "dns", "www.dgr.test", "--server", B)
        assert rc == 0 and out["details"]["answers"] == [B] and out["details"]["server"] == B, out["details"]
        rc, out = lab.diag("net", "dns", "nothing.dgr.test", "--server", B)
        assert rc == 2 and out["details"]["failure"] == "nxdomain", out["details"]
        rc, out = lab.diag("net", "dns", "www.dgr.test", "--server", B, "--type", "MX")
        assert rc == 2 and out["details"]["failure"] == "nodata", out["details"]
        rc, out = lab.diag("net", "dns", "www.dgr.test", "--server", ADDR["r2"], "--timeout", "1.5")
        assert rc == 2 and out["details"]["failure"] in ("timeout", "temporary"), out["details"]
        # A resolver address where nothing listens (r2): the query fails as temporary (or times out).
        (NETNS_ETC / "resolv.conf").write_text(f"nameserver {ADDR['r2']}\noptions timeout:1 attempts:1\n")
        rc, out = lab.diag("net", "dns", "www.dgr.test", "--timeout", "5")
        assert rc == 2 and out["details"]["failure"] in ("temporary", "timeout"), out["details"]
        assert findings(out, "reach_dns")[0]["severity"] == "critical"
    finally:
        for f in ("hosts", "resolv.conf"):
            (NETNS_ETC / f).unlink(missing_ok=True)


def test_unprivileged_ping_falls_back_and_says_so(lab: RoutedLab) -> None:
    # nobody, no capabilities: no raw socket. With the default ping_group_range ("1 0") no ping socket either,
    # so it falls back to TCP connects (to b's open port 8080).
    nsx("dgr-a", "sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")
    rc, out = lab.diag("net", "ping", B, "-c", "3", "-i", "0.01", "--tcp-port", "8080", user="nobody")
    d = out["details"]
    assert d["method"] == "tcp" and d["received"] == 3, d
    assert "raw sockets not allowed" in d["note"] and "ping_group_range" in d["note"]
    assert rc == 0
    # Allowed to use ping sockets: the unprivileged ICMP path (SOCK_DGRAM/IPPROTO_ICMP).
    nsx("dgr-a", "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
    try:
        rc, out = lab.diag("net", "ping", B, "-c", "3", "-i", "0.01", user="nobody")
    finally:
        nsx("dgr-a", "sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")
    d = out["details"]
    assert d["method"] == "dgram" and d["received"] == 3, d
    assert "raw sockets not allowed" in d["note"]
    # traceroute cannot fall back: it says why in one line.
    p = nsx(
        "dgr-a",
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        str(Path(PY).with_name("diag")),
        "net",
        "trace",
        B,
        check=False,
    )
    assert p.returncode == 3 and "CAP_NET_RAW" in p.stderr


def test_ping_names_the_router_that_says_unreachable(lab: RoutedLab) -> None:
    run(["ip", "-n", "dgr-r1", "route", "del", "10.233.0.8/30"])
    try:
        # r1 rate-limits these unreachables (its token bucket starts empty, one token a second): 4 probes over 2 s.
        rc, out = lab.diag("net", "ping", B, "-c", "4", "-i", "0.5", "--timeout", "0.5")
    finally:
        run(["ip", "-n", "dgr-r1", "route", "replace", "10.233.0.8/30", "via", ADDR["r2"]])
    assert rc == 2 and out["details"]["received"] == 0
    assert f"{ADDR['r1']}: network unreachable" in out["details"]["errors"]
    (f,) = findings(out, "reach_unreachable")
    assert f"({ADDR['r1']}: network unreachable)" in f["summary"]
