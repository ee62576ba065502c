"""Service handshakes: SMTP, IMAP, FTP and MySQL greet before any credentials (a live service, not an open port)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from diag.model import Evidence, Result
from diag.network.reach.common import ReachInputError, check_port, check_positive, resolve
from diag.network.reach.packets import (
    PacketError,
    parse_mysql_greeting,
)

Service = Literal["smtp", "imap", "ftp", "mysql"]
SERVICE_PORTS: dict[str, int] = {"smtp": 25, "imap": 143, "ftp": 21, "mysql": 3306}


@dataclass(slots=True)
class Handshake:
    target: str
    port: int
    service: str
    ok: bool
    seconds: float
    #: The server's first words (banner line(s) or parsed greeting), capped.
    banner: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class _Lines:
    """CRLF lines from a socket, with a per-read timeout (the servers talk line by line)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def line(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
            if len(self.buf) > 65536:
                raise ConnectionError("line longer than 64 KiB")
        raw, self.buf = self.buf.split(b"\n", 1)
        return raw.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self) -> tuple[int, list[str]]:
        """An SMTP/FTP reply: code and its lines (``250-...`` continues, ``250 ...`` ends)."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        code = lines[-1][:3]
        if not code.isdigit():
            raise ConnectionError(f"not a reply line: {lines[-1][:80]!r}")
        return int(code), lines


def talk_smtp(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    rd = _Lines(sock)
    code, lines = rd.reply()
    if code != 220:
        return False, "\n".join(lines), {"code": code}
    sock.sendall(b"EHLO diag.invalid\r\n")
    ecode, elines = rd.reply()
    sock.sendall(b"QUIT\r\n")
    ext = [ln[4:].split()[0] for ln in elines[1:] if len(ln) > 4]
    return ecode == 250, "\n".join(lines + elines), {"code": code, "ehlo_code": ecode, "extensions": ext}


def talk_ftp(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    rd = _Lines(sock)
    code, lines = rd.reply()
    with contextlib.suppress(OSError):
        sock.sendall(b"QUIT\r\n")
    return code == 220, "\n".join(lines), {"code": code}


def talk_imap(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    rd = _Lines(sock)
    line = rd.line()
    with contextlib.suppress(OSError):
        sock.sendall(b"a1 LOGOUT\r\n")
    status = line.split(" ", 2)[1] if line.startswith("* ") and " " in line[2:] else ""
    return line.startswith(("* OK", "* PREAUTH")), line, {"status": status or line[:20]}


def talk_mysql(sock: socket.socket) -> tuple[bool, str, dict[str, Any]]:
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:3], "little"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    try:
        g = parse_mysql_greeting(data)
    except PacketError as e:
        return False, data[:80].hex(), {"parse_error": str(e)}
    if g.error_code:
        return False, f"ERROR {g.error_code}: {g.error_message}", asdict(g)
    return True, f"protocol {g.protocol}, server {g.server_version}", asdict(g)


TALKERS: dict[str, Callable[[socket.socket], tuple[bool, str, dict[str, Any]]]] = {
    "smtp": talk_smtp,
    "imap": talk_imap,
    "ftp": talk_ftp,
    "mysql": talk_mysql,
}


def service_check(target: str, service: str, port: int | None = None, timeout: float = 5.0) -> Handshake:
    """Connect and run the first steps of ``service``'s protocol (greeting; EHLO for SMTP), then leave politely."""
    if service not in TALKERS:
        raise ReachInputError(f"{service}: unknown service (known: {', '.join(sorted(TALKERS))})")
    port = check_port(port) if port is not None else SERVICE_PORTS[service]
    check_positive(timeout, "timeout")
    address = resolve(target)
    start = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            ok, banner, detail = TALKERS[service](sock)
    except (OSError, ConnectionError) as e:
        err = "timeout" if isinstance(e, TimeoutError) else (os.strerror(e.errno) if e.errno else str(e))
        return Handshake(target, port, service, False, time.monotonic() - start, error=err)
    return Handshake(target, port, service, ok, time.monotonic() - start, banner[:1000], detail)


def service_result(h: Handshake) -> Result:
    r = Result()
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        1.0 if h.ok else 0.0, h.target, h.service
    )
    if h.ok:
        r.metric(
            "diag_reach_handshake_seconds", "Time to connect and complete the greeting.", labels=("target", "service")
        ).add(h.seconds, h.target, h.service)
    else:
        why = h.error or f"unexpected greeting: {h.banner.splitlines()[0][:120] if h.banner else '(empty)'}"
        r.find(
            "reach_service",
            "critical",
            f"{h.target}:{h.port}: {h.service} handshake failed: {why}",
            f"{h.target}:{h.port}/{h.service}",
            "handshake_failed",
            [
                Evidence(
                    "text", f"{h.service} handshake with {h.target}:{h.port}", h.banner, {"error": h.error, **h.detail}
                )
            ],
        )
    return r
