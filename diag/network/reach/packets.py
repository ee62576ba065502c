"""Wire formats for the reachability probes: ICMP echo, ICMP errors with their quoted header, MySQL greeting.

Kept apart from the socket code so that unit tests can feed recorded packets. Only the fields the probes match on
are decoded; anything shorter than its fixed part raises :class:`PacketError`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11

#: Codes of ICMP destination unreachable, as traceroute prints them (!N, !H, ...).
UNREACH_CODES: dict[int, str] = {
    0: "network unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    5: "source route failed",
    6: "network unknown",
    7: "host unknown",
    9: "network prohibited",
    10: "host prohibited",
    13: "administratively prohibited",
}


class PacketError(ValueError):
    """A packet too short or of the wrong shape to decode."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def encode_echo_request(ident: int, seq: int, payload: bytes = b"") -> bytes:
    """An ICMP echo request with its checksum filled in."""
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident & 0xFFFF, seq & 0xFFFF) + payload


@dataclass(frozen=True, slots=True)
class Quoted:
    """The start of the datagram an ICMP error quotes: enough to tell which of our probes caused it."""

    proto: int
    src: str
    dst: str
    ttl: int
    #: UDP/TCP ports, or for a quoted ICMP echo its identifier (in ``sport``) and sequence (in ``dport``).
    sport: int = 0
    dport: int = 0
    #: TCP sequence number (0 for other protocols).
    tcp_seq: int = 0


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    """One received ICMP message: who sent it, its type and code, echo fields and any quoted header."""

    src: str
    type: int
    code: int
    ident: int = 0
    seq: int = 0
    quoted: Quoted | None = None


def _ip_header(packet: bytes) -> tuple[int, int, int, str, str]:
    """(header length, protocol, ttl, source, destination) of an IPv4 header."""
    if len(packet) < 20:
        raise PacketError(f"IPv4 header needs 20 bytes, got {len(packet)}")
    vihl, _tos, _tlen, _id, _frag, ttl, proto, _csum, src, dst = struct.unpack("!BBHHHBBH4s4s", packet[:20])
    if vihl >> 4 != 4:
        raise PacketError(f"not IPv4 (version {vihl >> 4})")
    ihl = (vihl & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        raise PacketError(f"bad IPv4 header length {ihl}")
    return ihl, proto, ttl, socket.inet_ntoa(src), socket.inet_ntoa(dst)


def parse_quoted(data: bytes) -> Quoted:
    """The quoted IPv4 header plus the first 8 bytes of its payload (RFC 792 guarantees those 8)."""
    ihl, proto, ttl, src, dst = _ip_header(data)
    head = data[ihl : ihl + 8]
    if len(head) < 8:
        raise PacketError(f"quoted datagram has {len(head)} of the 8 payload bytes")
    if proto in (socket.IPPROTO_UDP, socket.IPPROTO_TCP):
        sport, dport, seq = struct.unpack("!HHI", head)
        return Quoted(proto, src, dst, ttl, sport, dport, seq if proto == socket.IPPROTO_TCP else 0)
    if proto == socket.IPPROTO_ICMP:
        _t, _c, _s, ident, seq16 = struct.unpack("!BBHHH", head)
        return Quoted(proto, src, dst, ttl, ident, seq16)
    return Quoted(proto, src, dst, ttl)


def parse_icmp(packet: bytes, src: str, with_ip_header: bool = True) -> IcmpMessage:
    """Decode an ICMP message as a raw socket (with IP header) or a ping socket (without) returns it."""
    if with_ip_header:
        ihl, _proto, _ttl, src, _dst = _ip_header(packet)
        packet = packet[ihl:]
    if len(packet) < 8:
        raise PacketError(f"ICMP message needs 8 bytes, got {len(packet)}")
    icmp_type, code, _csum, ident, seq = struct.unpack("!BBHHH", packet[:8])
    if icmp_type in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
        return IcmpMessage(src, icmp_type, code, quoted=parse_quoted(packet[8:]))
    return IcmpMessage(src, icmp_type, code, ident, seq)


@dataclass(frozen=True, slots=True)
class MysqlGreeting:
    """What a MySQL/MariaDB server says first: protocol version, server version, connection id; or its error."""

    protocol: int
    server_version: str = ""
    connection_id: int = 0
    error_code: int = 0
    error_message: str = ""


def parse_mysql_greeting(data: bytes) -> MysqlGreeting:
    """Parse the first packet of the MySQL protocol (Initial Handshake v10, or an ERR packet such as 1130).

    A packet is a 3-byte little-endian length, a sequence byte and the payload; the payload of a greeting is
    protocol version (10), a NUL-terminated server version and a 4-byte connection id, then auth data we skip.
    """
    if len(data) < 5:
        raise PacketError(f"MySQL packet header needs 4 bytes and a payload, got {len(data)} bytes")
    length = int.from_bytes(data[:3], "little")
    payload = data[4 : 4 + length]
    if len(payload) < length:
        raise PacketError(f"MySQL packet truncated: {len(payload)} of {length} bytes")
    if payload[0] == 0xFF:
        if len(payload) < 3:
            raise PacketError("MySQL error packet without an error code")
        code = int.from_bytes(payload[1:3], "little")
        msg = payload[3:]
        if msg.startswith(b"#"):  # SQL state marker + 5-character state, present after the handshake only
            msg = msg[6:]
        return MysqlGreeting(0xFF, error_code=code, error_message=msg.decode("utf-8", "replace"))
    protocol = payload[0]
    if protocol != 10:
        raise PacketError(f"MySQL protocol version {protocol} (expected 10)")
    end = payload.find(b"\x00", 1)
    if end < 0 or len(payload) < end + 5:
        raise PacketError("MySQL greeting without a NUL-terminated server version and connection id")
    version = payload[1:end].decode("utf-8", "replace")
    if version.startswith("5.5.5-") and "MariaDB" in version:
        version = version[6:]  # MariaDB's prefix for old clients that parse the major version: not its version
    conn_id = int.from_bytes(payload[end + 1 : end + 5], "little")
    return MysqlGreeting(protocol, version, conn_id)
