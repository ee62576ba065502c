"""The SNMP trap receiver: v1/v2c traps, v2c/v3 informs and v3 traps on UDP, turned into events and findings.

One thread reads every listening socket (IPv4 and IPv6). Each datagram goes through
:meth:`TrapReceiver.handle`, which never raises: a source outside ``allow`` or over its rate, a
malformed packet, a wrong community, an unknown v3 user, a bad digest or a message outside the time
window is counted in ``diag_snmp_traps_rejected_total{reason}`` and logged at most once a minute per
source and reason. An accepted notification is counted in ``diag_snmp_traps_received_total{trap}``,
kept in a short history, and handed as findings to ``on_finding``. Informs are answered with a
Response-PDU; for v3 informs the receiver is the authoritative engine and answers engine-ID discovery
with a Report (usmStatsUnknownEngineIDs). docs/traps.md has the whole story.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from diag.model import Finding, Metric
from diag.network.snmp import ber, usm
from diag.network.snmp.ber import BerError
from diag.network.traps.events import (
    SNMP_TRAP_ADDRESS,
    SNMP_TRAP_ENTERPRISE,
    SNMP_TRAP_OID,
    STANDARD_TRAPS,
    SYS_UPTIME,
    UNKNOWN,
    TrapEvent,
    v1_trap_oid,
)

if TYPE_CHECKING:
    from diag.inventory import Inventory
    from diag.network.traps.config import TrapConfig

log = logging.getLogger(__name__)

#: Rejection reasons (the ``reason`` label): fixed, so the label stays low-cardinality.
REASONS = (
    "not_allowed",
    "rate_limited",
    "malformed",
    "unsupported_version",
    "unexpected_pdu",
    "bad_community",
    "unknown_engine_id",
    "unknown_user",
    "unsupported_security_level",
    "bad_auth",
    "not_in_time_window",
    "decrypt_failed",
    "error",
)
LOG_EVERY = 60.0  # seconds between log lines for the same source and reason
MAX_SOURCES = 4096  # rate-limit buckets and log notes kept; the oldest go first

FindingSink = Callable[[list[Finding]], object]
EventSink = Callable[[TrapEvent], object]


class _Buckets:
    """Token buckets per source address, at most MAX_SOURCES of them (a spoofed flood evicts old ones)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._b: dict[str, tuple[float, float]] = {}

    def allow(self, source: str, now: float) -> bool:
        tokens, last = self._b.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        self._b[source] = (tokens - 1.0 if ok else tokens, now)
        if len(self._b) > MAX_SOURCES:
            del self._b[next(iter(self._b))]
        return ok


def _norm_source(address: str) -> str:
    """The source as text, IPv4-mapped IPv6 (dual-stack sockets) shown as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class TrapReceiver:
    """Receives notifications on the configured addresses; ``handle`` is the whole protocol, sockets aside."""

    def __init__(
        self,
        config: TrapConfig,
        inventory: Inventory | None = None,
        on_finding: FindingSink | None = None,
        on_event: EventSink | None = None,
        engine: tuple[bytes, int] | None = None,
    ) -> None:
        from diag.network.traps.config import engine_identity

        self.config = config
        self.on_finding = on_finding
        self.on_event = on_event
        self.engine_id, self.boots = engine if engine is not None else engine_identity(config, None)
        self._started = time.monotonic()
        self._buckets = _Buckets(config.rate_limit, config.burst)
        self._hosts: dict[str, str] = {}
        if inventory is not None:
            for h in inventory.hosts.values():
                try:
                    self._hosts.setdefault(str(ipaddress.ip_address(h.address)), h.name)
                except ValueError:
                    continue  # a DNS name: resolving it here would ask the resolver; match by IP only
        self.received: dict[str, int] = {}
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.informs_acknowledged = 0
        self.history: deque[TrapEvent] = deque(maxlen=max(1, config.history))
        #: Bumped on every change of the counters (the exporter caches what it rendered per generation).
        self.generation = 0
        self._notes: dict[tuple[str, str], tuple[float, int]] = {}
        self._remote_times: dict[bytes, tuple[int, int, float]] = {}  # engine -> (boots, time, when seen)
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- sockets -------------------------------------------------------------------------------------
    def bind(self) -> list[tuple[str, int]]:
        """Open every listening socket (OSError names the address); returns the bound (host, port)s."""
        bound = []
        for host, port in self.config.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # [::] and 0.0.0.0 side by side
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # absorb bursts (link flaps)
                s.bind((host, port))
            except OSError as e:
                s.close()
                self.close()
                where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if port < 1024 else ""
                raise OSError(e.errno, f"cannot listen for traps on udp {where}: {e.strerror}{hint}") from None
            s.setblocking(False)
            self._socks.append(s)
            bound.append(s.getsockname()[:2])
        return bound

    def start(self) -> None:
        if not self._socks:
            self.bind()
        self._thread = threading.Thread(target=self._loop, name="snmp-traps", daemon=True)
        self._thread.start()
        log.info("listening for SNMP traps on %s", ", ".join(_label(s.getsockname()) for s in self._socks))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.close()

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self._socks = []

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self._socks:
            sel.register(s, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.5):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    while True:  # drain: a burst of traps is read in one wake-up
                        try:
                            data, addr = sock.recvfrom(65535)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as e:  # an ICMP error queued on the socket: not fatal
                            log.debug("trap socket: %s", e)
                            break
                        reply = self.handle(data, addr)
                        if reply is not None:
                            try:
                                sock.sendto(reply, addr)
                            except OSError as e:
                                self._note(_norm_source(addr[0]), "error", f"cannot answer: {e.strerror}")
        finally:
            sel.close()

    # -- the protocol ----------------------------------------------------------------------------------
    def engine_time(self) -> int:
        return int(time.monotonic() - self._started)

    def handle(self, data: bytes, addr: Sequence[object]) -> bytes | None:
        """Process one datagram from ``addr``; the answer to send back (Response, Report) or None."""
        source, port = _norm_source(str(addr[0])), int(addr[1])  # type: ignore[call-overload]
        try:
            if self.config.allow and not self._allowed(source):
                return self._reject(source, "not_allowed", "source not in traps.allow")
            if not self._buckets.allow(source, time.monotonic()):
                return self._reject(source, "rate_limited", f"more than {self.config.rate_limit:g} datagrams/s")
            tag, pos, end = ber.read_tlv(data, 0, len(data))
            if tag != 0x30:
                raise BerError(f"first tag 0x{tag:02x}")
            version, _ = ber.read_int(data, pos, end)
            if version in (0, 1):
                return self._community(data, source, port)
            if version == 3:
                return self._v3(data, source, port)
            return self._reject(source, "unsupported_version", f"SNMP version field {version}")
        except BerError as e:
            return self._reject(source, "malformed", f"{len(data)} bytes: {e}")
        except Exception as e:  # one bad datagram must never stop the receiver; the traceback goes to the log
            log.exception("trap from %s: unexpected error", source)
            return self._reject(source, "error", f"{type(e).__name__}: {e}")

    def _allowed(self, source: str) -> bool:
        try:
            ip = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(ip in net for net in self.config.allow)

    def _community(self, data: bytes, source: str, port: int) -> bytes | None:
        version, community, pos, end = ber.decode_community_header(data)
        ok = False
        for c in self.config.communities:  # every one compared, each in constant time
            ok |= hmac.compare_digest(community, c)
        if not ok:
            return self._reject(source, "bad_community", f"v{'1' if version == 0 else '2c'} community not accepted")
        if pos >= end:
            raise BerError("no PDU")
        tag = data[pos]
        if version == 0:
            if tag != ber.TRAP_V1:
                return self._reject(source, "unexpected_pdu", f"v1 PDU 0x{tag:02x} is not a Trap")
            enterprise, agent, generic, specific, stamp, vbs = ber.decode_trap_v1(data, pos, end)
            oid = v1_trap_oid(enterprise, generic, specific)
            shown = [
                (SYS_UPTIME, "Timeticks", str(stamp)),
                (SNMP_TRAP_OID, "OID", oid),
                *_shown(vbs),
                (SNMP_TRAP_ADDRESS, "IpAddress", agent),
                (SNMP_TRAP_ENTERPRISE, "OID", enterprise),
            ]
            self._deliver(source, port, "1", "trap", shown)
            return None
        pdu_tag, rid, _, _, vbs, span = ber.decode_pdu(data, pos, end)
        if pdu_tag not in (ber.TRAP_V2, ber.INFORM):
            return self._reject(source, "unexpected_pdu", f"PDU 0x{pdu_tag:02x} is neither a Trap nor an Inform")
        inform = pdu_tag == ber.INFORM
        self._deliver(source, port, "2c", "inform" if inform else "trap", _shown(vbs))
        if not inform:
            return None
        with self._lock:
            self.informs_acknowledged += 1
        body = usm.pdu(ber.RESPONSE, rid, data[span[0] : span[1]])
        return ber.tlv(0x30, ber.enc_int(1) + ber.tlv(ber.OCTET_STRING, community) + body)

    def _v3(self, data: bytes, source: str, port: int) -> bytes | None:
        msg = usm.parse_message(data)
        level = msg.flags & (usm.FLAG_AUTH | usm.FLAG_PRIV)
        reportable = bool(msg.flags & usm.FLAG_REPORTABLE)
        if level == usm.FLAG_PRIV:
            raise BerError("privacy without authentication")
        authoritative = msg.engine_id == self.engine_id
        if not authoritative and reportable:
            # A confirmed request (an Inform, or net-snmp's discovery probe) for another engine: tell the
            # sender who we are (RFC 3414 3.2 step 3), unauthenticated, with our boots and time.
            self._reject(source, "unknown_engine_id", "", log_it=False)
            return self._report(msg, usm.UNKNOWN_ENGINE_IDS, "unknown_engine_id")
        user = self.config.users.get(msg.user)
        name = msg.user.decode(errors="replace")
        if user is None:
            self._reject(source, "unknown_user", f"v3 user {name!r} is not configured")
            return self._report(msg, usm.UNKNOWN_USER_NAMES, "unknown_user") if reportable else None
        if level != user.level:
            self._reject(source, "unsupported_security_level", f"v3 user {name}: security level {level} not allowed")
            return self._report(msg, usm.UNSUPPORTED_SEC_LEVELS, "unsupported_security_level") if reportable else None
        auth_key, priv_key = user.keys(msg.engine_id) if level else (b"", b"")
        if level and not msg.authentic(user, auth_key):
            self._reject(source, "bad_auth", f"v3 user {name}: wrong digest (auth password or protocol)")
            return self._report(msg, usm.WRONG_DIGESTS, "bad_auth") if reportable else None
        if level and not self._timely(msg, authoritative):
            self._reject(source, "not_in_time_window", f"v3 user {name}: engine boots/time out of the window")
            if reportable and authoritative:
                return self._report(msg, usm.NOT_IN_TIME_WINDOWS, "not_in_time_window", user)
            return None
        try:
            scoped = msg.plaintext(priv_key, user.priv_protocol or "AES")
            context_engine, context, pos, end = usm.parse_scoped(scoped)
            pdu_tag, rid, _, _, vbs, span = ber.decode_pdu(scoped, pos, end)
        except BerError as e:
            if level & usm.FLAG_PRIV:
                why = usm.decrypt_hint(user.priv_protocol or "AES")
                self._reject(source, "decrypt_failed", f"v3 user {name}: cannot decrypt: {why} ({e})")
                return self._report(msg, usm.DECRYPTION_ERRORS, "decrypt_failed") if reportable else None
            raise
        if pdu_tag not in (ber.TRAP_V2, ber.INFORM):
            return self._reject(source, "unexpected_pdu", f"PDU 0x{pdu_tag:02x} is neither a Trap nor an Inform")
        inform = pdu_tag == ber.INFORM
        if inform and not authoritative:
            return self._reject(source, "unexpected_pdu", "an Inform must be sent to the receiver's engine ID")
        self._deliver(
            source, port, "3", "inform" if inform else "trap", _shown(vbs),
            user=name, context=context.decode(errors="replace"), engine_id=msg.engine_id.hex(),
        )  # fmt: skip
        if not inform:
            return None
        with self._lock:
            self.informs_acknowledged += 1
        response = usm.scoped_pdu(context_engine, context, usm.pdu(ber.RESPONSE, rid, scoped[span[0] : span[1]]))
        return usm.build_message(
            msg.msg_id, self.engine_id, self.boots, self.engine_time(), msg.user, response, user, level
        )

    def _timely(self, msg: usm.Message, authoritative: bool) -> bool:
        """RFC 3414 3.2 step 7: our own clock for informs, the sender's last known clock for its traps."""
        if msg.boots >= usm.MAX_ENGINE_TIME:
            return False
        if authoritative:
            return msg.boots == self.boots and abs(msg.engine_time - self.engine_time()) <= usm.TIME_WINDOW
        now = time.monotonic()
        with self._lock:
            known = self._remote_times.get(msg.engine_id)
            if known is not None:
                boots, etime, seen = known
                estimate = etime + (now - seen)
                if msg.boots < boots or (msg.boots == boots and msg.engine_time < estimate - usm.TIME_WINDOW):
                    return False  # a replay of an old message, or a clock gone backwards
            if known is None or (msg.boots, msg.engine_time) > known[:2]:
                self._remote_times.pop(msg.engine_id, None)
                self._remote_times[msg.engine_id] = (msg.boots, msg.engine_time, now)
                if len(self._remote_times) > MAX_SOURCES:
                    del self._remote_times[next(iter(self._remote_times))]
        return True

    def _report(self, msg: usm.Message, oid: str, reason: str, user: usm.User | None = None) -> bytes:
        """A Report PDU carrying one usmStats counter (authNoPriv with ``user``, else unauthenticated)."""
        rid, context = 0, b""
        if not msg.flags & usm.FLAG_PRIV:  # learn the request id when the scoped PDU is readable
            try:
                _, context, pos, end = usm.parse_scoped(msg.scoped)
                _, rid, _, _, _, _ = ber.decode_pdu(msg.scoped, pos, end)
            except BerError:
                pass  # a Report with request-id 0: the sender matches it by msgID
        count = self.rejected[reason] & 0xFFFFFFFF
        scoped = usm.scoped_pdu(self.engine_id, context, usm.pdu(ber.REPORT, rid, usm.counter_varbinds(oid, count)))
        level = usm.FLAG_AUTH if user is not None else 0
        return usm.build_message(
            msg.msg_id, self.engine_id, self.boots, self.engine_time(), msg.user, scoped, user, level
        )

    # -- outcomes --------------------------------------------------------------------------------------
    def _deliver(
        self,
        source: str,
        port: int,
        version: str,
        kind: str,
        shown: list[tuple[str, str, str]],
        user: str = "",
        context: str = "",
        engine_id: str = "",
    ) -> None:
        values = {o: v for o, _, v in shown[:3]}
        trap_oid = values.get(SNMP_TRAP_OID, "")
        if not trap_oid:
            # RFC 3416 4.2.6: the second varbind is snmpTrapOID.0; without it there is nothing to name.
            raise BerError("notification without snmpTrapOID.0")
        uptime = values.get(SYS_UPTIME)
        agent_address = next((v for o, _, v in shown if o == SNMP_TRAP_ADDRESS), "")
        host = self._hosts.get(source) or (self._hosts.get(agent_address) if agent_address else None) or source
        event = TrapEvent(
            source, port, version, kind, trap_oid, shown, host,
            int(uptime) if uptime and uptime.isdigit() else None,
            user=user, context=context, engine_id=engine_id, agent_address=agent_address,
        )  # fmt: skip
        name = event.trap if event.trap in STANDARD_TRAPS.values() else UNKNOWN
        with self._lock:
            self.received[name] = self.received.get(name, 0) + 1
            self.history.append(event)
            self.generation += 1
        findings = event.findings(self.config.severities)
        for sink, arg in ((self.on_event, event), (self.on_finding, findings)):
            if sink is None:
                continue
            try:
                sink(arg)  # type: ignore[arg-type]
            except Exception:  # a failing consumer must not stop the receiver; the traceback goes to the log
                log.exception("trap consumer %r failed", sink)

    def _reject(self, source: str, reason: str, detail: str, log_it: bool = True) -> bytes | None:
        """Count (and maybe log) a refused datagram; returns None, the answer to send (nothing)."""
        with self._lock:
            self.rejected[reason] += 1
            self.generation += 1
        if log_it:
            self._note(source, reason, detail)
        return None

    def _note(self, source: str, reason: str, detail: str) -> None:
        """Log a rejection at most once per LOG_EVERY per (source, reason), saying how many were not logged."""
        now = time.monotonic()
        key = (source, reason)
        with self._lock:
            last, quiet = self._notes.pop(key, (-LOG_EVERY, 0))
            if now - last < LOG_EVERY:
                self._notes[key] = (last, quiet + 1)
                return
            self._notes[key] = (now, 0)
            if len(self._notes) > MAX_SOURCES:
                del self._notes[next(iter(self._notes))]
        more = f" ({quiet} more since the last message)" if quiet else ""
        log.warning("trap from %s rejected: %s: %s%s", source, reason, detail, more)

    # -- what the agent exposes ---------------------------------------------------------------------------
    def metrics(self) -> list[Metric]:
        with self._lock:
            received = sorted(self.received.items())
            rejected = sorted(self.rejected.items())
            informs = self.informs_acknowledged
        got = Metric(
            "diag_snmp_traps_received", "SNMP notifications accepted, by trap name (unknown: any other).",
            "counter", ("trap",), [((k,), float(v)) for k, v in received],
        )  # fmt: skip
        bad = Metric(
            "diag_snmp_traps_rejected", "SNMP datagrams refused by the trap receiver, by reason.",
            "counter", ("reason",), [((k,), float(v)) for k, v in rejected],
        )  # fmt: skip
        acked = Metric(
            "diag_snmp_trap_informs_acknowledged", "Informs answered with a Response.", "counter",
            samples=[((), float(informs))],
        )  # fmt: skip
        return [got, bad, acked]

    def recent(self, limit: int = 100) -> list[TrapEvent]:
        with self._lock:
            return list(self.history)[-limit:]


def _shown(vbs: list[ber.Varbind]) -> list[tuple[str, str, str]]:
    from diag.network.snmp.client import format_value

    names = ber.TYPE_NAMES
    return [(ber.decode_oid(o), names[t], format_value(names[t], v)) for o, t, v in vbs]


def _label(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"udp [{host}]:{port}" if ":" in host else f"udp {host}:{port}"
