"""HTTP(S) checks: status, time to first byte, TLS certificate expiry."""

from __future__ import annotations

import datetime as dt
import http.client
import ssl
import time
from dataclasses import asdict, dataclass

from diag.model import Evidence, Gap, Result
from diag.network.reach.common import ReachInputError, check_positive


@dataclass(slots=True)
class HttpCheck:
    url: str
    status: int = 0
    seconds: float = 0.0
    error: str = ""
    #: Seconds until the server certificate's notAfter (negative when expired); None for plain HTTP.
    cert_expiry_seconds: float | None = None
    cert_subject: str = ""
    #: Why the certificate was not trusted ("" when trusted or not checked).
    verify_error: str = ""


def _cert_info(der: bytes) -> tuple[float, str]:
    from cryptography import x509  # imported here: only HTTPS checks need it

    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    return (not_after - dt.datetime.now(dt.UTC)).total_seconds(), cert.subject.rfc4514_string()


def http_check(url: str, timeout: float = 5.0, verify: bool = True, cafile: str | None = None) -> HttpCheck:
    """GET ``url``: status, time to the response headers, and for HTTPS the certificate's expiry.

    An untrusted certificate is recorded (``verify_error``) and the request is repeated without verification, so
    that a self-signed or expired certificate still yields its status and expiry.
    """
    from urllib.parse import urlsplit

    check_positive(timeout, "timeout")
    try:
        u = urlsplit(url)
        port = u.port  # ValueError for a port that is not a number or is out of range
    except ValueError as e:
        raise ReachInputError(f"{url}: not an http(s) URL ({e})") from None
    if u.scheme not in ("http", "https") or not u.hostname or port == 0:
        raise ReachInputError(f"{url}: not an http(s) URL (http://HOST[:PORT]/PATH or https://...)")
    host, port = u.hostname, port or (443 if u.scheme == "https" else 80)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    # Credentials in the URL never reach labels or evidence (and are not sent: this check does not log in).
    shown = url if "@" not in u.netloc else url.replace(u.netloc, u.netloc.rpartition("@")[2], 1)
    res = HttpCheck(shown)

    def attempt(ctx: ssl.SSLContext | None) -> None:
        conn: http.client.HTTPConnection
        if ctx is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        start = time.monotonic()
        try:
            conn.connect()
            if isinstance(conn.sock, ssl.SSLSocket):
                der = conn.sock.getpeercert(binary_form=True)
                if der:
                    res.cert_expiry_seconds, res.cert_subject = _cert_info(der)
            conn.request("GET", path, headers={"User-Agent": "diag-reach", "Connection": "close"})
            resp = conn.getresponse()
            res.seconds = time.monotonic() - start
            res.status = resp.status
            resp.read(65536)  # a little of the body; the check is about the answer, not the download
        finally:
            conn.close()

    try:
        if u.scheme == "http":
            attempt(None)
            return res
        ctx = ssl.create_default_context(cafile=cafile)
        if not verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        try:
            attempt(ctx)
        except ssl.SSLCertVerificationError as e:
            res.verify_error = e.verify_message or str(e)
            loose = ssl.create_default_context()
            loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
            attempt(loose)
    except (OSError, http.client.HTTPException) as e:
        res.error = f"{type(e).__name__}: {e}"
    return res


def http_result(h: HttpCheck, cert_warn_days: float = 14.0) -> Result:
    """Status and latency; findings when the request fails, answers 5xx, or the certificate is untrusted or expiring."""
    r = Result()
    up = 1.0 if h.status and h.status < 500 else 0.0
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        up, h.url, "http"
    )
    if h.status:
        r.metric("diag_reach_http_status", "HTTP status code of the answer.", labels=("target",)).add(h.status, h.url)
        r.metric("diag_reach_http_seconds", "Time to the response headers.", labels=("target",)).add(h.seconds, h.url)
    if h.cert_expiry_seconds is not None:
        r.metric(
            "diag_reach_tls_cert_expiry_seconds", "Seconds until the server certificate expires.", labels=("target",)
        ).add(h.cert_expiry_seconds, h.url)
    ev = [Evidence("metric", f"GET {h.url}", h.error or f"status {h.status} in {h.seconds:.3f} s", asdict(h))]
    if h.error:
        r.find("reach_http", "critical", f"{h.url}: request failed: {h.error}", h.url, "http_failed", ev)
        if h.cert_expiry_seconds is None:  # no certificate seen: its expiry or trust incident is not over
            why = f"{h.url}: request failed before its certificate was seen ({h.error})"
            r.gaps.append(Gap(why, frozenset({"reach_tls_expiry", "reach_tls_untrusted"}), frozenset({h.url})))
    elif h.status >= 500:
        r.find("reach_http", "critical", f"{h.url}: server error {h.status}", h.url, "http_5xx", ev)
    if h.cert_expiry_seconds is not None:
        days = h.cert_expiry_seconds / 86400
        if days < 0:
            r.find(
                "reach_tls_expiry",
                "critical",
                f"{h.url}: TLS certificate expired {-days:.1f} days ago",
                h.url,
                "tls_expired",
                ev,
            )
        elif days < cert_warn_days:
            r.find(
                "reach_tls_expiry",
                "warning",
                f"{h.url}: TLS certificate expires in {days:.1f} days (threshold {cert_warn_days:g})",
                h.url,
                "tls_expiring",
                ev,
            )
    if h.verify_error:
        r.find(
            "reach_tls_untrusted",
            "warning",
            f"{h.url}: certificate not trusted: {h.verify_error}",
            h.url,
            "tls_untrusted",
            ev,
        )
    return r
