"""Wire formats of the reachability probes, on packets recorded in the routed lab (tests/fixtures/reach/README.md)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from diag.network.reach import trace
from diag.network.reach.packets import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_TIME_EXCEEDED,
    PacketError,
    checksum,
    encode_echo_request,
    parse_icmp,
    parse_mysql_greeting,
    parse_quoted,
)

FIX = Path(__file__).parent.parent / "fixtures" / "reach"
R1, R2, B = "10.233.0.2", "10.233.0.6", "10.233.0.10"


def packet(name: str) -> bytes:
    return bytes.fromhex((FIX / f"{name}.hex").read_text().strip())


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with end-around carry); the checksum is ~ddf2.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert checksum(b"\x01") == ~0x0100 & 0xFFFF  # an odd length is padded with a zero byte


def test_echo_request_verifies_and_matches_what_the_router_quoted() -> None:
    req = encode_echo_request(0x4242, 7, b"diag-trace")
    assert req[:2] == b"\x08\x00" and checksum(req) == 0
    # r1 quoted the first 8 bytes of the probe it dropped; they must be exactly what we encode.
    raw = packet("time_exceeded_icmp")
    quoted_ip = raw[20 + 8 :]
    assert quoted_ip[20:28] == req[:8]


def test_received_icmp_checksums_verify() -> None:
    for name in ("echo_reply", "time_exceeded_icmp", "time_exceeded_udp", "port_unreachable_udp"):
        raw = packet(name)
        assert checksum(raw[20:]) == 0, name


def test_echo_reply() -> None:
    m = parse_icmp(packet("echo_reply"), "ignored")
    assert (m.src, m.type, m.ident, m.seq, m.quoted) == (B, ICMP_ECHO_REPLY, 0x4242, 8, None)


def test_time_exceeded_quoting_icmp_echo() -> None:
    m = parse_icmp(packet("time_exceeded_icmp"), "ignored")
    assert (m.src, m.type, m.code) == (R1, ICMP_TIME_EXCEEDED, 0)
    q = m.quoted
    assert q is not None
    assert (q.proto, q.src, q.dst, q.sport, q.dport) == (socket.IPPROTO_ICMP, "10.233.0.1", B, 0x4242, 7)


def test_time_exceeded_quoting_udp() -> None:
    m = parse_icmp(packet("time_exceeded_udp"), "ignored")
    assert (m.src, m.type) == (R2, ICMP_TIME_EXCEEDED)
    assert m.quoted is not None
    assert (m.quoted.proto, m.quoted.dst, m.quoted.sport, m.quoted.dport) == (socket.IPPROTO_UDP, B, 40000, 33435)


def test_time_exceeded_quoting_tcp_syn() -> None:
    m = parse_icmp(packet("time_exceeded_tcp"), "ignored")
    assert (m.src, m.type) == (R1, ICMP_TIME_EXCEEDED)
    q = m.quoted
    assert q is not None
    assert (q.proto, q.dst, q.sport, q.dport) == (socket.IPPROTO_TCP, B, 40001, 80)
    assert q.tcp_seq != 0  # the SYN's initial sequence number is quoted too


def test_unreachables_classified() -> None:
    port = parse_icmp(packet("port_unreachable_udp"), "ignored")
    assert (port.src, port.type, port.code) == (B, ICMP_DEST_UNREACH, 3)
    assert trace._classify(port, B) == "reached"  # the destination itself says port unreachable
    net = parse_icmp(packet("net_unreachable_icmp"), "ignored")
    assert (net.src, net.type, net.code) == (R1, ICMP_DEST_UNREACH, 0)
    assert trace._classify(net, B) == "network unreachable"
    assert net.quoted is not None and net.quoted.dport == 9


def test_ping_socket_messages_have_no_ip_header() -> None:
    icmp_only = packet("echo_reply")[20:]
    m = parse_icmp(icmp_only, B, with_ip_header=False)
    assert (m.src, m.type, m.seq) == (B, ICMP_ECHO_REPLY, 8)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x45" + b"\x00" * 10, bytes.fromhex("6000000000000000000000000000000000000000"), packet("echo_reply")[:24]],
)
def test_short_or_wrong_packets_raise(data: bytes) -> None:
    with pytest.raises(PacketError):
        parse_icmp(data, "x")


def test_quoted_without_its_8_bytes_raises() -> None:
    raw = packet("time_exceeded_udp")
    with pytest.raises(PacketError, match="8 payload bytes"):
        parse_quoted(raw[28 : 28 + 24])


def test_mysql_greeting_mariadb() -> None:
    g = parse_mysql_greeting(packet("mysql_greeting_mariadb"))
    assert g.protocol == 10
    assert g.server_version == "10.11.19-MariaDB-0+deb12u1"
    assert g.connection_id == 4
    assert g.error_code == 0


def test_mysql_error_1130() -> None:
    g = parse_mysql_greeting(packet("mysql_error_1130"))
    assert g.error_code == 1130
    assert g.error_message == "Host '10.233.0.1' is not allowed to connect to this MariaDB server"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x05\x00", "needs 4 bytes"),
        (packet("mysql_greeting_mariadb")[:40], "truncated"),
        (b"\x05\x00\x00\x00\x09abcd", "protocol version 9"),
        (b"\x05\x00\x00\x00\x0aabcd", "NUL-terminated"),
    ],
)
def test_mysql_bad_greetings(data: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        parse_mysql_greeting(data)
