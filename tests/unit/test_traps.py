"""The trap receiver's protocol on recorded datagrams (net-snmp 5.9.3 ``snmptrap``/``snmpinform``), no sockets.

The fixtures in tests/fixtures/traps/ were captured from net-snmp with community ``dgt-recorded`` and the v3
user ``dgtuser`` (SHA ``dgt-auth-pass``, AES ``dgt-priv-pass``); v3 messages the tests need beyond those are
built with :func:`diag.network.snmp.usm.build_message` acting as the sending engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diag import yamlsrc
from diag.errors import ConfigError
from diag.model import Finding
from diag.network.snmp import ber, usm
from diag.network.traps import config as trapconfig
from diag.network.traps.events import TrapEvent
from diag.network.traps.receiver import TrapReceiver

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traps"
SRC = ("192.0.2.10", 40000)
OUR_ENGINE = bytes.fromhex("8000000005aabbccddeeff0011")


def recorded(name: str) -> bytes:
    return bytes.fromhex((FIXTURES / f"{name}.hex").read_text().strip())


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGT_COMMUNITY", "dgt-recorded")
    monkeypatch.setenv("DGT_AUTH", "dgt-auth-pass")
    monkeypatch.setenv("DGT_PRIV", "dgt-priv-pass")


def config(**extra: object) -> trapconfig.TrapConfig:
    raw = {
        "listen": ["127.0.0.1:20149"],
        "communities": ["env:DGT_COMMUNITY"],
        "users": [
            {"name": "dgtuser", "auth_protocol": "SHA", "auth_key": "env:DGT_AUTH",
             "priv_protocol": "AES", "priv_key": "env:DGT_PRIV"},
            {"name": "authonly", "auth_protocol": "SHA256", "auth_key": "env:DGT_AUTH"},
        ],
        **extra,
    }  # fmt: skip
    return trapconfig.build_standalone(raw)


class Sinks:
    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.events: list[TrapEvent] = []


@pytest.fixture
def rx(env: None) -> tuple[TrapReceiver, Sinks]:
    sinks = Sinks()
    r = TrapReceiver(config(), on_finding=sinks.findings.extend, on_event=sinks.events.append, engine=(OUR_ENGINE, 3))
    return r, sinks


def test_v2c_linkdown_recorded(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, s = rx
    assert r.handle(recorded("v2c_linkdown"), SRC) is None  # a trap is not answered
    (f,) = s.findings
    assert (f.check, f.severity, f.subject, f.host) == ("snmp_interface_down", "warning", "ge-0/0/5", "192.0.2.10")
    assert "oper down, admin up" in f.summary
    ev = f.evidence[0]
    assert ".1.3.6.1.2.1.31.1.1.1.1.5 = OCTET STRING: ge-0/0/5" in ev.text
    assert ".1.3.6.1.2.1.1.3.0 = Timeticks: 12345" in ev.text
    assert ev.data["trap_oid"] == "1.3.6.1.6.3.1.1.5.3"
    assert "dgt-recorded" not in str(f.to_dict())  # the community is a secret
    assert r.received == {"linkDown": 1}


def test_v1_traps_take_their_v2_form(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, s = rx
    r.handle(recorded("v1_linkup"), SRC)
    r.handle(recorded("v1_enterprise"), SRC)
    up, ent = s.events
    assert (up.version, up.trap, up.trap_oid, up.uptime, up.agent_address) == (
        "1", "linkUp", "1.3.6.1.6.3.1.1.5.4", 4242, "10.9.8.7",
    )  # fmt: skip
    assert s.findings[0].check == "snmp_interface_up" and s.findings[0].labels["resolves"] == "snmp_interface_down"
    # RFC 3584: enterprise-specific v1 trap 17 of 1.3.6.1.4.1.99999.1 is snmpTrapOID 1.3.6.1.4.1.99999.1.0.17
    assert ent.trap_oid == "1.3.6.1.4.1.99999.1.0.17" and ent.trap == "unknown"
    f = s.findings[1]
    assert (f.check, f.severity, f.subject) == ("snmp_trap", "info", "1.3.6.1.4.1.99999.1.0.17")
    assert "fan 2 failed" in f.evidence[0].text
    assert r.received == {"linkUp": 1, "unknown": 1}


def test_v2c_inform_is_answered_with_the_same_varbinds(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, s = rx
    data = recorded("v2c_inform_coldstart")
    reply = r.handle(data, SRC)
    assert reply is not None
    version, community, tag, rid, status, index, vbs = ber.decode_response(reply)
    _, _, in_tag, in_rid, _, _, in_vbs = ber.decode_response(data)
    assert (version, community, tag, status, index) == (1, b"dgt-recorded", ber.RESPONSE, 0, 0)
    assert in_tag == ber.INFORM and rid == in_rid and vbs == in_vbs
    assert s.findings[0].check == "snmp_device_rebooted" and s.events[0].kind == "inform"
    assert r.informs_acknowledged == 1


def test_wrong_community_garbage_and_wrong_pdu_are_counted(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, s = rx
    bad = recorded("v2c_linkdown").replace(b"dgt-recorded", b"dgt-wrongone")
    assert r.handle(bad, SRC) is None
    assert r.handle(b"\x00garbage", SRC) is None
    assert r.handle(recorded("v2c_linkdown")[:60], SRC) is None  # truncated
    assert r.handle(b"", SRC) is None
    get = ber.encode_request(1, b"dgt-recorded", ber.GET, 7, [ber.encode_oid("1.3.6.1.2.1.1.3.0")])
    assert r.handle(get, SRC) is None
    assert r.rejected["bad_community"] == 1
    assert r.rejected["malformed"] == 3
    assert r.rejected["unexpected_pdu"] == 1
    assert not s.findings and not r.received
    r.handle(recorded("v2c_linkdown"), SRC)  # still receiving
    assert r.received == {"linkDown": 1}


def test_v3_authpriv_trap_recorded(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, s = rx
    assert r.handle(recorded("v3_authpriv_trap"), SRC) is None
    (ev,) = s.events
    assert (ev.version, ev.user, ev.engine_id, ev.trap_oid) == (
        "3",
        "dgtuser",
        "8000000005deadbeef01",
        "1.3.6.1.4.1.99999.0.3",
    )
    assert ("1.3.6.1.4.1.99999.2.1", "OCTET STRING", "disk full") in ev.varbinds


def test_v3_wrong_passwords_and_unknown_user(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGT_AUTH", "another-auth-pass")
    r = TrapReceiver(config(), engine=(OUR_ENGINE, 1))
    r.handle(recorded("v3_authpriv_trap"), SRC)
    assert r.rejected["bad_auth"] == 1
    monkeypatch.setenv("DGT_AUTH", "dgt-auth-pass")
    monkeypatch.setenv("DGT_PRIV", "another-priv-pass")
    r = TrapReceiver(config(), engine=(OUR_ENGINE, 1))
    r.handle(recorded("v3_authpriv_trap"), SRC)
    assert r.rejected["decrypt_failed"] == 1
    r = TrapReceiver(config(users=[]), engine=(OUR_ENGINE, 1))
    r.handle(recorded("v3_authpriv_trap"), SRC)
    assert r.rejected["unknown_user"] == 1 and not r.received


def test_v3_discovery_gets_a_report_with_our_engine(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, _ = rx
    probe = recorded("v3_discovery")
    reply = r.handle(probe, SRC)
    assert reply is not None
    msg = usm.parse_message(reply)
    assert msg.engine_id == OUR_ENGINE and msg.boots == 3 and msg.flags == 0
    assert msg.msg_id == usm.parse_message(probe).msg_id
    ce, _, pos, end = usm.parse_scoped(msg.scoped)
    tag, rid, _, _, vbs, _ = ber.decode_pdu(msg.scoped, pos, end)
    assert ce == OUR_ENGINE and tag == ber.REPORT
    assert [(ber.decode_oid(o), t) for o, t, _ in vbs] == [(usm.UNKNOWN_ENGINE_IDS[:-2] + ".0", ber.COUNTER32)]
    assert rid == 0x3C891509  # the probe's request id, as net-snmp matches it


def _v3(user: usm.User, engine: bytes, boots: int, etime: int, tag: int, level: int, rid: int = 5) -> bytes:
    """A v3 notification from ``engine`` (the sender's engine for traps, ours for informs)."""
    vbs = ber.tlv(
        0x30,
        ber.tlv(0x30, ber.tlv(ber.OBJECT_ID, ber.encode_oid("1.3.6.1.2.1.1.3.0")) + ber.enc_uint(ber.TIMETICKS, 100))
        + ber.tlv(0x30, ber.tlv(ber.OBJECT_ID, ber.encode_oid("1.3.6.1.6.3.1.1.4.1.0"))
                  + ber.tlv(ber.OBJECT_ID, ber.encode_oid("1.3.6.1.6.3.1.1.5.5"))),
    )  # fmt: skip
    scoped = usm.scoped_pdu(engine, b"", usm.pdu(tag, rid, vbs))
    name = user.name.encode()
    return usm.build_message(77, engine, boots, etime, name, scoped, user, level, reportable=tag == ber.INFORM)


def test_v3_inform_response_is_authenticated_and_encrypted(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, s = rx
    user = r.config.users[b"dgtuser"]
    level = usm.FLAG_AUTH | usm.FLAG_PRIV
    reply = r.handle(_v3(user, OUR_ENGINE, 3, r.engine_time(), ber.INFORM, level, rid=4242), SRC)
    assert reply is not None and s.events[0].kind == "inform"
    msg = usm.parse_message(reply)
    auth_key, priv_key = user.keys(OUR_ENGINE)
    assert msg.flags & 3 == level and msg.authentic(user, auth_key)
    _, _, pos, end = usm.parse_scoped(msg.plaintext(priv_key, "AES"))
    tag, rid, status, _, vbs, _ = ber.decode_pdu(msg.plaintext(priv_key, "AES"), pos, end)
    assert (tag, rid, status, len(vbs)) == (ber.RESPONSE, 4242, 0, 2)
    # An inform out of our time window gets an authenticated notInTimeWindow report and no event.
    late = r.handle(_v3(user, OUR_ENGINE, 3, r.engine_time() + 1000, ber.INFORM, level), SRC)
    assert late is not None and r.rejected["not_in_time_window"] == 1 and len(s.events) == 1
    report = usm.parse_message(late)
    assert report.flags & 3 == usm.FLAG_AUTH and report.authentic(user, auth_key)


def test_v3_trap_replay_with_older_boots_is_refused(rx: tuple[TrapReceiver, Sinks]) -> None:
    r, s = rx
    user = r.config.users[b"authonly"]
    sender = bytes.fromhex("80000000050102030405")
    assert r.handle(_v3(user, sender, 7, 5000, ber.TRAP_V2, usm.FLAG_AUTH), SRC) is None
    r.handle(_v3(user, sender, 6, 9000, ber.TRAP_V2, usm.FLAG_AUTH), SRC)  # an older boot: a replay
    r.handle(_v3(user, sender, 7, 100, ber.TRAP_V2, usm.FLAG_AUTH), SRC)  # far behind the clock we know
    r.handle(_v3(user, sender, 7, 5010, ber.TRAP_V2, usm.FLAG_AUTH), SRC)
    assert len(s.events) == 2 and r.rejected["not_in_time_window"] == 2
    # the user is authNoPriv: the same trap without authentication is refused
    r.handle(_v3(user, sender, 7, 5020, ber.TRAP_V2, 0), SRC)
    assert r.rejected["unsupported_security_level"] == 1


def test_rate_limit_and_allow_list(env: None) -> None:
    r = TrapReceiver(config(rate_limit=0.001, burst=2, allow=["192.0.2.0/24"]), engine=(OUR_ENGINE, 1))
    data = recorded("v2c_linkdown")
    for _ in range(5):
        r.handle(data, SRC)
    r.handle(data, ("198.51.100.1", 162))
    r.handle(data, ("::ffff:192.0.2.11", 162, 0, 0))  # dual-stack sockets show IPv4 senders this way
    assert r.received == {"linkDown": 3}
    assert r.rejected["rate_limited"] == 3 and r.rejected["not_allowed"] == 1


def test_inventory_host_and_severity_override(env: None) -> None:
    text = "hosts:\n  sw-core-1: {address: 192.0.2.10}\n"
    from diag import inventory

    inv = inventory.parse(yamlsrc.load_text(text, "inv.yaml"))
    findings: list[Finding] = []
    r = TrapReceiver(config(severities={"linkDown": "critical"}), inv, findings.extend, engine=(OUR_ENGINE, 1))
    r.handle(recorded("v2c_linkdown"), SRC)
    r.handle(recorded("v1_linkup"), ("203.0.113.5", 162))
    assert (findings[0].host, findings[0].severity) == ("sw-core-1", "critical")
    assert findings[0].summary.startswith("sw-core-1: interface ge-0/0/5 went down")
    assert findings[1].host == "203.0.113.5"


def test_metrics_families() -> None:
    r = TrapReceiver(trapconfig.TrapConfig(communities=[b"x"]), engine=(OUR_ENGINE, 1))
    r.handle(b"junk", SRC)
    names = {m.name: m for m in r.metrics()}
    assert ("malformed",) in dict(names["diag_snmp_traps_rejected"].samples)
    assert names["diag_snmp_traps_rejected"].kind == "counter"


def test_config_problems_name_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DGT_NOT_SET", raising=False)
    monkeypatch.setenv("DGT_SHORT", "short")
    text = """agent:
  traps:
    listen: ["localhost:9162", "0.0.0.0:99999"]
    communities: [public, env:DGT_NOT_SET]
    users:
      - {name: a, auth_key: env:DGT_SHORT}
    allow: [10.0.0.300/8]
    severities: {linkDwn: critical}
"""
    doc = yamlsrc.load_text(text, "inv.yaml")
    from diag import config as agent_config

    with pytest.raises(ConfigError) as e:
        agent_config.build(doc, doc.data["agent"])
    problems = "\n".join(e.value.problems)
    assert "inv.yaml:3: listen address 'localhost:9162'" in problems
    assert "inv.yaml:3: listen address '0.0.0.0:99999'" in problems
    assert "inv.yaml:4: must be a reference" in problems
    assert "inv.yaml:4: secret env:DGT_NOT_SET: environment variable DGT_NOT_SET is not set" in problems
    assert "inv.yaml:6: user a: auth password must have at least 8 characters" in problems
    assert "inv.yaml:7: '10.0.0.300/8' is not an address or network" in problems
    assert "inv.yaml:8: 'linkDwn' is neither" in problems
    assert "short" not in problems.replace("DGT_SHORT", "")  # a secret value never appears
    # Protocols: the SNMP client's names and its words, at the line of the key.
    doc = yamlsrc.load_text(
        "agent:\n  traps:\n    users:\n      - name: b\n        auth_key: env:DGT_AUTH\n"
        "        priv_protocol: AES-512\n        priv_key: env:DGT_PRIV\n      - name: c\n"
        "        auth_protocol: SHA-3\n        auth_key: env:DGT_AUTH\n",
        "inv.yaml",
    )
    monkeypatch.setenv("DGT_AUTH", "dgt-auth-pass")
    monkeypatch.setenv("DGT_PRIV", "dgt-priv-pass")
    with pytest.raises(ConfigError) as e:
        agent_config.build(doc, doc.data["agent"])
    assert e.value.problems == [
        "inv.yaml:6: user b: privacy protocol 'AES-512' is not supported; use AES, AES-192, AES-256, AES-192-C, "
        "AES-256-C, DES",
        "inv.yaml:9: user c: unknown auth protocol 'SHA-3'; use MD5, SHA, SHA224, SHA256, SHA384, SHA512",
    ]
    monkeypatch.setenv("DGT_PRIV", "short")
    doc = yamlsrc.load_text(
        "agent:\n  traps:\n    users:\n      - {name: d, auth_key: env:DGT_AUTH, priv_protocol: AES-256-C,"
        " priv_key: env:DGT_PRIV}\n",
        "inv.yaml",
    )
    with pytest.raises(ConfigError) as e:
        agent_config.build(doc, doc.data["agent"])
    assert e.value.problems == ["inv.yaml:4: user d: priv password must have at least 8 characters"]


#: Every privacy protocol the client speaks, by the names configuration takes, and the key octets each needs.
PRIVACY = [("AES", 16), ("AES-192", 24), ("AES-256", 32), ("AES-192-C", 24), ("AES-256-C", 32), ("DES", 16)]


@pytest.mark.parametrize(("protocol", "octets"), PRIVACY)
def test_v3_trap_and_inform_with_every_privacy_protocol(
    env: None, protocol: str, octets: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver decrypts what a sender with the same user encrypts, and answers an inform in the same protocol.

    A sender of the other key extension (or AES-128 for DES) is a decryption failure, never an event.
    The interoperability with net-snmp is tests/integration/test_traps.py's.
    """
    users = [{"name": "u", "auth_protocol": "SHA", "auth_key": "env:DGT_AUTH", "priv_protocol": protocol,
              "priv_key": "env:DGT_PRIV"}]  # fmt: skip
    sinks = Sinks()
    r = TrapReceiver(config(users=users), on_event=sinks.events.append, engine=(OUR_ENGINE, 3))
    user = r.config.users[b"u"]
    sender = bytes.fromhex("8000000005deadbeef02")
    assert len(user.keys(sender)[1]) == octets
    level = usm.FLAG_AUTH | usm.FLAG_PRIV
    assert r.handle(_v3(user, sender, 1, 10, ber.TRAP_V2, level), SRC) is None
    assert [e.trap for e in sinks.events] == ["authenticationFailure"]
    reply = r.handle(_v3(user, OUR_ENGINE, 3, r.engine_time(), ber.INFORM, level, rid=99), SRC)
    assert reply is not None and [e.kind for e in sinks.events] == ["trap", "inform"]
    msg = usm.parse_message(reply)
    scoped = msg.plaintext(user.keys(OUR_ENGINE)[1], user.priv_protocol or "")
    _, _, pos, end = usm.parse_scoped(scoped)
    assert ber.decode_pdu(scoped, pos, end)[:3] == (ber.RESPONSE, 99, 0)
    other = {"AES-192": "AES-192-C", "AES-192-C": "AES-192", "AES-256": "AES-256-C", "AES-256-C": "AES-256"}
    wrong = usm.User.create("u", "SHA", "dgt-auth-pass", other.get(protocol, "AES" if protocol == "DES" else "DES"),
                            "dgt-priv-pass")  # fmt: skip
    assert r.handle(_v3(wrong, sender, 1, 20, ber.TRAP_V2, level), SRC) is None
    assert r.rejected["decrypt_failed"] == 1 and len(sinks.events) == 2
    hint = {"AES-192": "or the sender uses AES-192-C (the other key extension)?", "DES": "or not DES?",
            "AES-256-C": "or the sender uses AES-256 (the other key extension)?"}  # fmt: skip
    if protocol in hint:
        assert f"decrypt_failed: v3 user u: cannot decrypt: wrong privacy password, {hint[protocol]}" in caplog.text


def test_protocol_names_are_the_clients() -> None:
    """The names docs/snmp.md gives, any case; the canonical ones too."""
    for names, canonical in (
        (("AES", "aes", "AES128", "AES-128"), "AES"),
        (("AES-192", "aes192"), "AES192"),
        (("AES-256", "AES256"), "AES256"),
        (("AES-192-C", "aes192c"), "AES192C"),
        (("AES-256-C", "AES256C"), "AES256C"),
        (("DES", "des"), "DES"),
    ):
        assert {usm.priv_protocol_name(n) for n in names} == {canonical}
    assert usm.auth_protocol_name("sha-256") == "SHA256" and usm.auth_protocol_name("SHA1") == "SHA"
    with pytest.raises(ValueError, match="'3DES' is not supported"):
        usm.priv_protocol_name("3DES")


def test_engine_identity_persists_and_boots_grow(tmp_path: Path) -> None:
    cfg = trapconfig.TrapConfig()
    e1, b1 = trapconfig.engine_identity(cfg, tmp_path)
    e2, b2 = trapconfig.engine_identity(cfg, tmp_path)
    assert e1 == e2 and b2 == b1 + 1 and 5 <= len(e1) <= 32


def test_aes_cfb_through_openssl_matches_cryptography() -> None:
    import os

    assert usm._libcrypto() is not None  # Linux with an OpenSSL-backed hashlib: the bound path is the one used
    for size in (0, 1, 15, 16, 17, 333, 1500):
        key, iv, data = os.urandom(16), os.urandom(16), os.urandom(size)
        sealed = usm._cfb(key, iv, data, encrypt=True)
        assert sealed == usm._cfb_cryptography(key, iv, data, encrypt=True)
        assert usm._cfb(key, iv, sealed, encrypt=False) == data
    with pytest.raises(ber.BerError):
        usm._cfb(b"short", bytes(16), b"x", encrypt=True)
