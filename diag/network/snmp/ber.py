"""A lean BER encoder/decoder for SNMP v1/v2c messages: the GET/GETNEXT/GETBULK hot loop of a walk.

Only what SNMP messages use is here (definite lengths, the SMI application types). OIDs stay in their
BER-encoded form (``bytes``) while walking: a subtree is a byte prefix, and byte order is OID order
except across multi-byte arcs of different lengths (:func:`arcs` gives the exact order), so the walk
compares bytes and turns only what it keeps into text. Decoding an
8,000-varbind walk this way costs a few tens of milliseconds (docs/snmp.md has the measurements).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: a walk command's start-up (docs/snmp.md)
if TYPE_CHECKING:
    from typing import Any

# PDU tags (context-specific, constructed).
GET = 0xA0
GETNEXT = 0xA1
RESPONSE = 0xA2
GETBULK = 0xA5
TRAP_V1 = 0xA4
INFORM = 0xA6
TRAP_V2 = 0xA7
REPORT = 0xA8

# Value tags.
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_ID = 0x06
IPADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

TYPE_NAMES: dict[int, str] = {
    INTEGER: "INTEGER",
    OCTET_STRING: "OCTET STRING",
    NULL: "NULL",
    OBJECT_ID: "OID",
    IPADDRESS: "IpAddress",
    COUNTER32: "Counter32",
    GAUGE32: "Gauge32",
    TIMETICKS: "Timeticks",
    OPAQUE: "Opaque",
    COUNTER64: "Counter64",
    NO_SUCH_OBJECT: "noSuchObject",
    NO_SUCH_INSTANCE: "noSuchInstance",
    END_OF_MIB_VIEW: "endOfMibView",
}
#: Tags whose value is an unsigned integer.
UNSIGNED = frozenset((COUNTER32, GAUGE32, TIMETICKS, COUNTER64))
EXCEPTIONS = frozenset((NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW))

ERROR_STATUS = [
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
]
TOO_BIG = 1


class BerError(ValueError):
    """The bytes are not a well-formed SNMP message."""


# -- encoding ------------------------------------------------------------------------------------------
def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _len(len(content)) + content


def enc_int(n: int) -> bytes:
    return tlv(INTEGER, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def enc_uint(tag: int, n: int) -> bytes:
    """An unsigned SMI integer (Counter32, Gauge32, TimeTicks, Counter64): a leading zero keeps it positive."""
    return tlv(tag, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big"))


def encode_oid(oid: str) -> bytes:
    """Dotted text (leading dot allowed) to the BER content octets of an OID."""
    try:
        arcs = [int(a) for a in oid.strip().strip(".").split(".")]
    except ValueError:
        raise BerError(f"not a numeric OID: {oid!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise BerError(f"not a valid OID: {oid!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = []
        while arc:
            chunk.append(arc & 0x7F)
            arc >>= 7
        out += bytes(c | 0x80 for c in reversed(chunk[1:])) + bytes((chunk[0],))
    return bytes(out)


def arcs(b: bytes) -> tuple[int, ...]:
    """The arcs of an OID's BER content octets (first two still combined): an exact OID sort key."""
    out: list[int] = []
    n = 0
    for byte in b:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            out.append(n)
            n = 0
    return tuple(out)


_ARC_TEXT = [str(i) for i in range(128)]
_arc_text = _ARC_TEXT.__getitem__


class _ArcTexts(dict[bytes, str]):
    """Arc text by its BER octets, filled as arcs are met (ifIndex 128..16383, address octets over 127): the
    lookup is C, only a first sight decodes in Python. Bounded: cleared past 4096 entries (~0.4 MiB)."""

    def __missing__(self, key: bytes) -> str:
        n = 0
        for byte in key:
            n = (n << 7) | (byte & 0x7F)
        if len(self) > 4096:
            self.clear()
            self.update(_SMALL_ARCS)
        text = self[key] = str(n)
        return text


class _DottedArcs(dict[str, str]):
    """The text of a piece of an OID as :data:`_DOTTED` gives it: a multi-byte arc (its high octets as
    characters, then ``.`` and the decimal of its last octet) as ``.N``; a run of small arcs as it is.
    Bounded like :class:`_ArcTexts`."""

    def __missing__(self, key: str) -> str:
        if len(self) > 4096:
            self.clear()
        if not key or key[0] < "\x80":
            self[key] = key
            return key
        high, _, low = key.partition(".")
        n = 0
        for ch in high:
            n = (n << 7) | (ord(ch) & 0x7F)
        text = self[key] = f".{(n << 7) | int(low)}"
        return text


_SMALL_ARCS = {bytes((i,)): str(i) for i in range(128)}
_arc_texts = _ArcTexts(_SMALL_ARCS)
_arc_octets = re.compile(rb"[\x80-\xff]*[\x00-\x7f]").findall  # one arc: high-bit bytes, then one without
#: str.translate table over an OID's octets read as Latin-1: an octet below 128 is a whole arc, ``.N``; a high
#: octet stays as it is, to be joined with the arc's last octet by :data:`_multi_arcs`.
_DOTTED = {i: f".{i}" for i in range(128)} | {i: chr(i) for i in range(128, 256)}
_dotted_pieces = re.compile(r"([\x80-\xff]+\.[0-9]+)").split  # runs of small arcs and multi-byte arcs
_dotted_arc = _DottedArcs().__getitem__


def decode_oid(b: bytes) -> str:
    """BER content octets of an OID to dotted text (no leading dot)."""
    if not b:
        raise BerError("empty OID")
    if b[-1] & 0x80:
        raise BerError("truncated OID")
    first = b[0]
    if first < 0x80:
        head = "1.3" if first == 43 else (f"{first // 40}.{first % 40}" if first < 80 else f"2.{first - 80}")
        if len(b) == 1:
            return head
        if max(b) < 0x80:  # every arc below 128 (most OIDs): no arc spans bytes; a walk prints ~40,000 of these
            return f"{head}.{'.'.join(map(_arc_text, b[1:]))}"
        # Arcs over 127 after the first two (indexes over 127, addresses): each octet to text in C
        # (translate), split at the multi-byte arcs, each piece's text from a table (all C but first sights).
        return head + "".join(map(_dotted_arc, _dotted_pieces(b[1:].decode("latin-1").translate(_DOTTED))))
    arcs: list[int] = []
    n = 0
    for byte in b:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(n)
            n = 0
    top = [arcs[0] // 40, arcs[0] % 40] if arcs[0] < 80 else [2, arcs[0] - 80]
    return ".".join(map(str, top + arcs[1:]))


def oid_decoder(prefix: str = "") -> Callable[[bytes], str]:
    """A :func:`decode_oid` (with ``prefix`` before each text) that remembers the text of each OID's parent: a
    walk prints column after column, so most OIDs differ from the last parent only in the last arc, whose text
    comes from a table (``diag snmp walk`` spends most of its CPU here: docs/snmp.md)."""
    parents: dict[bytes, str] = {}
    get = parents.get
    last_arc = _arc_texts.__getitem__
    small = _ARC_TEXT

    heads: dict[bytes, str] = {}  # text of the longest prefix a parent shared with the one before
    tails: dict[bytes, str] = {}  # text of what came after it
    last = [b""]  # the parent decoded before

    def parent_text(parent: bytes) -> str:
        # A new parent: a row of a table indexed by many arcs (routes, addresses). It shares a long prefix
        # with the one before (the column, the first index arcs): that prefix's text is remembered, and
        # only the arcs after it are decoded. The first differing octet is found in C: the XOR of the two
        # as integers has as many leading zero octets as they share.
        before = last[0]
        last[0] = parent
        n = min(len(parent), len(before))
        k = n - ((int.from_bytes(parent[:n], "big") ^ int.from_bytes(before[:n], "big")).bit_length() + 7) // 8
        if k == n:  # the one before is a prefix of this one, or the same: its text up to its last arc
            k -= 1
        while k > 0 and parent[k - 1] & 0x80:  # back to the start of the arc the difference is in
            k -= 1
        if len(parents) > 4096:  # tables indexed by many arcs would only fill them
            parents.clear()
            heads.clear()
            tails.clear()
        if k < 2:
            text = parents[parent] = f"{prefix}{decode_oid(parent)}."
            return text
        head = parent[:k]
        head_text = heads.get(head)
        if head_text is None:
            head_text = heads[head] = f"{prefix}{decode_oid(head)}."
        tail = parent[k:]  # the same tail comes again in the table's next columns (rows in the same order)
        tail_text = tails.get(tail)
        if tail_text is None:
            tail_text = tails[tail] = decode_suffix(tail)
        text = parents[parent] = f"{head_text}{tail_text}."
        return text

    def decode(b: bytes) -> str:
        i = len(b) - 1
        if i < 1 or b[i] & 0x80:
            return prefix + decode_oid(b)  # too short to have a parent, or truncated (decode_oid says so)
        if b[i - 1] & 0x80:  # the last arc spans octets (an ifIndex over 127)
            while i > 1 and b[i - 1] & 0x80:  # back to the first octet of the last arc
                i -= 1
            if b[i - 1] & 0x80:  # the only arc is the first, combined one (2.999)
                return prefix + decode_oid(b)
            parent = b[:i]
            return (get(parent) or parent_text(parent)) + last_arc(b[i:])
        parent = b[:i]
        return (get(parent) or parent_text(parent)) + small[b[i]]

    return decode


def decode_suffix(b: bytes) -> str:
    """The arcs of an OID tail (the instance index after a column) as dotted text."""
    if not b:
        return ""
    if max(b) < 0x80:  # the usual case: every arc is below 128
        return ".".join(map(_arc_text, b))
    # (a malformed tail that ends inside an arc loses that arc, as it always did: no exception mid-poll)
    return ".".join(map(_arc_texts.__getitem__, _arc_octets(b)))


def encode_request(
    version: int, community: bytes, pdu_tag: int, request_id: int, oids: list[bytes], a: int = 0, b: int = 0
) -> bytes:
    """A v1/v2c request message; ``a``/``b`` are error-status/index, or non-repeaters/max-repetitions for GETBULK."""
    varbinds = b"".join(tlv(0x30, tlv(OBJECT_ID, oid) + b"\x05\x00") for oid in oids)
    pdu = tlv(pdu_tag, enc_int(request_id) + enc_int(a) + enc_int(b) + tlv(0x30, varbinds))
    return tlv(0x30, enc_int(version) + tlv(OCTET_STRING, community) + pdu)


# -- decoding ------------------------------------------------------------------------------------------
#: Opaque-wrapped types (net-snmp's ASN_OPAQUE_*: tag 0x9f then one of these; UCD and vendor MIBs use them).
_OPAQUE_FLOAT = 0x78
_OPAQUE_DOUBLE = 0x79
_OPAQUE_INTEGERS = {0x76: False, 0x7A: True, 0x7B: False}  # Counter64, Integer64, Unsigned64: signed?


def decode_opaque(raw: bytes) -> Any:
    """An Opaque's content: a float for the wrapped float/double, an int for the wrapped 64-bit integers,
    else the bytes as they came. A float32 is given as the shortest decimal that is the same float32
    (0.12, not 0.11999999731779099), as net-snmp's own printing would round it."""
    if len(raw) < 3 or raw[0] != 0x9F or raw[2] != len(raw) - 3:
        return raw
    kind, body = raw[1], raw[3:]
    if kind == _OPAQUE_FLOAT and len(body) == 4:
        value = struct.unpack(">f", body)[0]
        for digits in range(6, 10):
            short = float(f"{value:.{digits}g}")
            if struct.pack(">f", short) == body:
                return short
        return value
    if kind == _OPAQUE_DOUBLE and len(body) == 8:
        return struct.unpack(">d", body)[0]
    if kind in _OPAQUE_INTEGERS and 0 < len(body) <= 9:
        return int.from_bytes(body, "big", signed=_OPAQUE_INTEGERS[kind])
    return raw


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``."""
    if pos + 2 > end:
        raise BerError(f"truncated at byte {pos}")
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise BerError(f"bad length at byte {pos - 1}")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise BerError(f"length {n} at byte {pos} runs past the end ({end})")
    return tag, pos, pos + n


def _int(data: bytes, pos: int, end: int) -> tuple[int, int]:
    tag, s, e = _header(data, pos, end)
    if tag != INTEGER or s == e:
        raise BerError(f"expected INTEGER at byte {pos}, got tag 0x{tag:02x}")
    return int.from_bytes(data[s:e], "big", signed=True), e


Varbind = tuple[bytes, int, "Any"]


def decode_response(data: bytes) -> tuple[int, bytes, int, int, int, int, list[Varbind]]:
    """A v1/v2c message: (version, community, pdu tag, request id, error status, error index, varbinds).

    Each varbind is (OID content bytes, value tag, value): int for the integer types, bytes for strings,
    dotted text for OIDs and IpAddress, None for NULL and the v2 exceptions; an Opaque is a float or int
    when it wraps one (:func:`decode_opaque`), else bytes.
    """
    version, community, pos, end = decode_community_header(data)
    pdu_tag, request_id, err_status, err_index, varbinds, _ = decode_pdu(data, pos, end)
    return version, community, pdu_tag, request_id, err_status, err_index, varbinds


def decode_community_header(data: bytes) -> tuple[int, bytes, int, int]:
    """The start of a v1/v2c message: (version, community, where the PDU starts, where the message ends)."""
    tag, pos, end = _header(data, 0, len(data))
    if tag != 0x30:
        raise BerError(f"not an SNMP message (first tag 0x{tag:02x})")
    version, pos = _int(data, pos, end)
    tag, s, pos = _header(data, pos, end)
    if tag != OCTET_STRING:
        raise BerError("no community string")
    return version, data[s:pos], pos, end


def decode_pdu(data: bytes, pos: int, end: int) -> tuple[int, int, int, int, list[Varbind], tuple[int, int]]:
    """A PDU with the v2 layout at ``pos``: (tag, request id, error status, error index, varbinds, span).

    ``span`` is (start, end) of the whole varbind-list TLV, so that an Inform's Response can echo it.
    """
    pdu_tag, pos, pend = _header(data, pos, end)
    request_id, pos = _int(data, pos, pend)
    err_status, pos = _int(data, pos, pend)
    err_index, pos = _int(data, pos, pend)
    start = pos
    tag, pos, vend = _header(data, pos, pend)
    if tag != 0x30:
        raise BerError("no varbind list")
    return pdu_tag, request_id, err_status, err_index, decode_varbinds(data, pos, vend), (start, vend)


def decode_trap_v1(data: bytes, pos: int, end: int) -> tuple[str, str, int, int, int, list[Varbind]]:
    """An SNMPv1 Trap-PDU at ``pos``: (enterprise, agent address, generic, specific, time-stamp, varbinds)."""
    tag, pos, pend = _header(data, pos, end)
    if tag != TRAP_V1:
        raise BerError(f"not a v1 Trap-PDU (tag 0x{tag:02x})")
    tag, s, pos = _header(data, pos, pend)
    if tag != OBJECT_ID:
        raise BerError("v1 trap without an enterprise OID")
    enterprise = decode_oid(data[s:pos])
    tag, s, pos = _header(data, pos, pend)
    if tag != IPADDRESS or pos - s != 4:
        raise BerError("v1 trap without an agent address")
    agent = ".".join(map(str, data[s:pos]))
    generic, pos = _int(data, pos, pend)
    specific, pos = _int(data, pos, pend)
    tag, s, pos = _header(data, pos, pend)
    if tag != TIMETICKS:
        raise BerError("v1 trap without a time-stamp")
    stamp = int.from_bytes(data[s:pos], "big")
    tag, pos, vend = _header(data, pos, pend)
    if tag != 0x30:
        raise BerError("no varbind list")
    return enterprise, agent, generic, specific, stamp, decode_varbinds(data, pos, vend)


def decode_varbinds(data: bytes, pos: int, vend: int) -> list[Varbind]:
    """The varbinds between ``pos`` and ``vend`` (the content of a varbind list)."""
    varbinds: list[Varbind] = []
    append = varbinds.append
    try:
        while pos < vend:
            # Inlined short-form headers: this loop runs once per varbind of a walk.
            if data[pos] != 0x30:
                raise BerError(f"expected a varbind at byte {pos}")
            n = data[pos + 1]
            if n & 0x80:
                _, pos, vb_end = _header(data, pos, vend)
            else:
                pos += 2
                vb_end = pos + n
            if data[pos] != OBJECT_ID:
                raise BerError(f"expected an OID at byte {pos}")
            n = data[pos + 1]
            if n & 0x80:
                raise BerError(f"OID too long at byte {pos}")
            oid = data[pos + 2 : pos + 2 + n]
            pos += 2 + n
            vtag = data[pos]
            n = data[pos + 1]
            if n & 0x80:
                _, vs, ve = _header(data, pos, vb_end)
            else:
                vs = pos + 2
                ve = vs + n
            if ve != vb_end or len(oid) == 0:
                raise BerError(f"bad varbind length at byte {pos}")
            raw = data[vs:ve]
            if vtag in UNSIGNED:
                value: Any = int.from_bytes(raw, "big")
            elif vtag == OCTET_STRING:
                value = raw
            elif vtag == OPAQUE:
                value = decode_opaque(raw)
            elif vtag == INTEGER:
                if not raw:
                    raise BerError(f"empty INTEGER at byte {pos}")
                value = int.from_bytes(raw, "big", signed=True)
            elif vtag == OBJECT_ID:
                value = decode_oid(raw)
            elif vtag == IPADDRESS:
                if len(raw) != 4:
                    raise BerError(f"IpAddress of {len(raw)} bytes at byte {pos}")
                value = ".".join(map(str, raw))
            elif vtag == NULL or vtag in EXCEPTIONS:
                value = None
            else:
                raise BerError(f"unknown value type 0x{vtag:02x} at byte {pos}")
            append((oid, vtag, value))
            pos = ve
    except IndexError:
        raise BerError("truncated varbind") from None
    if pos != vend:
        raise BerError("varbind list length mismatch")
    return varbinds


#: Public names for the readers other SNMP codecs (v3 USM, traps) build on.
read_tlv = _header
read_int = _int
