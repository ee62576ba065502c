"""The SNMP client, profiles and the /snmp exporter against a real net-snmp snmpd with ~200 interfaces.

net-snmp's own tools (snmpbulkwalk, snmpget) are the reference: walks must return the same OIDs and
values. Faults are real too: snmpd frozen with SIGSTOP mid-walk, a wrong community, a wrong v3 password,
and an snmpd whose agentSize is tiny (tooBig answers).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from diag.network.snmp import client as snmp
from diag.network.snmp import profiles
from tests.conftest import DIAG, StartAgent
from tests.labs.snmplab import (
    COMMUNITY,
    V3_AES_USERS,
    V3_AUTH,
    V3_AUTH_USER,
    V3_DES_USER,
    V3_PRIV,
    V3_SHA256_USER,
    V3_USER,
    SnmpLab,
)

pytestmark = pytest.mark.integration

IF_TABLE = "1.3.6.1.2.1.2.2"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1"
_LINE = re.compile(r"^\.?([\d.]+) = (?:([\w-]+): )?(.*)$")


@pytest.fixture(scope="module")
def lab() -> Iterator[SnmpLab]:
    with SnmpLab(201) as lab:
        yield lab


def v2(lab: SnmpLab, **kw: object) -> snmp.Target:
    return snmp.Target(lab.address, community=COMMUNITY, **kw)  # type: ignore[arg-type]


def v3(lab: SnmpLab, auth: str = V3_AUTH, priv: str = V3_PRIV) -> snmp.Target:
    return snmp.Target(lab.address, version="3", user=V3_USER, auth_key=auth, priv_key=priv)


def v3_target(lab: SnmpLab) -> snmp.Target:
    return snmp.Target(lab.address, version="3", user=V3_USER, auth_key=V3_AUTH, priv_key=V3_PRIV, timeout=5)


def netsnmp_walk(lab: SnmpLab, root: str, v3: bool = False) -> dict[str, str]:
    """snmpbulkwalk -On -Oe -Ot output as {oid: value text} (strings unquoted, hex strings as bytes)."""
    out: dict[str, str] = {}
    lines: list[str] = []
    for line in lab.netsnmp("snmpbulkwalk", "-Ox", root, v3=v3).splitlines():
        if line.startswith(".") or not lines:
            lines.append(line)
        else:  # long hex strings wrap onto more lines
            lines[-1] += " " + line
    for line in lines:
        m = _LINE.match(line)
        assert m, f"unparsed snmpbulkwalk line: {line!r}"
        oid, kind, value = m.groups()
        if kind == "STRING" or value == '""':  # net-snmp prints an empty string as "" with no type
            value = value.strip('"')
        elif kind == "Hex-STRING":
            value = "".join(value.split()).lower()
        elif kind == "OID":
            value = value.lstrip(".")
        out[oid] = value
    return out


def ours(vars: list[snmp.Var]) -> dict[str, str]:
    def text(t: str, v: object) -> str:
        if isinstance(v, bytes):
            return v.hex()  # -Ox prints every string as hex; so do we, for an exact comparison
        return str(v)

    return {o: text(t, v) for o, t, v in vars}


def counters_quiet(values: dict[str, str]) -> dict[str, str]:
    """Drop the uplink's (ifIndex 2) and lo's rows: our own SNMP traffic moves their counters."""
    return {o: v for o, v in values.items() if o.rsplit(".", 1)[1] not in ("1", "2")}


@pytest.mark.parametrize("root", [IF_TABLE, IF_X_TABLE, "1.3.6.1.2.1.1"])
def test_v2c_walk_equals_snmpbulkwalk(lab: SnmpLab, root: str) -> None:
    with snmp.Session(v2(lab)) as s:
        got = ours(s.walk(root))
    want = netsnmp_walk(lab, root)
    assert len(want) > 10
    assert sorted(got) == sorted(want)
    # Counters and uptime move between the two walks; everything else must be identical.
    moving = ("1.3.6.1.2.1.1.3.0",)
    assert {k: v for k, v in counters_quiet(got).items() if k not in moving} == {
        k: v for k, v in counters_quiet(want).items() if k not in moving
    }


#: net-snmp's printed type -> ours ("" is how it prints an empty OCTET STRING, with no type).
NETSNMP_TYPES = {"Hex-STRING": "OCTET STRING", "STRING": "OCTET STRING", "": "OCTET STRING", "OID": "OID"}


def netsnmp_typed(lab: SnmpLab, root: str, v3: bool) -> dict[str, tuple[str, Any]]:
    """``snmpbulkwalk -On -Oe -Ox`` as {oid: (our type name, value)}: strings as hex, numbers as numbers."""
    out: dict[str, tuple[str, Any]] = {}
    lines: list[str] = []
    for line in lab.netsnmp("snmpbulkwalk", root, v3=v3, options=("-Oe", "-Ox")).splitlines():
        if line.startswith(".") or not lines:
            lines.append(line)
        else:  # long hex strings wrap onto more lines
            lines[-1] += " " + line
    for line in lines:
        m = _LINE.match(line)
        assert m, f"unparsed snmpbulkwalk line: {line!r}"
        oid, kind, value = m.group(1), m.group(2) or "", m.group(3)
        if value.startswith("No more variables left"):
            continue
        kind = NETSNMP_TYPES.get(kind, kind)
        parsed: Any
        if kind == "OCTET STRING":
            parsed = "" if value == '""' else "".join(value.split()).lower()
        elif kind == "Timeticks":
            parsed = int(value.split(")")[0].lstrip("("))
        elif kind == "Opaque":
            assert value.startswith("Float: "), line
            parsed = value.split()[1]  # as net-snmp prints the float32: %f
        elif kind in ("OID", "IpAddress"):
            parsed = value.lstrip(".")
        else:
            parsed = int(value.split()[0])
        out[oid] = (kind, parsed)
    return out


def typed(vars: list[snmp.Var]) -> dict[str, tuple[str, Any]]:
    return {o: (t, v.hex() if isinstance(v, bytes) else v) for o, t, v in vars}


#: Tables whose rows come and go while walking (sockets, processes): our own walk's socket is a row too.
CHURN = ("1.3.6.1.2.1.6.", "1.3.6.1.2.1.7.", "1.3.6.1.2.1.25.4.", "1.3.6.1.2.1.25.5.")
#: Values that our own walk moves: net-snmp's nsCacheStatus (a table's cache goes active when walked).
MOVED_BY_US = ("1.3.6.1.4.1.8072.1.5.3.1.3.",)
#: Gauges sent as Counter64 (UCD-SNMP-MIB's CounterBasedGauge64: memTotalSwapX ... memSysAvail, memory 17-27):
#: they go down as well as up, so a value read between two walks need not lie between theirs (memory 25 read
#: 51184 between 52928 and 52472 on a loaded machine).
GAUGES_AS_COUNTERS = ("1.3.6.1.4.1.2021.4.",)


@pytest.mark.parametrize("version", ["2c", "3"])
def test_whole_tree_walk_equals_snmpbulkwalk_type_and_value(lab: SnmpLab, version: str) -> None:
    """Everything the agent has, v2c and v3 authPriv, against snmpbulkwalk before and after our walk.

    Every OID both net-snmp walks saw must be in ours with the same type; a value that did not move
    between them must be ours exactly (strings octet for octet), and a counter that moved must lie between.
    """
    v3 = version == "3"
    before = netsnmp_typed(lab, "1.3", v3)
    with snmp.open_session(v3_target(lab) if v3 else v2(lab, timeout=5)) as s:
        walked = s.walk("1.3")
    ours = typed(walked)
    after = netsnmp_typed(lab, "1.3", v3)
    assert walked.warning == "" and len(ours) > 30000
    both = before.keys() & after.keys()
    assert both - ours.keys() == set()
    extra = ours.keys() - before.keys() - after.keys()
    assert len(extra) < 50 and all(o.startswith(CHURN) for o in extra), sorted(extra)[:10]
    moved = 0
    for oid in sorted(both):
        (kind, a), (kind_b, b), (our_kind, got) = before[oid], after[oid], ours[oid]
        assert kind == kind_b == our_kind, (oid, kind, our_kind)
        if a == b and not oid.startswith(MOVED_BY_US):
            if kind == "Opaque":  # the same float32 as net-snmp's, which prints it with %f
                assert f"{struct.unpack('>f', struct.pack('>f', got))[0]:.6f}" == a, oid
            else:
                assert got == a, oid
        else:
            moved += 1
            if kind in ("Counter32", "Counter64", "Timeticks") and not oid.startswith(GAUGES_AS_COUNTERS):
                assert min(a, b) <= got <= max(a, b), (oid, a, got, b)
    empty = sum(1 for k, v in ours.values() if k == "OCTET STRING" and v == "")
    assert empty > 100  # ifAlias and friends: empty strings keep their type (ezsnmp gave them type '""')
    assert moved < len(both) // 10


def test_walk_covers_all_interfaces(lab: SnmpLab) -> None:
    with snmp.Session(v2(lab)) as s:
        names = s.walk("1.3.6.1.2.1.31.1.1.1.1")
    assert len(names) >= 200
    assert (b"uplink") in {v for _, _, v in names}


def test_getnext_walk_equals_bulk_walk(lab: SnmpLab) -> None:
    with snmp.Session(v2(lab)) as s:
        bulk = [o for o, _, _ in s.walk("1.3.6.1.2.1.2.2.1.2")]
        nxt = [o for o, _, _ in s.walk("1.3.6.1.2.1.2.2.1.2", bulk=False)]
    assert bulk == nxt and len(bulk) >= 200


def test_counter64_values_match_snmpget(lab: SnmpLab) -> None:
    oids = [f"1.3.6.1.2.1.31.1.1.1.6.{i}" for i in range(3, 8)]
    with snmp.Session(v2(lab)) as s:
        got = s.get(oids)
    ref = lab.netsnmp("snmpget", *oids)
    assert [t for _, t, _ in got] == ["Counter64"] * 5
    assert [str(v) for _, _, v in got] == [line.split(": ")[1] for line in ref.splitlines()]


def test_v3_authpriv_walk_equals_snmpbulkwalk(lab: SnmpLab) -> None:
    s = snmp.open_session(v3(lab))
    try:
        got = ours(s.walk("1.3.6.1.2.1.2.2.1.2"))
        sysname = s.get(["1.3.6.1.2.1.1.5.0"])
    finally:
        s.close()
    assert got == netsnmp_walk(lab, "1.3.6.1.2.1.2.2.1.2", v3=True)
    assert sysname == [("1.3.6.1.2.1.1.5.0", "OCTET STRING", f"dgn-snmplab-{lab.lab_id}".encode())]


def test_v3_wrong_password_is_an_auth_error(lab: SnmpLab) -> None:
    with pytest.raises(snmp.SnmpAuthError) as e:
        snmp.open_session(v3(lab, auth="not-the-password")).get(["1.3.6.1.2.1.1.5.0"])
    msg = str(e.value)
    assert msg.startswith(f"{lab.address}:161: ") and "authentication" in msg.lower()
    assert "not-the-password" not in msg and "\n" not in msg


def test_wrong_community_is_a_clear_timeout(lab: SnmpLab) -> None:
    t = snmp.Target(lab.address, community="wrong-community", timeout=0.3, retries=1)
    with pytest.raises(snmp.SnmpTimeout) as e:
        snmp.Session(t).get(["1.3.6.1.2.1.1.5.0"])
    assert str(e.value) == f"{lab.address}:161: no answer: wrong community or host down (timeout 0.3s, 2 tries)"


def test_agent_frozen_mid_walk(lab: SnmpLab) -> None:
    """SIGSTOP snmpd after the walk started: a timeout that says how far the walk got, then it recovers."""
    s = snmp.Session(v2(lab, timeout=0.5, retries=1, max_repetitions=5))
    original = s.send
    calls = 0

    def send(*a: object, **kw: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 5:
            lab.freeze()
        return original(*a, **kw)  # type: ignore[arg-type]

    s.send = send  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(snmp.SnmpTimeout, match=r"stopped after 20 values"):
            s.walk(IF_TABLE)
    finally:
        lab.thaw()
        s.close()
    with snmp.Session(v2(lab)) as s2:  # snmpd answers again once thawed
        assert len(s2.walk("1.3.6.1.2.1.2.2.1.1")) >= 200


def test_poll_if_mib_and_findings(lab: SnmpLab) -> None:
    state = profiles.PollState()
    t = v2(lab, name="lab")
    ps = [profiles.load("system"), profiles.load("if_mib")]
    first = profiles.poll(t, ps, state)
    by_name = {m.name: m for m in first.metrics}
    assert by_name["diag_snmp_up"].samples == [(("system",), 1.0), (("if_mib",), 1.0)]
    octets = by_name["diag_snmp_if_hc_in_octets"]
    assert octets.label_names == ("ifIndex", "ifName", "ifAlias", "ifDescr", "counter_bits")
    assert len(octets.samples) >= 200 and {labels[4] for labels, _ in octets.samples} == {"64"}
    rows = {labels[1]: labels for labels, _ in octets.samples}
    assert rows["p5"][3] == "p5"  # ifDescr; snmpd keeps ifAlias itself (SNMP SET), so it is empty here
    down = sorted(f.subject for f in first.findings if f.check == "snmp_interface_down")
    # Every tenth extra veth stays admin down, so its peer (admin up) is oper down.
    assert down and all(re.fullmatch(r"p\d+", s) for s in down)
    assert "p9" not in down
    assert not [f for f in first.findings if f.check == "snmp_device_rebooted"]
    # A restart of snmpd makes sysUpTime go back: the next poll reports a reboot.
    lab.stop_snmpd()
    lab.start_snmpd()
    second = profiles.poll(t, ps, state)
    reboot = [f for f in second.findings if f.check == "snmp_device_rebooted"]
    assert len(reboot) == 1 and reboot[0].host == "lab"


def test_poll_of_a_host_down_is_a_finding(lab: SnmpLab) -> None:
    t = snmp.Target(lab.address, community="wrong", timeout=0.2, retries=0, name="dev1")
    r = profiles.poll(t, [profiles.load("system"), profiles.load("if_mib")])
    assert [m.samples for m in r.metrics if m.name == "diag_snmp_up"] == [[(("system",), 0.0)]]
    assert [f.check for f in r.findings] == ["snmp_not_answering"]
    assert r.findings[0].severity == "critical" and r.findings[0].host == "dev1"


def test_exporter_scrape_on_a_running_agent(
    lab: SnmpLab, start_agent: StartAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGN_COMMUNITY", COMMUNITY)
    inventory = (
        f"hosts:\n  switch1:\n    address: {lab.address}\n    snmp: {{version: '2c', community: 'env:DGN_COMMUNITY'}}\n"
    )
    agent = start_agent(inventory, ports=range(19500, 19600))
    status, body = agent.get("/snmp?target=switch1&module=if_mib", timeout=30)
    assert status == 200, body
    text = body.decode()
    # Compare the quiet interfaces' counters with snmpget right after the scrape.
    samples = dict(
        (m.group(1), m.group(2))
        for m in re.finditer(r'^diag_snmp_if_hc_out_octets_total\{[^}]*ifIndex="(\d+)"[^}]*\} (\S+)$', text, re.M)
    )
    assert len(samples) >= 200
    idx = ["3", "4", "50", "150"]
    ref = lab.netsnmp("snmpget", *[f"1.3.6.1.2.1.31.1.1.1.10.{i}" for i in idx])
    want = [float(line.split(": ")[1]) for line in ref.splitlines()]
    assert [float(samples[i]) for i in idx] == want
    # by address too, and a module that does not exist is a 400 with the reason
    assert agent.get(f"/snmp?target={lab.address}&module=system", timeout=30)[0] == 200
    status, body = agent.get("/snmp?target=switch1&module=nope")
    assert status == 400 and b"unknown SNMP profile" in body
    status, body = agent.get("/snmp?target=10.232.250.250&module=system")
    assert status == 400 and b"not in the inventory" in body


def test_concurrent_sessions_match_replies(lab: SnmpLab) -> None:
    """Request-id matching: parallel walks on separate sessions never mix their answers."""
    results: dict[int, list[str]] = {}

    def run(n: int) -> None:
        with snmp.Session(v2(lab)) as s:
            results[n] = [o for o, _, _ in s.walk("1.3.6.1.2.1.31.1.1.1.1")]

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(results) == 4 and all(r == results[0] for r in results.values())


def test_v3_auth_no_priv(lab: SnmpLab) -> None:
    t = snmp.Target(lab.address, version="3", user=V3_AUTH_USER, auth_key=V3_AUTH)
    assert t.security_level == "authNoPriv"
    s = snmp.open_session(t)
    try:
        got = s.get(["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.31.1.1.1.6.3"])
    finally:
        s.close()
    assert got[0] == ("1.3.6.1.2.1.1.5.0", "OCTET STRING", f"dgn-snmplab-{lab.lab_id}".encode())
    assert got[1][1] == "Counter64" and isinstance(got[1][2], int)


def test_cli_walk_json_equals_snmpbulkwalk(lab: SnmpLab) -> None:
    env = {**os.environ, "DIAG_SNMP_COMMUNITY": COMMUNITY}
    p = subprocess.run(
        [DIAG, "snmp", "walk", "--json", lab.address, "1.3.6.1.2.1.2.2.1.2"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    got = {v["oid"]: v["value"] for v in json.loads(p.stdout)}
    assert got == netsnmp_walk(lab, "1.3.6.1.2.1.2.2.1.2")
    bad = subprocess.run(
        [DIAG, "snmp", "get", "-c", "wrong", "-t", "0.2", "-r", "0", lab.address, "1.3.6.1.2.1.1.5.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 3
    assert bad.stderr == f"diag: {lab.address}:161: no answer: wrong community or host down (timeout 0.2s, 1 try)\n"


def test_cli_walk_json_piped_into_head_ends_quietly(lab: SnmpLab) -> None:
    """`diag snmp walk --json | head`: the reader leaves early; no BrokenPipe traceback (issue 15)."""
    env = {**os.environ, "DIAG_SNMP_COMMUNITY": COMMUNITY}
    p = subprocess.run(
        f"{DIAG} snmp walk --json {lab.address} 1.3.6.1.2.1 | head -2",
        shell=True, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert p.stdout.count("\n") == 2 and p.stderr == "", p.stderr


def test_v3_wrong_user_and_wrong_privacy_password(lab: SnmpLab) -> None:
    with pytest.raises(snmp.SnmpAuthError, match=r"authentication failed for user nobody: .*Unknown user name"):
        snmp.open_session(snmp.Target(lab.address, version="3", user="nobody", auth_key=V3_AUTH)).get(
            ["1.3.6.1.2.1.1.5.0"]
        )
    t = snmp.Target(lab.address, version="3", user=V3_USER, auth_key=V3_AUTH, priv_key="not-the-priv", timeout=0.3)
    with pytest.raises(snmp.SnmpTimeout) as e:
        snmp.open_session(t).get(["1.3.6.1.2.1.1.5.0"])
    assert str(e.value) == (
        f"{lab.address}:161: no answer: host down or wrong privacy password (timeout 0.3s, 2 tries)"
    )
    with pytest.raises(snmp.SnmpAuthError, match="at least 8 characters"):
        snmp.open_session(snmp.Target(lab.address, version="3", user=V3_USER, auth_key="short"))


def test_v1_walk_with_getnext(lab: SnmpLab) -> None:
    """v1 has no GETBULK and ends a walk with noSuchName at the end of the MIB view."""
    with snmp.Session(v2(lab, version="1")) as s:
        names = s.walk("1.3.6.1.2.1.31.1.1.1.1")
        assert s.requests == len(names) + 1  # one GETNEXT per value, and the one past the end
        s.requests = 0
        assert s.walk("1.3.6.1.9") == []  # past everything snmpd has: noSuchName, not an error
        assert s.requests == 1
    with snmp.Session(v2(lab)) as s2:
        assert names == s2.walk("1.3.6.1.2.1.31.1.1.1.1")
        assert s2.walk("1.3.6.1.9") == []  # v2c: endOfMibView


@pytest.mark.parametrize(
    ("user", "auth", "priv"),
    [
        (V3_DES_USER, "MD5", "DES"),
        (V3_SHA256_USER, "SHA256", "AES"),
        (V3_AES_USERS["AES192"], "SHA", "AES-192"),
        (V3_AES_USERS["AES256"], "SHA", "AES-256"),
        (V3_AES_USERS["AES192C"], "SHA", "AES-192-C"),
        (V3_AES_USERS["AES256C"], "SHA", "AES-256-C"),
    ],
)
def test_v3_md5_des_sha256_and_aes_192_256(lab: SnmpLab, user: str, auth: str, priv: str) -> None:
    """The other protocols against snmpd's own USM: a walk equals snmpbulkwalk's with the same user. AES-192/256
    with SHA-1 need its 20-octet key extended: Blumenthal's way (AES-192, AES-256) or Reeder's (-C)."""
    t = snmp.Target(lab.address, version="3", user=user, auth_protocol=auth, auth_key=V3_AUTH,
                    priv_protocol=priv, priv_key=V3_PRIV, timeout=5)  # fmt: skip
    with snmp.open_session(t) as s:
        got = ours(s.walk(IF_X_TABLE + ".1.1"))
    net = {"MD5": "MD5", "SHA256": "SHA-256", "SHA": "SHA"}[auth]
    ref = subprocess.run(
        ["snmpbulkwalk", "-v3", "-l", "authPriv", "-u", user, "-a", net, "-A", V3_AUTH, "-x", priv, "-X", V3_PRIV,
         "-On", "-Ox", lab.address, IF_X_TABLE + ".1.1"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MIBS": ""}, check=True,
    ).stdout  # fmt: skip
    want = {
        line.split(" = ")[0].lstrip("."): "".join(line.split(": ", 1)[1].split()).lower() for line in ref.splitlines()
    }
    assert len(got) >= 200 and got == want


@pytest.mark.parametrize(
    ("user", "priv"), [(V3_AES_USERS["AES256"], "AES-256-C"), (V3_AES_USERS["AES192C"], "AES-192")]
)
def test_v3_aes_256_with_the_other_key_extension_gets_no_answer(lab: SnmpLab, user: str, priv: str) -> None:
    """The two extensions give different keys: the agent cannot decrypt, and stays silent (as net-snmp says)."""
    t = snmp.Target(lab.address, version="3", user=user, auth_protocol="SHA", auth_key=V3_AUTH,
                    priv_protocol=priv, priv_key=V3_PRIV, timeout=1, retries=0)  # fmt: skip
    with snmp.open_session(t) as s, pytest.raises(snmp.SnmpTimeout, match="wrong privacy password"):
        s.get(["1.3.6.1.2.1.1.5.0"])


def test_v1_get_with_a_missing_oid_asks_again_without_it(lab: SnmpLab) -> None:
    """snmpd answers a v1 GET that names one missing OID with noSuchName for all; snmpget asks again without it."""
    oids = ["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.99.0", "1.3.6.1.2.1.1.6.0"]
    with snmp.Session(v2(lab, version="1")) as s:
        got = s.get(oids)
        assert s.requests == 2
    assert got == [
        ("1.3.6.1.2.1.1.5.0", "OCTET STRING", f"dgn-snmplab-{lab.lab_id}".encode()),
        ("1.3.6.1.2.1.1.99.0", "noSuchObject", None),
        ("1.3.6.1.2.1.1.6.0", "OCTET STRING", b"diag test lab"),
    ]
    ref = subprocess.run(
        ["snmpget", "-v1", "-c", COMMUNITY, "-On", lab.address, *oids],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MIBS": ""},
    )  # fmt: skip
    assert "noSuchName" in ref.stderr + ref.stdout and "dgn-snmplab" in ref.stdout  # net-snmp does the same


def test_walk_of_a_scalar_gets_it_as_snmpwalk_does(lab: SnmpLab) -> None:
    env = {**os.environ, "DIAG_SNMP_COMMUNITY": COMMUNITY}
    p = subprocess.run([DIAG, "snmp", "walk", lab.address, "1.3.6.1.2.1.1.5.0"], capture_output=True, text=True,
                       timeout=60, env=env)  # fmt: skip
    ref = lab.netsnmp("snmpwalk", "1.3.6.1.2.1.1.5.0")
    assert p.returncode == 0 and p.stdout == f".1.3.6.1.2.1.1.5.0 = OCTET STRING: dgn-snmplab-{lab.lab_id}\n"
    assert ref.startswith(".1.3.6.1.2.1.1.5.0 = STRING:")
