"""HTTP(S) checks against real http.server instances on loopback (ports 19600-19699): trust, expiry, 5xx, refusal."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from diag.network import reach
from tests.conftest import free_port

pytestmark = pytest.mark.integration

PORTS = range(19600, 19700)


def make_cert(tmp: Path, not_before: dt.datetime, not_after: dt.datetime) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 that can also serve as its own CA (for --cafile)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "diag-reach-test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / "cert.pem", tmp / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return crt, pem


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"diag reach test\n"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads results, not access logs."""


@pytest.fixture
def serve() -> Iterator[Callable[..., int]]:
    """Start an HTTP(S) server in a thread: ``serve(status=200, cert=None)`` returns its port; stopped at teardown."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int = 200, cert: tuple[Path, Path] | None = None) -> int:
        port = free_port(PORTS)
        handler = type("H", (_Handler,), {"status": status})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return port

    try:
        yield start
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def test_https_trusted_with_cafile(serve: Callable[..., int], tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    crt, key = make_cert(tmp_path, now - dt.timedelta(days=1), now + dt.timedelta(days=400))
    port = serve(cert=(crt, key))
    h = reach.http_check(f"https://127.0.0.1:{port}/", cafile=str(crt))
    assert (h.status, h.error, h.verify_error) == (200, "", "")
    assert h.cert_expiry_seconds is not None and 399 * 86400 < h.cert_expiry_seconds <= 400 * 86400
    assert "CN=diag-reach-test" in h.cert_subject
    assert reach.http_result(h).findings == []


def test_https_expired_certificate_is_critical(serve: Callable[..., int], tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    crt, key = make_cert(tmp_path, now - dt.timedelta(days=30), now - dt.timedelta(days=2))
    port = serve(cert=(crt, key))
    h = reach.http_check(f"https://127.0.0.1:{port}/", cafile=str(crt))
    assert h.status == 200  # repeated without verification after the verify error
    assert "expired" in h.verify_error
    r = reach.http_result(h)
    (exp,) = [f for f in r.findings if f.check == "reach_tls_expiry"]
    assert exp.severity == "critical" and exp.cause == "tls_expired"


def test_http_5xx_and_refused(serve: Callable[..., int]) -> None:
    port = serve(status=503)
    h = reach.http_check(f"http://127.0.0.1:{port}/x?y=1")
    assert h.status == 503 and h.cert_expiry_seconds is None
    (f,) = reach.http_result(h).findings
    assert (f.check, f.cause) == ("reach_http", "http_5xx")
    closed = free_port(PORTS)
    h = reach.http_check(f"http://127.0.0.1:{closed}/", timeout=2)
    assert h.status == 0 and "ConnectionRefusedError" in h.error
    (f,) = reach.http_result(h).findings
    assert f.cause == "http_failed" and f.severity == "critical"


def test_not_a_url() -> None:
    with pytest.raises(reach.ReachError, match="not an http"):
        reach.http_check("ftp://127.0.0.1/")


def test_credentials_in_the_url_stay_out_of_labels_and_evidence(serve: Callable[..., int]) -> None:
    port = serve()
    h = reach.http_check(f"http://alice:s3cret@127.0.0.1:{port}/")
    assert h.status == 200 and h.url == f"http://127.0.0.1:{port}/"
    r = reach.http_result(h)
    assert all("s3cret" not in "".join(lv) for m in r.metrics for lv, _ in m.samples)


def test_a_certificate_incident_holds_while_the_server_is_down_and_resolves_on_a_new_certificate(
    tmp_path: Path,
) -> None:
    """No answer is no certificate seen: the expiry incident stays open ("not checked") until a handshake shows one.

    The agent's reach probe feeds the engine (diag.agent.incidents.AgentFeed). A refused request used to have no
    reach_tls_expiry finding, so the expired certificate's incident cleared while the server was down.
    """
    from dataclasses import dataclass, field

    from diag.agent.incidents import AgentFeed
    from diag.incidents.service import IncidentService
    from diag.incidents.settings import from_mapping
    from diag.probes.base import Paths, ProbeOptions
    from diag.probes.reach import ReachCheck, ReachOptions
    from diag.probes.runner import ProbeRunner

    @dataclass
    class Config:
        paths: Paths
        probes: dict[str, ProbeOptions] = field(default_factory=dict)
        hostname: str | None = "agent-1"
        probe_workers: int = 1

    now = dt.datetime.now(dt.UTC)
    expired = make_cert(tmp_path, now - dt.timedelta(days=30), now - dt.timedelta(days=2))
    port = free_port(PORTS)

    def start(cert: tuple[Path, Path]) -> http.server.ThreadingHTTPServer:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    def stop(srv: http.server.ThreadingHTTPServer) -> None:
        srv.shutdown()
        srv.server_close()

    check = ReachCheck(type="http", target=f"https://127.0.0.1:{port}/", timeout=3.0)
    opts = ReachOptions(checks=[check])
    svc = IncidentService(from_mapping({"open_after": 0, "close_after": 0}, tmp_path / "data"))
    runner = ProbeRunner(Config(Paths(state=tmp_path / "state"), {"reach": opts}))
    AgentFeed(svc, runner)
    srv = start(expired)
    try:
        runner.run("reach")
        (inc,) = [i for i in svc.store.query() if i.check_id == "reach_tls_expiry"]
        assert inc.state == "open"
        stop(srv)
        runner.run("reach")  # refused: reach_http opens; the certificate was not seen, so its incident holds
        runner.run("reach")
        assert svc.store.get(inc.id).state == "open"  # type: ignore[union-attr]
        held = [e.text for e in svc.store.events(inc.id) if e.kind == "not_checked"]
        assert len(held) == 1 and "request failed before its certificate was seen" in held[0], held
        srv = start(make_cert(tmp_path, now - dt.timedelta(days=1), now + dt.timedelta(days=400)))
        runner.run("reach")  # a handshake shows a certificate valid for 400 days: looked at, gone, re-checked
        assert svc.store.get(inc.id).state == "resolved"  # type: ignore[union-attr]
    finally:
        stop(srv)
        runner.shutdown()
        svc.close()
