"""BER encoding and decoding of SNMP messages, and the profile files' validation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from diag.errors import ConfigError, RegistryError
from diag.network.snmp import ber, profiles
from diag.network.snmp import client as snmp


def test_oid_round_trip_and_order() -> None:
    rng = random.Random(5)
    oids = [
        "1.3.6.1.2.1." + ".".join(str(rng.choice([0, 1, 127, 128, 200, 16383, 16384, 2**31])) for _ in range(4))
        for _ in range(300)
    ]
    for o in oids:
        assert ber.decode_oid(ber.encode_oid(o)) == o
    # ber.arcs is the exact order; plain bytes are not (16384 = 81 80 00 sorts before 16383 = ff 7f).
    by_key = sorted(oids, key=lambda o: ber.arcs(ber.encode_oid(o)))
    by_arcs = sorted(oids, key=lambda o: [int(a) for a in o.split(".")])
    assert by_key == by_arcs
    assert ber.encode_oid("1.3.16384") < ber.encode_oid("1.3.16383")
    assert ber.encode_oid("1.3.6.1.2.1.2.2.1.2.200").startswith(ber.encode_oid("1.3.6.1.2.1.2.2.1.2"))
    assert ber.decode_suffix(ber.encode_oid("1.3.200.5.1")[1:]) == "200.5.1"


@pytest.mark.parametrize("bad", ["", "1", "abc", "1.3.x", "3.1", "1.40"])
def test_bad_oids(bad: str) -> None:
    with pytest.raises(ber.BerError):
        ber.encode_oid(bad)


def test_request_decodes_as_sent() -> None:
    msg = ber.encode_request(1, b"public", ber.GETBULK, 77, [ber.encode_oid("1.3.6.1.2.1.2.2")], 0, 25)
    version, community, pdu, rid, a, b, vbs = ber.decode_response(msg)
    assert (version, community, pdu, rid, a, b) == (1, b"public", ber.GETBULK, 77, 0, 25)
    assert vbs == [(ber.encode_oid("1.3.6.1.2.1.2.2"), ber.NULL, None)]


def test_all_value_types() -> None:
    vals = [
        ber.enc_int(-5),
        ber.tlv(ber.OCTET_STRING, b"\xff\x00x"),
        ber.tlv(ber.OBJECT_ID, ber.encode_oid("1.3.6.1.4.1.8072")),
        ber.tlv(ber.IPADDRESS, bytes([10, 232, 0, 1])),
        ber.tlv(ber.COUNTER32, b"\x00\xff\xff\xff\xff"),
        ber.tlv(ber.COUNTER64, (2**64 - 1).to_bytes(9, "big")),
        ber.tlv(ber.TIMETICKS, b"\x01\x00"),
        ber.tlv(ber.NO_SUCH_INSTANCE, b""),
    ]
    body = b"".join(ber.tlv(0x30, ber.tlv(ber.OBJECT_ID, ber.encode_oid(f"1.3.{i}")) + v) for i, v in enumerate(vals))
    pdu = ber.tlv(ber.RESPONSE, ber.enc_int(1) + ber.enc_int(0) + ber.enc_int(0) + ber.tlv(0x30, body))
    msg = ber.tlv(0x30, ber.enc_int(1) + ber.tlv(ber.OCTET_STRING, b"c") + pdu)
    got = [(t, v) for _, t, v in ber.decode_response(msg)[6]]
    assert got == [
        (ber.INTEGER, -5),
        (ber.OCTET_STRING, b"\xff\x00x"),
        (ber.OBJECT_ID, "1.3.6.1.4.1.8072"),
        (ber.IPADDRESS, "10.232.0.1"),
        (ber.COUNTER32, 2**32 - 1),
        (ber.COUNTER64, 2**64 - 1),
        (ber.TIMETICKS, 256),
        (ber.NO_SUCH_INSTANCE, None),
    ]


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x30", b"\x04\x00", b"\x30\x82\xff\xff\x02\x01\x01", b"\x30\x03\x02\x01\x01", bytes(range(40))],
)
def test_garbage_raises_ber_error(garbage: bytes) -> None:
    with pytest.raises(ber.BerError):
        ber.decode_response(garbage)


def test_truncations_of_a_real_message_never_crash() -> None:
    msg = ber.encode_request(1, b"public", ber.GET, 9, [ber.encode_oid("1.3.6.1.2.1.1.5.0")] * 3)
    for n in range(len(msg)):
        with pytest.raises(ber.BerError):
            ber.decode_response(msg[:n])


def test_shipped_profiles_load() -> None:
    names = profiles.profile_names()
    assert {"system", "if_mib", "host_resources", "ucd", "entity_sensor", "printer", "ups"} <= set(names)
    for n in names:
        p = profiles.load(n)
        assert p.spec.description
    if_mib = profiles.load("if_mib").spec
    assert any(m.name == "if_hc_in_octets" and m.kind == "counter" for m in if_mib.tables[0].metrics)


def test_profile_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "description: broken\nscalars:\n  - {name: x, oid: 1.3.6.x, help: h}\n"
        "rules:\n  - {check: c, metric: nope, test: equals, summary: s}\n"
    )
    with pytest.raises(ConfigError) as e:
        profiles.load("bad", tmp_path)
    assert e.value.problems[0].startswith(f"{tmp_path / 'bad.yaml'}:3: ")
    assert any(":5: metric: no metric 'nope'" in p for p in e.value.problems)
    with pytest.raises(RegistryError, match="unknown SNMP profile 'missing'"):
        profiles.load("missing", tmp_path)


def test_oid_decoder_with_remembered_parents_equals_decode_oid() -> None:
    rng = random.Random(3)
    decode = ber.oid_decoder()
    arcs = [0, 1, 5, 127, 128, 200, 16383, 16384, 2**31]
    for _ in range(5000):
        head = rng.choice(["1.3.6.1.", "2.999.", "2.5."])
        o = head + ".".join(str(rng.choice(arcs)) for _ in range(rng.randint(1, 6)))
        assert decode(ber.encode_oid(o)) == o == ber.decode_oid(ber.encode_oid(o))
    for o in ("1.3", "2.999", "0.0", "2.999.5"):
        assert decode(ber.encode_oid(o)) == o


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("9f780440333333", 2.8),  # net-snmp's opaque float (UCD laLoadFloat)
        ("9f78043f800000", 1.0),
        ("9f7908400921fb54442d18", 3.141592653589793),  # opaque double
        ("9f7a01ff", -1),  # opaque Integer64
        ("9f7b0200ff", 255),  # opaque Unsigned64
        ("0102", b"\x01\x02"),  # anything else stays bytes
        ("9f780340333333", bytes.fromhex("9f780340333333")),  # a length that does not fit: bytes
    ],
)
def test_opaque_values(raw: str, value: object) -> None:
    assert ber.decode_opaque(bytes.fromhex(raw)) == value
    vb = ber.tlv(
        0x30,
        ber.tlv(ber.OBJECT_ID, ber.encode_oid("1.3.6.1.4.1.2021.10.1.6.1")) + ber.tlv(ber.OPAQUE, bytes.fromhex(raw)),
    )
    assert ber.decode_varbinds(vb, 0, len(vb)) == [(ber.encode_oid("1.3.6.1.4.1.2021.10.1.6.1"), ber.OPAQUE, value)]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("005056010143", "00 50 56 01 01 43"),  # a VMware MAC (os/linux/unknown-006 in snmpsim-data): valid UTF-8
        ("4d53205443500a", "MS TCP\n"),  # LF, CR, tab stay text
        ("4d532054435000", "4D 53 20 54 43 50 00"),  # a trailing NUL (Windows XP's ifDescr): hex, as net-snmp
        ("090703363535452d32", "09 07 03 36 35 35 45 2D 32"),  # an Opaque holding a BER REAL (nsfocus-ads laLoadFloat)
        ("d09cd0b8d180", "\u041c\u0438\u0440"),  # UTF-8 text stays text
        ("c2a0616263", "\u00a0abc"),  # so do Unicode spaces (isprintable() says no)
        ("c28561", "C2 85 61"),  # a C1 control (NEL) is a control
        ("ff00", "FF 00"),  # not UTF-8
    ],
)
def test_format_value_prints_control_characters_as_hex(raw: str, text: str) -> None:
    """Strings with control characters print as hex, as net-snmp's Hex-STRING, not as raw terminal bytes."""
    assert snmp.format_value("OCTET STRING", bytes.fromhex(raw)) == text


def test_decode_suffix_of_multibyte_arcs() -> None:
    rng = random.Random(9)
    for _ in range(2000):
        arcs = [rng.choice([0, 5, 127, 128, 255, 16383, 16384, 2**31]) for _ in range(rng.randint(1, 8))]
        text = ".".join(map(str, arcs))
        assert ber.decode_suffix(ber.encode_oid("1.3." + text)[1:]) == text
    assert ber.decode_suffix(b"") == ""


def test_record_strings_and_their_codes(tmp_path: Path) -> None:
    """Brother's packed records: code, 0x01, length, value; 0xFF ends; anything else is not a record string."""
    assert profiles.parse_records(bytes.fromhex("000104000003da6f010400001d4cff00")) == {0: 986, 0x6F: 7500}
    assert profiles.parse_records(bytes.fromhex("0001020102")) == {0: 258}
    assert profiles.parse_records(b"") == {}
    assert profiles.parse_records(bytes.fromhex("0002040000000a")) is None  # not the 0x01 marker
    assert profiles.parse_records(bytes.fromhex("00010400")) is None  # the value is cut short
    (tmp_path / "bad.yaml").write_text(
        "description: d\nrecords:\n  - oid: 1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.8\n    metrics:\n"
        '      - {code: "ff", name: x, help: h}\n      - {code: "6f", name: x, help: h}\n'
    )
    with pytest.raises(ConfigError) as e:
        profiles.load("bad", tmp_path)
    assert any(":5: code: 'ff' is not an octet" in p for p in e.value.problems)
    assert any(":6: name: metric 'x' twice" in p for p in e.value.problems)


def test_oid_decoder_on_tables_indexed_by_addresses_equals_decode_oid() -> None:
    """Walk order (column after column) of rows indexed by many arcs over 127 (routes, IPv6 neighbours): the
    parents' shared prefixes and tails are remembered; past 4096 parents the memory is cleared and refilled."""
    rng = random.Random(5)
    rows = sorted({(2, 16, *(rng.choice([0, 128, 254, 255, 16383, 7]) for _ in range(16)), 64, rng.randint(1, 300))
                   for _ in range(2500)})  # fmt: skip
    decode = ber.oid_decoder(".")
    for column in (7, 8, 9):
        for row in rows:
            o = ber.encode_oid(f"1.3.6.1.2.1.4.24.7.1.{column}." + ".".join(map(str, row)))
            assert decode(o) == "." + ber.decode_oid(o)
