"""The trap receiver against net-snmp's real ``snmptrap`` and ``snmpinform``; the network collectors in ``diag agent``.

One receiver (in process, UDP 127.0.0.1 and [::1] on a port in 20100-20149) serves the protocol tests; the CLI
and agent tests run ``diag`` as real processes. The agent test also polls a real snmpd in a ``dgt-N`` network
namespace (tests/labs/snmplab.py) and runs scheduled reachability checks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from diag.model import Finding
from diag.network.traps import config as trapconfig
from diag.network.traps.events import TrapEvent
from diag.network.traps.receiver import TrapReceiver
from tests.conftest import DIAG, StartAgent, free_port, stop_process, wait_for
from tests.labs.snmplab import COMMUNITY as LAB_COMMUNITY
from tests.labs.snmplab import SnmpLab

pytestmark = pytest.mark.integration

PORTS = range(20100, 20150)
COMMUNITY = "dgt-trap-community"
USER, AUTH, PRIV = "dgtnoc", "dgt-auth-secret-1", "dgt-priv-secret-1"
ENV = {**os.environ, "MIBS": "", "DGT_TRAP_COMMUNITY": COMMUNITY, "DGT_TRAP_AUTH": AUTH, "DGT_TRAP_PRIV": PRIV,
       # A v3 trap sender is the authoritative engine: net-snmp keeps its engineBoots in snmpapp.conf. Shared
       # (/var/lib/snmp) by two test runs at once, both read the same boots and the receiver rejected one as
       # out of its time window, so the counts below were off: each run keeps its own.
       "SNMP_PERSISTENT_DIR": tempfile.mkdtemp(prefix="dgt-snmp-")}  # fmt: skip
#: A v3 user for each of the other privacy protocols the SNMP client speaks, by the names both take (net-snmp's
#: -x too). SHA-1 users: its 20-octet key is extended for AES-192/256, Blumenthal's way or Reeder's (-C).
PRIV_USERS = {"AES-192": "dgtaes192", "AES-256": "dgtaes256", "AES-192-C": "dgtaes192c", "AES-256-C": "dgtaes256c",
              "DES": "dgtdes"}  # fmt: skip
MARK = "1.3.6.1.4.1.99999.9.1.0"  # a varbind each test adds with its own text, to find its notification
IF = "1.3.6.1.2.1.2.2.1"


def netsnmp(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=ENV, timeout=60, check=False)


def free_udp_port() -> int:
    return free_port(PORTS, udp=True)  # reserved for this test run (tests/conftest.py)


class Collected:
    def __init__(self) -> None:
        self.events: list[TrapEvent] = []
        self.findings: list[Finding] = []
        self.lock = threading.Lock()

    def event(self, marker: str) -> TrapEvent:
        def find() -> TrapEvent | None:
            with self.lock:
                return next((e for e in self.events if any(v == marker for _, _, v in e.varbinds)), None)

        found: TrapEvent = wait_for(find, timeout=20, what=f"the notification marked {marker}")
        return found

    def finding(self, marker: str) -> Finding:
        def find() -> Finding | None:
            with self.lock:
                return next((f for f in self.findings if marker in f.evidence[0].text), None)

        found: Finding = wait_for(find, timeout=20, what=f"the finding marked {marker}")
        return found


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[TrapReceiver, Collected, int]]:
    os.environ.update({k: ENV[k] for k in ("DGT_TRAP_COMMUNITY", "DGT_TRAP_AUTH", "DGT_TRAP_PRIV")})
    port = free_udp_port()
    cfg = trapconfig.build_standalone(
        {
            "listen": [f"127.0.0.1:{port}", f"[::1]:{port}"],
            "communities": ["env:DGT_TRAP_COMMUNITY"],
            "users": [
                {"name": USER, "auth_protocol": "SHA", "auth_key": "env:DGT_TRAP_AUTH",
                 "priv_protocol": "AES", "priv_key": "env:DGT_TRAP_PRIV"},
                {"name": "dgtauth", "auth_protocol": "SHA256", "auth_key": "env:DGT_TRAP_AUTH"},
                *({"name": u, "auth_protocol": "SHA", "auth_key": "env:DGT_TRAP_AUTH", "priv_protocol": p,
                   "priv_key": "env:DGT_TRAP_PRIV"} for p, u in PRIV_USERS.items()),
            ],
            "rate_limit": 1000,
        }
    )  # fmt: skip
    got = Collected()

    def on_event(e: TrapEvent) -> None:
        with got.lock:
            got.events.append(e)

    def on_finding(fs: list[Finding]) -> None:
        with got.lock:
            got.findings.extend(fs)

    rx = TrapReceiver(cfg, on_finding=on_finding, on_event=on_event)
    rx.start()
    try:
        yield rx, got, port
    finally:
        rx.stop()


def mark() -> str:
    return f"dgt-{uuid.uuid4().hex[:8]}"


V3_AUTHPRIV = ["-v3", "-l", "authPriv", "-u", USER, "-a", "SHA", "-A", AUTH, "-x", "AES", "-X", PRIV]

CASES = [
    # (trap OID, extra varbinds, check, severity, subject)
    (
        "1.3.6.1.6.3.1.1.5.3",
        [f"{IF}.1.7", "i", "7", f"{IF}.7.7", "i", "1", f"{IF}.8.7", "i", "2", "1.3.6.1.2.1.31.1.1.1.1.7", "s", "swp7"],
        "snmp_interface_down", "warning", "swp7",
    ),
    ("1.3.6.1.6.3.1.1.5.4", [f"{IF}.1.7", "i", "7", f"{IF}.8.7", "i", "1"], "snmp_interface_up", "info", "7"),
    ("1.3.6.1.6.3.1.1.5.1", [], "snmp_device_rebooted", "warning", ""),
    ("1.3.6.1.6.3.1.1.5.2", [], "snmp_device_rebooted", "warning", ""),
    ("1.3.6.1.6.3.1.1.5.5", [], "snmp_auth_failure", "warning", ""),
    ("1.3.6.1.4.1.99999.0.42", ["1.3.6.1.4.1.99999.3.1", "s", "psu 1 failed"], "snmp_trap", "info",
     "1.3.6.1.4.1.99999.0.42"),
]  # fmt: skip


@pytest.mark.parametrize(("trap_oid", "extra", "check", "severity", "subject"), CASES, ids=lambda v: str(v)[:24])
def test_v2c_traps_become_findings(
    receiver: tuple[TrapReceiver, Collected, int],
    trap_oid: str, extra: list[str], check: str, severity: str, subject: str,
) -> None:  # fmt: skip
    _, got, port = receiver
    m = mark()
    p = netsnmp("snmptrap", "-v2c", "-c", COMMUNITY, f"127.0.0.1:{port}", "", trap_oid, *extra, MARK, "s", m)
    assert p.returncode == 0, p.stderr
    f = got.finding(m)
    assert (f.check, f.severity, f.subject, f.host) == (check, severity, subject, "127.0.0.1")
    ev = f.evidence[0]
    assert f".1.3.6.1.6.3.1.1.4.1.0 = OID: {trap_oid}" in ev.text
    assert f".{MARK} = OCTET STRING: {m}" in ev.text
    for oid, value in zip(extra[0::3], extra[2::3], strict=True):
        assert f".{oid} = " in ev.text and ev.text.split(f".{oid} = ", 1)[1].split("\n")[0].endswith(value)
    assert ev.data["trap_oid"] == trap_oid and ev.data["version"] == "2c"


def test_v2c_inform_is_acknowledged_over_ipv4_and_ipv6(receiver: tuple[TrapReceiver, Collected, int]) -> None:
    rx, got, port = receiver
    before = rx.informs_acknowledged
    for where in (f"127.0.0.1:{port}", f"udp6:[::1]:{port}"):
        m = mark()
        p = netsnmp("snmpinform", "-v2c", "-c", COMMUNITY, "-t", "3", "-r", "1", where, "", "1.3.6.1.6.3.1.1.5.1",
                    MARK, "s", m)  # fmt: skip
        assert p.returncode == 0, p.stderr  # snmpinform exits 0 only when it got our Response
        e = got.event(m)
        assert e.kind == "inform" and e.source == ("127.0.0.1" if "127" in where else "::1")
    assert rx.informs_acknowledged == before + 2


def test_v3_authpriv_trap_and_inform_arrive(receiver: tuple[TrapReceiver, Collected, int]) -> None:
    rx, got, port = receiver
    m = mark()
    p = netsnmp("snmptrap", *V3_AUTHPRIV, f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                f"{IF}.1.3", "i", "3", MARK, "s", m)  # fmt: skip
    assert p.returncode == 0, p.stderr
    e = got.event(m)
    assert (e.version, e.kind, e.user, e.trap) == ("3", "trap", USER, "linkDown")
    assert e.engine_id and e.engine_id != rx.engine_id.hex()  # a trap comes from the sender's own engine
    m = mark()
    p = netsnmp("snmpinform", *V3_AUTHPRIV, "-t", "3", "-r", "1", f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.2",
                MARK, "s", m)  # fmt: skip
    assert p.returncode == 0, p.stderr  # discovery (our engine ID in a Report), then an encrypted Response
    e = got.event(m)
    assert (e.version, e.kind, e.user, e.engine_id) == ("3", "inform", USER, rx.engine_id.hex())
    m = mark()
    p = netsnmp("snmpinform", "-v3", "-l", "authNoPriv", "-u", "dgtauth", "-a", "SHA-256", "-A", AUTH,
                "-t", "3", "-r", "1", f"udp6:[::1]:{port}", "", "1.3.6.1.6.3.1.1.5.4", MARK, "s", m)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert got.event(m).user == "dgtauth"


def v3(user: str, protocol: str, priv: str = PRIV) -> list[str]:
    return ["-v3", "-l", "authPriv", "-u", user, "-a", "SHA", "-A", AUTH, "-x", protocol, "-X", priv]


#: Values of every type snmptrap sends (-x encrypts them all), and a string long enough for many cipher blocks.
TYPED = [
    (f"{IF}.1.3", "i", "3", "INTEGER", "3"),
    (f"{IF}.10.3", "c", "4294967295", "Counter32", "4294967295"),
    (f"{IF}.5.3", "u", "1000000000", "Gauge32", "1000000000"),
    ("1.3.6.1.2.1.4.20.1.1.192.0.2.1", "a", "192.0.2.1", "IpAddress", "192.0.2.1"),
    ("1.3.6.1.4.1.99999.9.2.0", "x", "00FF10", "OCTET STRING", "00 FF 10"),
    ("1.3.6.1.4.1.99999.9.3.0", "o", "1.3.6.1.4.1.99999.42", "OID", "1.3.6.1.4.1.99999.42"),
    ("1.3.6.1.4.1.99999.9.4.0", "t", "12345", "Timeticks", "12345"),
    ("1.3.6.1.4.1.99999.9.5.0", "s", "psu 2 " + "x" * 400, "OCTET STRING", "psu 2 " + "x" * 400),
]


@pytest.mark.parametrize("protocol", ["AES", *PRIV_USERS])
def test_v3_trap_and_inform_with_every_privacy_protocol(
    receiver: tuple[TrapReceiver, Collected, int], protocol: str
) -> None:
    """net-snmp's snmptrap and snmpinform with each privacy protocol: the notification arrives with exactly the
    varbinds sent, and snmpinform decrypts our Response (it exits 0 only then)."""
    rx, got, port = receiver
    user = PRIV_USERS.get(protocol, USER)
    before = rx.rejected["decrypt_failed"]
    sent = [a for oid, t, v, _, _ in TYPED for a in (oid, t, v)]
    expected = [("1.3.6.1.6.3.1.1.4.1.0", "OID", "1.3.6.1.4.1.99999.0.7"), *((o, t, v) for o, _, _, t, v in TYPED)]
    for command, kind in (("snmptrap", "trap"), ("snmpinform", "inform")):
        m = mark()
        extra = ["-t", "5", "-r", "1"] if kind == "inform" else []
        p = netsnmp(command, *v3(user, protocol), *extra, f"127.0.0.1:{port}", "", "1.3.6.1.4.1.99999.0.7",
                    *sent, MARK, "s", m)  # fmt: skip
        assert p.returncode == 0, p.stderr
        e = got.event(m)
        assert (e.version, e.kind, e.user) == ("3", kind, user)
        assert e.varbinds[0][:2] == ("1.3.6.1.2.1.1.3.0", "Timeticks")  # snmptrap's own uptime
        assert e.varbinds[1:] == [*expected, (MARK, "OCTET STRING", m)]
    assert rx.rejected["decrypt_failed"] == before


#: (configured protocol, what the sender uses): the other key extension of the same cipher is another key.
MISMATCHED = [("AES-256-C", "AES-256"), ("AES-256", "AES-256-C"), ("AES-192-C", "AES-192"), ("AES-192", "AES-192-C")]


@pytest.mark.parametrize(("configured", "sender"), [*MISMATCHED, ("AES-256-C", "wrong-pass"), ("DES", "wrong-pass")])
def test_wrong_key_extension_or_privacy_password_is_a_decryption_failure(
    receiver: tuple[TrapReceiver, Collected, int], configured: str, sender: str
) -> None:
    """Never delivered, counted as decrypt_failed; an inform gets our decryptionErrors Report instead of a Response."""
    rx, got, port = receiver
    user = PRIV_USERS[configured]
    args = v3(user, configured, "wrong-priv-secret") if sender == "wrong-pass" else v3(user, sender)
    before = dict(rx.rejected)
    m = mark()
    p = netsnmp("snmptrap", *args, f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3", MARK, "s", m)
    assert p.returncode == 0, p.stderr
    wait_for(lambda: rx.rejected["decrypt_failed"] == before["decrypt_failed"] + 1, timeout=20,
             what="the trap to be counted as a decryption failure")  # fmt: skip
    p = netsnmp("snmpinform", *args, "-t", "3", "-r", "0", f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                MARK, "s", m)  # fmt: skip
    assert p.returncode != 0 and "Decryption error" in p.stderr, p.stderr
    assert rx.rejected["decrypt_failed"] == before["decrypt_failed"] + 2
    changed = {k: rx.rejected[k] - before[k] for k in rx.rejected if rx.rejected[k] != before[k]}
    assert changed == {"decrypt_failed": 2, "unknown_engine_id": 1}  # the inform's discovery, then the inform
    assert not any(m in v for e in got.events for _, _, v in e.varbinds)


def test_wrong_credentials_are_rejected_and_counted(receiver: tuple[TrapReceiver, Collected, int]) -> None:
    rx, got, port = receiver
    before = dict(rx.rejected)
    m = mark()
    assert netsnmp("snmptrap", "-v2c", "-c", "not-the-community", f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                   MARK, "s", m).returncode == 0  # fmt: skip
    wrong_auth = ["-v3", "-l", "authPriv", "-u", USER, "-a", "SHA", "-A", "wrong-auth-pass", "-x", "AES", "-X", PRIV]
    p = netsnmp("snmpinform", *wrong_auth, "-t", "1", "-r", "0", f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.1",
                MARK, "s", m)  # fmt: skip
    assert p.returncode != 0 and "Authentication failure" in p.stderr  # our wrongDigests Report
    netsnmp("snmptrap", *wrong_auth, f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.1", MARK, "s", m)
    wrong_priv = [*V3_AUTHPRIV[:-1], "wrong-priv-pass"]
    netsnmp("snmptrap", *wrong_priv, f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.1", MARK, "s", m)
    netsnmp("snmptrap", "-v3", "-l", "authNoPriv", "-u", "nobody", "-a", "SHA", "-A", AUTH, f"127.0.0.1:{port}", "",
            "1.3.6.1.6.3.1.1.5.1", MARK, "s", m)  # fmt: skip

    def counted() -> bool:
        d = {k: rx.rejected[k] - before[k] for k in rx.rejected}
        return d["bad_community"] == 1 and d["bad_auth"] == 2 and d["decrypt_failed"] == 1 and d["unknown_user"] == 1

    wait_for(counted, timeout=20, what="the rejections to be counted")
    assert not any(m in v for e in got.events for _, _, v in e.varbinds)


def test_garbage_does_not_stop_the_receiver(receiver: tuple[TrapReceiver, Collected, int]) -> None:
    rx, got, port = receiver
    before = rx.rejected["malformed"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", os.urandom(300), b"\x30\x03\x02\x01\x01" * 50):
            s.sendto(junk, ("127.0.0.1", port))
    wait_for(lambda: rx.rejected["malformed"] >= before + 4, timeout=20, what="the garbage to be counted")
    m = mark()
    assert netsnmp("snmptrap", "-v2c", "-c", COMMUNITY, f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.4",
                   MARK, "s", m).returncode == 0  # fmt: skip
    assert got.event(m).trap == "linkUp"


def test_v1_trap(receiver: tuple[TrapReceiver, Collected, int]) -> None:
    _, got, port = receiver
    m = mark()
    p = netsnmp("snmptrap", "-v1", "-c", COMMUNITY, f"127.0.0.1:{port}", "1.3.6.1.4.1.8072.3.2.10", "192.0.2.77",
                "2", "0", "", f"{IF}.1.4", "i", "4", MARK, "s", m)  # fmt: skip
    assert p.returncode == 0, p.stderr
    f = got.finding(m)
    assert (f.check, f.subject) == ("snmp_interface_down", "4")
    assert got.event(m).agent_address == "192.0.2.77"


def test_cli_listen_json_end_to_end(tmp_path: Path) -> None:
    port = free_udp_port()
    proc = subprocess.Popen(
        [DIAG, "traps", "listen", "--listen", f"127.0.0.1:{port}", "--json", "--community-env", "DGT_TRAP_COMMUNITY"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "listening for SNMP traps on udp 127.0.0.1" in proc.stderr.readline()
        m1, m2 = mark(), mark()
        assert netsnmp("snmptrap", "-v2c", "-c", COMMUNITY, f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                       f"{IF}.1.9", "i", "9", MARK, "s", m1).returncode == 0  # fmt: skip
        p = netsnmp("snmpinform", "-v2c", "-c", COMMUNITY, "-t", "3", f"127.0.0.1:{port}", "", "1.3.6.1.4.1.99999.0.1",
                    MARK, "s", m2)  # fmt: skip
        assert p.returncode == 0, p.stderr
        first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
    finally:
        status = stop_process(proc, signal.SIGINT)
    assert status == 0
    assert (first["trap"], first["kind"], first["findings"][0]["check"]) == ("linkDown", "trap", "snmp_interface_down")
    assert {"oid": MARK, "type": "OCTET STRING", "value": m1} in first["varbinds"]
    assert (second["kind"], second["trap"], second["findings"][0]["subject"]) == (
        "inform",
        "unknown",
        "1.3.6.1.4.1.99999.0.1",
    )
    assert COMMUNITY not in json.dumps([first, second])
    rest = proc.stderr.read()
    assert "received 2 notifications, rejected 0" in rest


def test_cli_listen_v3_user_with_a_named_privacy_protocol() -> None:
    """``-x`` takes the client's names in any case: Cisco's AES-256 (AES-256-C) arrives; net-snmp's AES-256 from
    the same user is the other key extension, counted and logged with what to check, never printed."""
    port = free_udp_port()
    proc = subprocess.Popen(
        [DIAG, "traps", "listen", "--listen", f"127.0.0.1:{port}", "--json", "-u", "dgtcisco",
         "--auth-key-env", "DGT_TRAP_AUTH", "-x", "aes-256-c", "--priv-key-env", "DGT_TRAP_PRIV"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "listening for SNMP traps on udp 127.0.0.1" in proc.stderr.readline()
        wrong, right = mark(), mark()
        for protocol, m in (("AES-256", wrong), ("AES-256-C", right)):  # one thread, in order: right comes last
            p = netsnmp("snmptrap", *v3("dgtcisco", protocol), f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                        f"{IF}.1.9", "i", "9", MARK, "s", m)  # fmt: skip
            assert p.returncode == 0, p.stderr
        event = json.loads(proc.stdout.readline())
    finally:
        status = stop_process(proc, signal.SIGINT)
    assert status == 0
    assert (event["version"], event["user"], event["trap"]) == ("3", "dgtcisco", "linkDown")
    assert {"oid": MARK, "type": "OCTET STRING", "value": right} in event["varbinds"]
    assert proc.stdout.read() == ""  # the wrong one was never printed
    rest = proc.stderr.read()
    assert "cannot decrypt: wrong privacy password, or the sender uses AES-256 (the other key extension)?" in rest
    assert "received 1 notifications, rejected 1 (decrypt_failed 1)" in rest
    assert AUTH not in rest and PRIV not in rest


def test_cli_refuses_to_run_without_credentials() -> None:
    p = subprocess.run([DIAG, "traps", "listen", "--listen", "127.0.0.1:20149"], capture_output=True, text=True,
                       timeout=30, check=False)  # fmt: skip
    assert p.returncode == 2
    assert "traps needs at least one community or v3 user" in p.stderr


@pytest.fixture(scope="module")
def snmp_lab() -> Iterator[SnmpLab]:
    if os.geteuid() != 0:
        pytest.fail("the SNMP lab needs root (network namespaces); CI runs the tests as root")
    with SnmpLab(interfaces=4, prefix="dgt", net=236) as lab:
        yield lab


def test_agent_traps_poller_and_reach(
    start_agent: StartAgent, snmp_lab: SnmpLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGT_TRAP_COMMUNITY", COMMUNITY)
    monkeypatch.setenv("DGT_LAB_COMMUNITY", LAB_COMMUNITY)
    trap_port = free_udp_port()
    closed = free_port([p for p in reversed(PORTS) if p != trap_port])  # reserved: nothing will listen there
    inventory = f"""
hosts:
  sw-lab: {{address: 127.0.0.1}}
  snmp-dev:
    address: {snmp_lab.address}
    snmp: {{version: "2c", community: env:DGT_LAB_COMMUNITY, profiles: [system, if_mib], timeout: 2}}
agent:
  snmp_poll: {{interval: 2}}
  traps:
    listen: ["127.0.0.1:{trap_port}"]
    communities: [env:DGT_TRAP_COMMUNITY]
  probes:
    reach:
      interval: 2
      checks:
        - {{type: ping, target: 127.0.0.1, count: 2, timeout: 1}}
        - {{type: tcp, target: 127.0.0.1, port: {closed}, timeout: 1}}
"""
    agent = start_agent(inventory)
    m = mark()
    assert netsnmp("snmptrap", "-v2c", "-c", COMMUNITY, f"127.0.0.1:{trap_port}", "", "1.3.6.1.6.3.1.1.5.3",
                   f"{IF}.1.2", "i", "2", MARK, "s", m).returncode == 0  # fmt: skip
    netsnmp("snmptrap", "-v2c", "-c", "wrong", f"127.0.0.1:{trap_port}", "", "1.3.6.1.6.3.1.1.5.3")

    def scraped() -> str | None:
        text = agent.metrics()
        ok = (
            'diag_snmp_traps_received_total{trap="linkDown"} 1.0' in text
            and 'diag_snmp_traps_rejected_total{reason="bad_community"} 1.0' in text
            and "diag_snmp_poll_devices 1.0" in text
            and 'diag_reach_up{check="ping",target="127.0.0.1"} 1.0' in text
        )
        return text if ok else None

    text = wait_for(scraped, timeout=60, what="trap, poll and reach metrics in /metrics")
    assert 'diag_probe_success{probe="snmp_poll"} 1.0' in text
    assert "diag_snmp_poll_devices_down 0.0" in text
    findings = [line for line in text.splitlines() if line.startswith("diag_finding{")]
    assert any(
        'check="reach_tcp_port"' in line and 'severity="critical"' in line and f'subject="127.0.0.1:{closed}"' in line
        for line in findings
    ), findings
    status, _ = agent.get("/traps")
    assert status == 401  # trap contents need an API token, like everything but the scrape endpoints
    data_dir = agent.args[agent.args.index("--data") + 1]
    made = subprocess.run([DIAG, "api", "token", "add", "noc", "--role", "viewer", "--data", data_dir],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    req = urllib.request.Request(agent.url + "/traps", headers={"Authorization": f"Bearer {made.stdout.strip()}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        status, body = r.status, r.read()
    assert status == 200
    (event,) = [
        e for e in json.loads(body)["events"] if {"oid": MARK, "type": "OCTET STRING", "value": m} in e["varbinds"]
    ]
    f = event["findings"][0]
    assert (event["host"], f["check"], f["subject"], f["host"]) == ("sw-lab", "snmp_interface_down", "2", "sw-lab")
    status, body = agent.get("/snmp/inventory")
    assert status == 200 and b'diag_snmp_up{profile="if_mib",target="snmp-dev"} 1.0' in body
    health = agent.health()
    assert health["traps"]["received"] == 1 and health["traps"]["rejected"] == {"bad_community": 1}
    assert "finding warning sw-lab snmp_interface_down" in agent.stderr()  # the sink until incidents are wired
    assert COMMUNITY not in agent.stderr()
    assert agent.stop() == 0


def incidents(agent_args: list[str]) -> list[dict[str, object]]:
    inv = agent_args[agent_args.index("--inventory") + 1]
    data = agent_args[agent_args.index("--data") + 1]
    p = subprocess.run([DIAG, "incidents", "list", "--all", "--json", "-i", inv, "--data", data],
                       capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if p.returncode != 0:
        return []
    rows: list[dict[str, object]] = json.loads(p.stdout)["incidents"]
    return rows


def test_agent_trap_opens_an_incident_and_link_up_resolves_it_after_a_poll(
    start_agent: StartAgent, snmp_lab: SnmpLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGT_TRAP_COMMUNITY", COMMUNITY)
    monkeypatch.setenv("DGT_LAB_COMMUNITY", LAB_COMMUNITY)
    trap_port = free_udp_port()
    inventory = f"""
hosts:
  snmp-dev:
    address: {snmp_lab.address}
    snmp: {{version: "2c", community: env:DGT_LAB_COMMUNITY, profiles: [system, if_mib], timeout: 2}}
agent:
  snmp_poll: {{interval: 300}}
  traps:
    listen: ["{snmp_lab.host_address}:{trap_port}"]
    communities: [env:DGT_TRAP_COMMUNITY]
  incidents: {{open_after: 0, close_after: 0, tickets: {{backend: local}}}}
"""
    agent = start_agent(inventory)

    def trap_from_device(oid: str) -> None:
        # Sent from inside the device's namespace, so the source address is the inventory host's.
        p = subprocess.run(
            ["ip", "netns", "exec", snmp_lab.netns, "snmptrap", "-v2c", "-c", COMMUNITY,
             f"{snmp_lab.host_address}:{trap_port}", "", oid, f"{IF}.1.3", "i", "3",
             "1.3.6.1.2.1.31.1.1.1.1.3", "s", "p0"],
            capture_output=True, text=True, env=ENV, timeout=30, check=False,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr

    trap_from_device("1.3.6.1.6.3.1.1.5.3")  # linkDown of p0, which is really up in the lab

    def opened() -> dict[str, object] | None:
        return next((i for i in incidents(agent.args) if i["check"] == "snmp_interface_down"), None)

    inc = wait_for(opened, timeout=60, what="an incident for the linkDown trap")
    assert (inc["host"], inc["subject"], inc["severity"]) == ("snmp-dev", "p0", "warning")
    assert inc["state"] in ("open", "pending")
    trap_from_device("1.3.6.1.6.3.1.1.5.4")  # linkUp: the engine re-checks by polling snmp-dev, p0 is up

    def resolved() -> dict[str, object] | None:
        return next((i for i in incidents(agent.args) if i["id"] == inc["id"] and i["state"] == "resolved"), None)

    wait_for(resolved, timeout=60, what="the incident resolved after the linkUp re-check")
    assert agent.stop() == 0


def test_cli_listen_stops_cleanly_on_sigterm() -> None:
    port = free_udp_port()
    proc = subprocess.Popen(
        [DIAG, "traps", "listen", "--listen", f"[::1]:{port}", "--community-env", "DGT_TRAP_COMMUNITY"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    assert f"listening for SNMP traps on udp [::1]:{port}" in proc.stderr.readline()
    m = mark()
    assert netsnmp("snmptrap", "-v2c", "-c", COMMUNITY, f"udp6:[::1]:{port}", "", "1.3.6.1.6.3.1.1.5.1",
                   MARK, "s", m).returncode == 0  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the rich line of the coldStart
    assert "coldStart" in line and "device restarted" in line
    assert stop_process(proc, signal.SIGTERM) == 0
    assert "received 1 notifications, rejected 0" in proc.stderr.read()
