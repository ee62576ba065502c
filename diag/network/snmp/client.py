"""The SNMP client: GET, GETNEXT and GETBULK walks for v1, v2c and v3 on one engine (``ber.py`` + ``usm.py``).

Every version speaks BER on a plain UDP socket: request ids are matched, stale answers dropped, and
max-repetitions adapts (halved on ``tooBig``, a timeout, or an answer slower than half the timeout). v3
adds the User-based Security Model around the same PDUs (engine discovery, time window, HMAC, AES/DES),
with the code the trap receiver uses. Values come back exactly as the agent encoded them (type tag and
octets), which is what net-snmp's printed form through ezsnmp did not give (docs/snmp.md, measured).
Walks are tolerant: an agent that answers out of order or in a loop gives what it sent, with a warning.
Every failure is an :class:`SnmpError` whose one-line message starts with ``host:port``.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Container, Iterator
from itertools import pairwise

from diag.network.snmp import ber
from diag.network.snmp.base import (
    MAX_REPETITIONS,
    MIN_REPETITIONS,
    SnmpAuthError,
    SnmpError,
    SnmpInputError,
    SnmpTimeout,
    Target,
    Var,
    parse_target,
    target_from_host,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: a walk command's start-up (docs/snmp.md)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from diag.network.snmp.v3 import Usm

    _T = TypeVar("_T")

__all__ = [
    "MAX_REPETITIONS", "MIN_REPETITIONS", "Session", "SnmpAuthError", "SnmpError", "SnmpInputError", "SnmpTimeout",
    "Target", "Var",
    "Walked", "format_value", "open_session", "parse_target", "target_from_host",
]  # fmt: skip


#: Characters that make a string hex, as net-snmp prints it (Hex-STRING): C0 controls but tab, LF, CR; DEL;
#: C1. A MAC address such as 00 50 56 01 01 43 is valid UTF-8 and was written as NUL, "PV" and control bytes.
_UNPRINTABLE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


def format_value(type_name: str, value: Any) -> str:
    """A value as text: strings as UTF-8 (hex bytes when they are not, or hold control characters), numbers in
    decimal, OIDs dotted. An Opaque that is no float or 64-bit integer comes as bytes: hex, as net-snmp's."""
    if isinstance(value, bytes):
        try:
            text = value.decode()
        except UnicodeDecodeError:
            return value.hex(" ").upper()
        # isprintable() is the fast path (C); it is also False for tab/LF/CR and Unicode spaces, kept as text.
        if text.isprintable() or not re.search(_UNPRINTABLE, text):
            return text
        return value.hex(" ").upper()
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


class Walked(list["_T"]):
    """The values of a walk in the order received; ``warning`` says why it stopped early ('' if it did not);
    ``disorder`` that the agent's order went back inside an answer, every value kept ('' if it did not)."""

    warning: str = ""
    disorder: str = ""


# -- the engine -----------------------------------------------------------------------------------------
NO_SUCH_NAME = 2
Answer = tuple[int, int, list[ber.Varbind]]
#: usmStatsNotInTimeWindows.0 and usmStatsUnknownEngineIDs.0: Reports after which a v3 request is sent again.
RESEND_REPORTS = (ber.encode_oid("1.3.6.1.6.3.15.1.1.2.0"), ber.encode_oid("1.3.6.1.6.3.15.1.1.4.0"))


class _Community:
    """v1/v2c framing: the community in clear, the PDU as it is."""

    def __init__(self, target: Target) -> None:
        self.version = 0 if target.version == "1" else 1
        self.community = target.community.encode()

    def encode(self, pdu: int, rid: int, oids: list[bytes], a: int, b: int) -> bytes:
        return ber.encode_request(self.version, self.community, pdu, rid, oids, a, b)

    def decode(self, data: bytes) -> tuple[int, int, int, int, list[ber.Varbind]] | None:
        """(pdu tag, request id, status, index, varbinds), or None for a message that is not ours."""
        version, _community, pdu, rid, status, index, varbinds = ber.decode_response(data)
        if version != self.version:
            return None
        return pdu, rid, status, index, varbinds


def report_error(target: Target, oid: bytes) -> SnmpAuthError:
    """The error for a v3 Report the agent sent instead of an answer (its counter's OID says why)."""
    from diag.network.snmp.v3 import REPORT_OIDS

    why = REPORT_OIDS.get(oid, f"report {ber.decode_oid(oid) if oid else '(empty)'}")
    return SnmpAuthError(f"{target.label}: SNMPv3 authentication failed for user {target.user}: {why}")


def open_session(target: Target) -> Session:
    """A session for the target's version (v1, v2c or v3); SnmpError names a bad version."""
    if target.version in ("1", "2c", "2", "3"):
        return Session(target)
    raise SnmpError(f"{target.label}: unknown SNMP version {target.version!r}")


class Session:
    """One agent over one connected UDP socket (connected, so the kernel drops datagrams from anyone else)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._codec: _Community | Usm
        if target.version == "3":
            from diag.network.snmp.v3 import Usm  # only for v3: hashing and ciphers cost start-up time

            self._codec = Usm(target)
        elif target.version in ("1", "2c", "2"):
            self._codec = _Community(target)
        else:
            raise SnmpError(f"{target.label}: unknown SNMP version {target.version!r}")
        self._version = 0 if target.version == "1" else 1  # GETBULK from v2c on
        self._request_id = int.from_bytes(os.urandom(4), "big") % (1 << 30) + 1
        self.max_repetitions = max(MIN_REPETITIONS, target.max_repetitions)
        #: Requests sent, for tests and the bench.
        self.requests = 0
        try:
            # An ASCII name or address as bytes: a str host makes socket load the IDNA codec (unicodedata,
            # stringprep: ~1 ms of a walk command's start); a non-ASCII name still goes through it.
            host = target.host.encode("ascii") if target.host.isascii() else target.host
            info = socket.getaddrinfo(host, target.port, type=socket.SOCK_DGRAM)
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

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode_oid(self, oid: str) -> bytes:
        """The BER form of a dotted OID; InvalidInput (naming the target) when it is not one: a bad OID is the
        caller's input, not a failure of the agent (exit 2 on the command line, not 3)."""
        try:
            return ber.encode_oid(oid)
        except ber.BerError as e:
            raise SnmpInputError(f"{self.target.label}: {e}") from None

    # -- one request ------------------------------------------------------------------------------------
    def request(self, pdu: int, oids: list[bytes], a: int = 0, b: int = 0, attempts: int | None = None) -> Answer:
        """One request with retries: (error status, error index, varbinds). Raises SnmpTimeout."""
        tries = self.target.retries + 1 if attempts is None else attempts
        return self._await(self.send(pdu, oids, a, b), pdu, oids, a, b, tries)

    def send(self, pdu: int, oids: list[bytes], a: int, b: int) -> int:
        """Send one request (after v3 engine discovery, the first time); returns its request id."""
        codec = self._codec
        if not isinstance(codec, _Community) and not codec.engine_id:
            self._discover(self.target.retries + 1)
        self._request_id = self._request_id % 0x7FFFFFFF + 1
        rid = self._request_id
        msg = codec.encode(pdu, rid, oids, a, b)
        self.requests += 1
        try:
            self._sock.send(msg)
        except OSError as e:
            raise SnmpError(f"{self.target.label}: cannot send: {e.strerror or e}") from None
        return rid

    def _await(self, rid: int, pdu: int, oids: list[bytes], a: int, b: int, tries: int) -> Answer:
        """The answer to request ``rid``, sending it again on a timeout, up to ``tries`` sends in all."""
        t = self.target
        sent, resent = 1, 0
        while True:
            answer = self._receive(rid, time.monotonic() + t.timeout)
            if answer is None:
                if sent >= tries:
                    raise SnmpTimeout(self._no_answer(tries))
                sent += 1
                rid = self.send(pdu, oids, a, b)
                continue
            tag, status, index, varbinds = answer
            if tag == ber.REPORT:
                oid = varbinds[0][0] if varbinds else b""
                if oid in RESEND_REPORTS and resent < 2:
                    resent += 1  # the agent told us its boots/time (or engine ID): send again, not a try
                    rid = self.send(pdu, oids, a, b)
                    continue
                raise report_error(t, oid)
            return status, index, varbinds

    def _discover(self, tries: int) -> None:
        """RFC 3414 4: an unauthenticated, empty request; the agent's Report names its engine ID, boots and time."""
        codec = self._codec
        assert not isinstance(codec, _Community)
        for _ in range(tries):
            self._request_id = self._request_id % 0x7FFFFFFF + 1
            rid = self._request_id
            self.requests += 1
            try:
                self._sock.send(codec.encode(ber.GET, rid, [], 0, 0, level=0))
            except OSError as e:
                raise SnmpError(f"{self.target.label}: cannot send: {e.strerror or e}") from None
            answer = self._receive(rid, time.monotonic() + self.target.timeout)
            if answer is not None and codec.engine_id:
                return
        raise SnmpTimeout(self._no_answer(tries))

    def _no_answer(self, tries: int) -> str:
        t = self.target
        if t.version == "3":
            # An agent that cannot decrypt a request drops it silently: a wrong privacy password looks
            # like a dead host, as a wrong community does in v2c.
            why = "host down or wrong privacy password" if t.priv_key else "host down"
        else:
            why = "wrong community or host down"
        return f"{t.label}: no answer: {why} (timeout {t.timeout:g}s, {tries} {'try' if tries == 1 else 'tries'})"

    def _receive(self, rid: int, deadline: float) -> tuple[int, int, int, list[ber.Varbind]] | None:
        got = self.receive_any((rid,), deadline)
        return None if got is None else got[1:]

    def receive_any(self, rids: Container[int], deadline: float) -> tuple[int, int, int, int, list[ber.Varbind]] | None:
        """The next answer to one of ``rids`` before ``deadline``: (request id, PDU tag, status, index, varbinds).

        Answers to other (earlier, retried) requests are dropped; None when the deadline passes.
        """
        t = self.target
        codec = self._codec
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
                got = codec.decode(data)
            except ber.BerError as e:
                raise SnmpError(f"{t.label}: malformed answer ({len(data)} bytes): {e}") from None
            if got is None:
                continue
            pdu, got_rid, status, index, varbinds = got
            if got_rid not in rids:  # a late answer to an earlier try: not ours any more
                continue
            if pdu not in (ber.RESPONSE, ber.REPORT):
                raise SnmpError(f"{t.label}: answer is not a Response PDU (tag 0x{pdu:02x})")
            return got_rid, pdu, status, index, varbinds

    def check(self, status: int, index: int, oids: list[bytes]) -> None:
        """SnmpError for an error status in an answer, naming the OID the agent pointed at."""
        if status:
            name = ber.ERROR_STATUS[status] if status < len(ber.ERROR_STATUS) else f"error {status}"
            where = f" at {ber.decode_oid(oids[index - 1])}" if 0 < index <= len(oids) else ""
            raise SnmpError(f"{self.target.label}: agent answered {name}{where}")

    @staticmethod
    def _vars(varbinds: list[ber.Varbind]) -> list[Var]:
        names = ber.TYPE_NAMES
        return [(ber.decode_oid(o), names[tag], v) for o, tag, v in varbinds]

    # -- GET and GETNEXT --------------------------------------------------------------------------------
    def get(self, oids: list[str]) -> list[Var]:
        """GET; a tooBig answer splits the request in halves; v1's noSuchName drops that OID and asks again."""
        return self._vars(self._get_raw(ber.GET, [self.encode_oid(o) for o in oids]))

    def getnext(self, oids: list[str]) -> list[Var]:
        return self._vars(self._get_raw(ber.GETNEXT, [self.encode_oid(o) for o in oids]))

    def _get_raw(self, pdu: int, oids: list[bytes]) -> list[ber.Varbind]:
        if not oids:
            return []
        status, index, varbinds = self.request(pdu, oids)
        if status == ber.TOO_BIG and len(oids) > 1:
            half = len(oids) // 2
            return self._get_raw(pdu, oids[:half]) + self._get_raw(pdu, oids[half:])
        if status == NO_SUCH_NAME and self._version == 0 and 0 < index <= len(oids):
            # v1 fails the whole request for one missing OID; like snmpget, ask again without it. The
            # missing one reads as v2c would give it: noSuchObject (GET) or endOfMibView (GETNEXT).
            missing = oids[index - 1]
            rest = self._get_raw(pdu, oids[: index - 1] + oids[index:])
            tag = ber.NO_SUCH_OBJECT if pdu == ber.GET else ber.END_OF_MIB_VIEW
            return [*rest[: index - 1], (missing, tag, None), *rest[index - 1 :]]
        self.check(status, index, oids)
        if len(varbinds) != len(oids):
            raise SnmpError(f"{self.target.label}: asked for {len(oids)} values, got {len(varbinds)}")
        return varbinds

    # -- walks ------------------------------------------------------------------------------------------
    def walk(
        self, root: str, bulk: bool = True, check_increasing: bool = True, get_fallback: bool = False
    ) -> Walked[Var]:
        """Every value under ``root`` in the order received (GETBULK unless v1 or ``bulk=False``).

        ``get_fallback``: a walk that finds nothing under ``root`` asks for ``root`` itself (net-snmp's
        snmpwalk does the same, so walking a scalar instance such as sysName.0 gives its value).
        """
        raw = self.walk_raw(self.encode_oid(root), bulk, check_increasing)
        out: Walked[Var] = Walked(self._vars(raw))
        out.warning, out.disorder = raw.warning, raw.disorder
        if not out and not raw.warning and get_fallback:
            got = self.get([root])
            out.extend(v for v in got if v[1] not in ("noSuchObject", "noSuchInstance", "endOfMibView"))
        return out

    def walk_raw(self, root: bytes, bulk: bool = True, check_increasing: bool = True) -> Walked[ber.Varbind]:
        """The walk with OIDs kept as BER bytes (what profile polling uses); see :meth:`walk_chunks`."""
        out: Walked[ber.Varbind] = Walked()
        for chunk in self.walk_chunks(root, bulk, check_increasing, out):
            out += chunk
        return out

    def walk_chunks(
        self, root: bytes, bulk: bool = True, check_increasing: bool = True, result: Walked[Any] | None = None
    ) -> Iterator[list[ber.Varbind]]:
        """The values under ``root`` as they arrive, one list per answer.

        The request for the next answer is already on its way when a list is handed out, so what the
        caller does with it (print it, turn it into metrics) overlaps the agent's work on the next one.

        Order is checked as snmpbulkwalk checks it: each OID against the OID *asked for*, not against the one
        before it in the answer. An answer whose OIDs are out of order among themselves but all after the
        request (H3C and ZTE switches answer so) is kept whole, with ``result.disorder`` saying so; an OID
        not after the request ends the walk after that answer, keeping it, and sets ``result.warning``
        (``check_increasing=False``, net-snmp's ``-Cc``, walks on). An OID that came before is not handed
        out twice; an answer that brings nothing new is a loop and always ends the walk.
        """
        t = self.target
        bulk = bulk and self._version == 1
        seen: set[bytes] = set()
        seen_add = seen.add
        kept = 0
        last = root
        timeouts = 0
        reps = self.max_repetitions
        rid = self.send(ber.GETBULK, [last], 0, reps) if bulk else self.send(ber.GETNEXT, [last], 0, 0)
        started = time.monotonic()
        while True:
            try:
                if bulk:
                    status, index, varbinds = self._await(rid, ber.GETBULK, [last], 0, reps, 1)
                else:
                    status, index, varbinds = self._await(rid, ber.GETNEXT, [last], 0, 0, 1)
            except SnmpTimeout:
                # A device may drop large requests: retry smaller, within the configured tries.
                timeouts += 1
                if timeouts > t.retries:
                    where = f" (walk of {ber.decode_oid(root)} stopped after {kept} values)" if kept else ""
                    raise SnmpTimeout(self._no_answer(timeouts) + where) from None
                reps = self.max_repetitions = max(MIN_REPETITIONS, reps // 2)
                rid = self.send(ber.GETBULK, [last], 0, reps) if bulk else self.send(ber.GETNEXT, [last], 0, 0)
                started = time.monotonic()
                continue
            timeouts = 0
            if status == ber.TOO_BIG and bulk and reps > MIN_REPETITIONS:
                reps = self.max_repetitions = max(MIN_REPETITIONS, reps // 2)
                rid = self.send(ber.GETBULK, [last], 0, reps)
                started = time.monotonic()
                continue
            if status == NO_SUCH_NAME and not bulk and self._version == 0:  # v1 noSuchName: the end of the MIB
                return
            self.check(status, index, [last])
            if not varbinds:
                raise SnmpError(f"{t.label}: empty answer to a walk request at {ber.decode_oid(last)}")
            if bulk and reps > 8 and time.monotonic() - started > t.timeout / 2:
                self.max_repetitions = reps // 2  # slow on large answers: ask for less
            done = False
            oids = [vb[0] for vb in varbinds]
            end = varbinds[-1]
            if (
                end[1] != ber.END_OF_MIB_VIEW
                and end[0].startswith(root)
                and oids[0] > last
                and all(a < b for a, b in pairwise(oids))
                and seen.isdisjoint(oids)
            ):
                # The usual answer, checked in bulk: increasing bytes, inside the subtree (the first and the
                # last are, so all between are), none seen before. The loop below is for the others.
                seen.update(oids)
                last = end[0]
                kept += len(varbinds)
                reps = self.max_repetitions
                rid = self.send(ber.GETBULK, [last], 0, reps) if bulk else self.send(ber.GETNEXT, [last], 0, 0)
                started = time.monotonic()
                yield varbinds
                continue
            chunk: list[ber.Varbind] = []
            append = chunk.append
            asked = prev = last
            why = ""
            for oid, tag, value in varbinds:
                if tag == ber.END_OF_MIB_VIEW or not oid.startswith(root):
                    done = True
                    break
                # Bytes order equals OID order except across multi-byte arcs of different lengths
                # (16383 = ff 7f, 16384 = 81 80 00): bytes only pick the rare cases to check exactly.
                back = check_increasing and oid <= asked and ber.arcs(oid) <= ber.arcs(asked)
                if back:
                    # Not after the OID asked for: the walk ends after this answer, which is kept, as
                    # snmpbulkwalk prints it too (the values are good, only the agent's order is not).
                    why = why or f"OIDs not increasing: {ber.decode_oid(oid)} after {ber.decode_oid(asked)}"
                if oid in seen:  # the agent went back inside an answer and repeats what it gave: kept once
                    continue
                disorder = not back and check_increasing and oid < prev and ber.arcs(oid) < ber.arcs(prev)
                if disorder and result is not None:
                    result.disorder = result.disorder or (
                        f"{t.label}: OIDs out of order inside an answer ({ber.decode_oid(oid)} after "
                        f"{ber.decode_oid(prev)}); every value kept"
                    )
                seen_add(oid)
                append((oid, tag, value))
                prev = last = oid
            if not why and not done and not chunk:
                why = f"OID {ber.decode_oid(varbinds[-1][0])} came again after {ber.decode_oid(asked)} (loop)"
            if why:
                if result is not None:
                    result.warning = (
                        f"{t.label}: {why}: walk of {ber.decode_oid(root)} stopped, {kept + len(chunk)} values kept"
                        + (" (--no-check-increasing walks on past this)" if "increasing" in why else "")
                    )
                done = True
            kept += len(chunk)
            if not done:  # ask for the next answer before handing this one out
                reps = self.max_repetitions
                rid = self.send(ber.GETBULK, [last], 0, reps) if bulk else self.send(ber.GETNEXT, [last], 0, 0)
                started = time.monotonic()
            if chunk:
                yield chunk
            if done:
                return
