"""The SNMP client: GET, GETNEXT and GETBULK walks over v2c (lean BER, ``ber.py``) and v3 (net-snmp via ezsnmp).

v2c, the hot path of polling, speaks BER on a plain UDP socket: request ids are matched, stale answers
dropped, and max-repetitions adapts (halved on ``tooBig``, a timeout, or an answer slower than half the
timeout). v3 (authNoPriv/authPriv with SHA/AES) goes through ezsnmp, net-snmp's own USM. Every failure
is an :class:`SnmpError` whose one-line message starts with ``host:port``. docs/snmp.md explains the
choice with measurements.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from diag.errors import AuthError, DiagError, Timeout
from diag.network.snmp import ber

if TYPE_CHECKING:
    from diag.inventory import Host

#: One value: (numeric OID without leading dot, type name as in ber.TYPE_NAMES, value).
Var = tuple[str, str, Any]

MAX_REPETITIONS = 100  # net-snmp's default is 10; 100 was the fastest on ifTable (docs/snmp.md)
MIN_REPETITIONS = 1


class SnmpError(DiagError):
    """An SNMP request failed; the message names host:port."""


class SnmpTimeout(SnmpError, Timeout):
    """No (valid) answer within timeout and retries."""


class SnmpAuthError(SnmpError, AuthError):
    """v3 authentication or privacy failed (wrong user, password or protocol)."""


@dataclass(slots=True)
class Target:
    """Where and how to ask: address, port, version and credentials (secrets already revealed)."""

    host: str
    port: int = 161
    version: str = "2c"
    community: str = "public"
    user: str = ""
    auth_protocol: str = "SHA"
    auth_key: str = ""
    priv_protocol: str = "AES"
    priv_key: str = ""
    context: str = ""
    timeout: float = 2.0
    retries: int = 1
    max_repetitions: int = MAX_REPETITIONS
    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"

    @property
    def security_level(self) -> str:
        if self.priv_key:
            return "authPriv"
        return "authNoPriv" if self.auth_key else "noAuthNoPriv"


def parse_target(text: str, default_port: int = 161) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` -> (host, port); ValueError on a bad port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad port in {text!r}")
        return host, int(port)
    return text, default_port


def target_from_host(host: Host, port: int | None = None) -> Target:
    """A Target from an inventory host's resolved ``snmp:`` settings (secret references revealed here)."""
    s = host.snmp

    def secret(key: str) -> str:
        ref = host.snmp_secret(key)
        return ref.reveal() if ref is not None else str(s.get(key) or "")

    return Target(
        host=host.address,
        port=port or int(s.get("port") or 161),
        version=str(s.get("version") or "2c"),
        community=secret("community") or "public",
        user=str(s.get("user") or ""),
        auth_protocol=str(s.get("auth_protocol") or "SHA"),
        auth_key=secret("auth_key"),
        priv_protocol=str(s.get("priv_protocol") or "AES"),
        priv_key=secret("priv_key"),
        context=str(s.get("context") or ""),
        timeout=float(s.get("timeout") or 2.0),
        retries=int(s["retries"]) if s.get("retries") is not None else 1,
        name=host.name,
    )


def format_value(type_name: str, value: Any) -> str:
    """A value as text: strings as UTF-8 (hex bytes when they are not), numbers in decimal, OIDs dotted."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex(" ").upper()
    return "" if value is None else str(value)


class Session(Protocol):
    target: Target

    def get(self, oids: list[str]) -> list[Var]: ...

    def getnext(self, oids: list[str]) -> list[Var]: ...

    def walk(self, root: str, bulk: bool = True) -> list[Var]: ...

    def close(self) -> None: ...


def open_session(target: Target) -> Session:
    """A session for the target's version: lean BER for v1/v2c, net-snmp (ezsnmp) for v3."""
    if target.version in ("1", "2c", "2"):
        return V2Session(target)
    if target.version == "3":
        return V3Session(target)
    raise SnmpError(f"{target.label}: unknown SNMP version {target.version!r}")


# -- v1/v2c ------------------------------------------------------------------------------------------------
class V2Session:
    """v1/v2c over one connected UDP socket (connected, so the kernel drops datagrams from anyone else)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._version = 0 if target.version == "1" else 1
        self._community = target.community.encode()
        self._request_id = random.randrange(1, 1 << 30)
        self.max_repetitions = max(MIN_REPETITIONS, target.max_repetitions)
        #: Requests sent and answers received, for tests and the bench.
        self.requests = 0
        try:
            info = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
        except OSError as e:
            raise SnmpError(f"{target.label}: cannot resolve host: {e.strerror or e}") from None
        family, _, _, _, addr = info[0]
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self._sock.connect(addr)
        except OSError as e:
            self._sock.close()
            raise SnmpError(f"{target.label}: {e.strerror or e}") from None

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> V2Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _oid(self, oid: str) -> bytes:
        try:
            return ber.encode_oid(oid)
        except ber.BerError as e:
            raise SnmpError(f"{self.target.label}: {e}") from None

    def request(
        self, pdu: int, oids: list[bytes], a: int = 0, b: int = 0, attempts: int | None = None
    ) -> tuple[int, int, list[ber.Varbind]]:
        """One request with retries: (error status, error index, varbinds). Raises SnmpTimeout."""
        t = self.target
        tries = t.retries + 1 if attempts is None else attempts
        for _ in range(tries):
            self._request_id = self._request_id % 0x7FFFFFFF + 1
            rid = self._request_id
            msg = ber.encode_request(self._version, self._community, pdu, rid, oids, a, b)
            self.requests += 1
            try:
                self._sock.send(msg)
            except OSError as e:
                raise SnmpError(f"{t.label}: cannot send: {e.strerror or e}") from None
            answer = self._receive(rid, time.monotonic() + t.timeout)
            if answer is not None:
                return answer
        raise SnmpTimeout(self._no_answer(tries))

    def _no_answer(self, tries: int) -> str:
        t = self.target
        return (
            f"{t.label}: no answer: wrong community or host down "
            f"(timeout {t.timeout:g}s, {tries} {'try' if tries == 1 else 'tries'})"
        )

    def _receive(self, rid: int, deadline: float) -> tuple[int, int, list[ber.Varbind]] | None:
        t = self.target
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                return None
            except ConnectionRefusedError:
                raise SnmpError(f"{t.label}: port unreachable (no SNMP agent listening)") from None
            except OSError as e:
                raise SnmpError(f"{t.label}: {e.strerror or e}") from None
            try:
                _version, _community, pdu, got_rid, status, index, varbinds = ber.decode_response(data)
            except ber.BerError as e:
                raise SnmpError(f"{t.label}: malformed answer ({len(data)} bytes): {e}") from None
            if got_rid != rid:  # a late answer to an earlier try: not ours any more
                continue
            if pdu != ber.RESPONSE:
                raise SnmpError(f"{t.label}: answer is not a Response PDU (tag 0x{pdu:02x})")
            return status, index, varbinds

    def _check(self, status: int, index: int, oids: list[bytes]) -> None:
        if status:
            name = ber.ERROR_STATUS[status] if status < len(ber.ERROR_STATUS) else f"error {status}"
            where = f" at {ber.decode_oid(oids[index - 1])}" if 0 < index <= len(oids) else ""
            raise SnmpError(f"{self.target.label}: agent answered {name}{where}")

    def _vars(self, varbinds: list[ber.Varbind]) -> list[Var]:
        names = ber.TYPE_NAMES
        return [(ber.decode_oid(o), names[tag], v) for o, tag, v in varbinds]

    def get(self, oids: list[str]) -> list[Var]:
        """GET; a tooBig answer splits the request in halves."""
        return self._vars(self._get_raw(ber.GET, [self._oid(o) for o in oids]))

    def getnext(self, oids: list[str]) -> list[Var]:
        return self._vars(self._get_raw(ber.GETNEXT, [self._oid(o) for o in oids]))

    def _get_raw(self, pdu: int, oids: list[bytes]) -> list[ber.Varbind]:
        status, index, varbinds = self.request(pdu, oids)
        if status == ber.TOO_BIG and len(oids) > 1:
            half = len(oids) // 2
            return self._get_raw(pdu, oids[:half]) + self._get_raw(pdu, oids[half:])
        self._check(status, index, oids)
        if len(varbinds) != len(oids):
            raise SnmpError(f"{self.target.label}: asked for {len(oids)} values, got {len(varbinds)}")
        return varbinds

    def walk(self, root: str, bulk: bool = True) -> list[Var]:
        """Every value under ``root``, in order (GETBULK unless v1 or ``bulk=False``)."""
        return self._vars(self.walk_raw(self._oid(root), bulk))

    def walk_raw(self, root: bytes, bulk: bool = True) -> list[ber.Varbind]:
        """The walk with OIDs kept as BER bytes (what profile polling uses)."""
        t = self.target
        bulk = bulk and self._version == 1
        out: list[ber.Varbind] = []
        seen: set[bytes] = set()
        seen_add = seen.add
        last = root
        timeouts = 0
        while True:
            reps = self.max_repetitions
            started = time.monotonic()
            try:
                if bulk:
                    status, index, varbinds = self.request(ber.GETBULK, [last], 0, reps, attempts=1)
                else:
                    status, index, varbinds = self.request(ber.GETNEXT, [last], attempts=1)
            except SnmpTimeout:
                # A device may drop large requests: retry smaller, within the configured tries.
                timeouts += 1
                if timeouts > t.retries:
                    where = f" (walk of {ber.decode_oid(root)} stopped after {len(out)} values)" if out else ""
                    raise SnmpTimeout(self._no_answer(timeouts) + where) from None
                self.max_repetitions = max(MIN_REPETITIONS, reps // 2)
                continue
            timeouts = 0
            if status == ber.TOO_BIG and bulk and reps > MIN_REPETITIONS:
                self.max_repetitions = max(MIN_REPETITIONS, reps // 2)
                continue
            if status == 2 and not bulk and self._version == 0:  # v1 noSuchName: the end of the MIB
                return out
            self._check(status, index, [last])
            if not varbinds:
                raise SnmpError(f"{t.label}: empty answer to a walk request at {ber.decode_oid(last)}")
            if bulk and reps > 8 and time.monotonic() - started > t.timeout / 2:
                self.max_repetitions = reps // 2  # slow on large answers: ask for less
            for oid, tag, value in varbinds:
                if tag == ber.END_OF_MIB_VIEW or not oid.startswith(root):
                    return out
                # Bytes order equals OID order except across multi-byte arcs of different lengths
                # (16383 = ff 7f, 16384 = 81 80 00): bytes only pick the rare cases to check exactly, and
                # the seen set catches a cycle whatever the order says.
                if (oid <= last and ber.arcs(oid) <= ber.arcs(last)) or oid in seen:
                    raise SnmpError(
                        f"{t.label}: OIDs not increasing: {ber.decode_oid(oid)} after {ber.decode_oid(last)} (loop)"
                    )
                seen_add(oid)
                out.append((oid, tag, value))
                last = oid


# -- v3 ----------------------------------------------------------------------------------------------------
_EZ_TYPES = {
    "INTEGER": "INTEGER",
    "INTEGER32": "INTEGER",
    "STRING": "OCTET STRING",
    "OCTETSTR": "OCTET STRING",
    "Hex-STRING": "OCTET STRING",
    "OID": "OID",
    "OBJECTID": "OID",
    "IpAddress": "IpAddress",
    "IPADDR": "IpAddress",
    "Counter32": "Counter32",
    "COUNTER": "Counter32",
    "Gauge32": "Gauge32",
    "GAUGE": "Gauge32",
    "UNSIGNED32": "Gauge32",
    "Timeticks": "Timeticks",
    "TICKS": "Timeticks",
    "Counter64": "Counter64",
    "COUNTER64": "Counter64",
    "Opaque": "Opaque",
    "NULL": "NULL",
}


class V3Session:
    """v3 through ezsnmp (net-snmp's USM: engine discovery, key localisation, SHA/AES)."""

    def __init__(self, target: Target) -> None:
        from ezsnmp import Session as EzSession  # type: ignore[import-untyped]

        self.target = target
        if not target.user:
            raise SnmpError(f"{target.label}: SNMPv3 needs a user")
        for what, key in (("auth", target.auth_key), ("priv", target.priv_key)):
            if key and len(key) < 8:  # net-snmp refuses them with only a message on stderr
                raise SnmpAuthError(f"{target.label}: SNMPv3 {what} password must have at least 8 characters")
        if target.priv_key and not target.auth_key:
            raise SnmpAuthError(f"{target.label}: SNMPv3 privacy needs an auth password too")
        kw: dict[str, Any] = {
            "hostname": target.host if ":" not in target.host else f"[{target.host}]",
            "port_number": str(target.port),
            "version": "3",
            "security_username": target.user,
            "security_level": target.security_level,
            "timeout": str(target.timeout),
            "retries": str(target.retries),
            "print_oids_numerically": True,
            "print_full_oids": True,
            "print_enums_numerically": True,
            "print_timeticks_numerically": True,
            "set_max_repeaters_to_num": str(target.max_repetitions),
        }
        if target.auth_key:
            kw |= {"auth_protocol": target.auth_protocol, "auth_passphrase": target.auth_key}
        if target.priv_key:
            kw |= {"privacy_protocol": target.priv_protocol, "privacy_passphrase": target.priv_key}
        if target.context:
            kw["context"] = target.context
        try:
            self._s = EzSession(**kw)
        except Exception as e:  # ezsnmp raises its own classes for bad arguments
            raise self._error(e) from None

    def close(self) -> None:
        self._s.close()

    def _error(self, e: Exception) -> SnmpError:
        text = " ".join(str(e).split()) or type(e).__name__
        low = text.lower()
        label = self.target.label
        if "timeout" in low or "timed out" in low:
            # An agent that cannot decrypt a request drops it silently: a wrong privacy password looks
            # like a dead host, as a wrong community does in v2c.
            why = "host down or wrong privacy password" if self.target.priv_key else "host down"
            return SnmpTimeout(
                f"{label}: no answer: {why} (timeout {self.target.timeout:g}s, {self.target.retries + 1} tries)"
            )
        if "authentication" in low or "decrypt" in low or "unknown user" in low or "usm" in low:
            return SnmpAuthError(f"{label}: SNMPv3 authentication failed for user {self.target.user}: {text}")
        return SnmpError(f"{label}: {text}")

    def _convert(self, results: Any) -> list[Var]:
        out: list[Var] = []
        for r in results:
            # ezsnmp splits the OID into a base and the last arc ("index"), always.
            index = str(r.index or "")
            oid = str(r.oid).lstrip(".") + (f".{index}" if index else "")
            etype = str(r.type)
            # With timeticks printed numerically, ezsnmp puts the number in the type field too.
            kind = "Timeticks" if etype.isdigit() else _EZ_TYPES.get(etype, etype)
            raw = str(r.value)
            if etype.startswith("NOSUCH") or etype == "ENDOFMIBVIEW":
                continue
            value: Any
            if kind in ("INTEGER", "Counter32", "Gauge32", "Timeticks", "Counter64"):
                try:
                    value = int(raw.split()[0])
                except (ValueError, IndexError):
                    raise SnmpError(f"{self.target.label}: {oid}: {kind} value {raw!r} is not a number") from None
            elif kind == "OCTET STRING":
                value = bytes.fromhex(raw) if str(r.type) == "Hex-STRING" else raw.encode()
            elif kind == "NULL" or "No Such" in raw or "No more variables" in raw:
                continue
            else:
                value = raw.lstrip(".")
            out.append((oid, kind, value))
        return out

    def _call(self, method: str, *args: Any) -> list[Var]:
        try:
            return self._convert(getattr(self._s, method)(*args))
        except SnmpError:
            raise
        except Exception as e:
            raise self._error(e) from None

    def get(self, oids: list[str]) -> list[Var]:
        return self._call("get", oids)

    def getnext(self, oids: list[str]) -> list[Var]:
        return self._call("get_next", oids)

    def walk(self, root: str, bulk: bool = True) -> list[Var]:
        out = self._call("bulk_walk" if bulk else "walk", root)
        prefix = root.strip(".") + "."
        return [v for v in out if v[0].startswith(prefix)]
