"""The client's behaviour on agents that misbehave: tooBig, garbage, loops, disorder, stale answers, wrong types.

A small scripted agent on 127.0.0.1 (ports 19500-19599) answers with BER built here; each fault is one
switch. The real snmpd tests (tests/integration/test_snmp.py) cover the well-behaved paths.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from diag.model import Result
from diag.network.snmp import ber, profiles
from diag.network.snmp import client as snmp
from diag.network.snmp.parallel import walk_split
from tests.conftest import DIAG, free_port

DEAD_UDP_PORTS = range(20780, 20790)  # reserved per test run; nothing listens there

ROOT = "1.3.6.1.2.1.2.2.1"


def enc_value(tag: int, value: Any) -> bytes:
    if tag == ber.INTEGER:
        return ber.enc_int(value)
    if tag in ber.UNSIGNED:
        return ber.tlv(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big"))
    if tag == ber.OCTET_STRING:
        return ber.tlv(tag, value)
    return ber.tlv(tag, b"")


class FakeAgent:
    """Answers GET/GETNEXT/GETBULK from a sorted table; ``fault`` picks a misbehaviour."""

    def __init__(self, table: dict[str, tuple[int, Any]], fault: str = "") -> None:
        self.rows = self.sorted_rows(table)
        self.fault = fault
        self.max_bulk = 1000
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))  # the kernel's free UDP port: no range to collide with another run
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.requests: list[tuple[int, int]] = []  # (pdu, max-repetitions)
        self.version = 1
        self.delay = 0.2  # seconds a "slow" answer takes
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def sorted_rows(table: dict[str, tuple[int, Any]]) -> list[tuple[bytes, int, Any]]:
        return sorted(((ber.encode_oid(o), tag, v) for o, (tag, v) in table.items()), key=lambda r: ber.arcs(r[0]))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()

    def after(self, oid: bytes) -> list[tuple[bytes, int, Any]]:
        key = ber.arcs(oid)
        return [r for r in self.rows if ber.arcs(r[0]) > key]

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            version, _, pdu, rid, _, b, vbs = ber.decode_response(data)  # requests share the layout
            self.requests.append((pdu, b))
            self.version = version
            if self.fault == "garbage":
                self.sock.sendto(b"\x30\x05\x02\x01\x01\x04\x09", peer)
                continue
            if self.fault == "stale":  # an old answer first, then the right one
                self.sock.sendto(self.reply(rid - 7, 0, [(self.rows[0][0], ber.INTEGER, 99)]), peer)
            status, out = 0, []
            if pdu == ber.GET:
                if self.fault == "toobig" and len(vbs) > 2:
                    status = ber.TOO_BIG
                else:
                    have = {r[0]: r for r in self.rows}
                    out = [have.get(o, (o, ber.NO_SUCH_OBJECT, None)) for o, _, _ in vbs]
                    missing = [i for i, o in enumerate(vbs, 1) if o[0] not in have]
                    if version == 0 and missing:  # v1: the whole request fails, naming the first missing OID
                        self.sock.sendto(self.reply(rid, 2, [(o, ber.NULL, None) for o, _, _ in vbs], missing[0]), peer)
                        continue
            elif pdu == ber.GETNEXT:
                nxt = self.after(vbs[0][0])
                out = nxt[:1] or [(vbs[0][0], ber.END_OF_MIB_VIEW, None)]
            elif pdu == ber.GETBULK:
                if self.fault == "slow" and b > 8:  # large answers take long (a busy device)
                    time.sleep(self.delay)
                if self.fault == "toobig" and b > 4:
                    status = ber.TOO_BIG
                else:
                    out = self.after(vbs[0][0])[: min(b, self.max_bulk)]
                    if self.fault == "loop":  # the same two rows whatever is asked: a walk would never end
                        out = self.rows[:2]
                    if self.fault == "repeat" and len(out) > 1:  # each answer gives its first OID twice
                        out = [out[0], out[0]]
                    if self.fault == "disorder":  # a switch's agent: rows 5 and 6 in the wrong order in an answer
                        at = [k for k, r in enumerate(out) if r[0] in (self.rows[4][0], self.rows[5][0])]
                        if len(at) == 2:
                            out[at[0]], out[at[1]] = out[at[1]], out[at[0]]
                    out = out or [(vbs[0][0], ber.END_OF_MIB_VIEW, None)]
            self.sock.sendto(self.reply(rid, status, out), peer)

    def reply(self, rid: int, status: int, vbs: list[tuple[bytes, int, Any]], index: int = 0) -> bytes:
        body = b"".join(ber.tlv(0x30, ber.tlv(ber.OBJECT_ID, o) + enc_value(t, v)) for o, t, v in vbs)
        pdu = ber.tlv(ber.RESPONSE, ber.enc_int(rid) + ber.enc_int(status) + ber.enc_int(index) + ber.tlv(0x30, body))
        return ber.tlv(0x30, ber.enc_int(self.version) + ber.tlv(ber.OCTET_STRING, b"public") + pdu)


TABLE: dict[str, tuple[int, Any]] = {
    **{f"{ROOT}.2.{i}": (ber.OCTET_STRING, f"eth{i}".encode()) for i in range(1, 31)},
    **{f"{ROOT}.10.{i}": (ber.COUNTER32, i * 1000) for i in range(1, 31)},
    "1.3.6.1.2.1.2.3.0": (ber.INTEGER, 5),  # past the table: ends the walk
}


@pytest.fixture
def agent(request: pytest.FixtureRequest) -> Iterator[FakeAgent]:
    a = FakeAgent(TABLE, getattr(request, "param", ""))
    yield a
    a.close()


def target(a: FakeAgent, timeout: float = 3.0, **kw: Any) -> snmp.Target:
    """The agent thread answers in microseconds, but on a loaded machine (two cores, other suites) a thread may
    wait a few hundred ms for a CPU: a 0.3 s timeout then sent a request again, which added a request to the
    counts below and halved max-repetitions. Tests of timeouts and slowness set their own, with a wide margin."""
    return snmp.Target("127.0.0.1", a.port, timeout=timeout, retries=1, **kw)


def test_walk_in_order(agent: FakeAgent) -> None:
    with snmp.Session(target(agent, max_repetitions=7)) as s:
        got = s.walk(ROOT)
    assert [o for o, _, _ in got] == [f"{ROOT}.2.{i}" for i in range(1, 31)] + [f"{ROOT}.10.{i}" for i in range(1, 31)]
    assert got[0] == (f"{ROOT}.2.1", "OCTET STRING", b"eth1") and got[-1] == (f"{ROOT}.10.30", "Counter32", 30000)


def test_walk_across_multibyte_arcs_of_different_lengths() -> None:
    """16383 then 16384: the BER bytes go down (ff 7f, then 81 80 00) while the OIDs go up."""
    idx = [1, 127, 128, 16383, 16384, 2**21, 2**28]
    a = FakeAgent({**{f"{ROOT}.2.{i}": (ber.INTEGER, i) for i in idx}, "1.3.6.1.2.1.3.0": (ber.INTEGER, 0)})
    try:
        with snmp.Session(target(a, max_repetitions=3)) as s:
            assert [v for _, _, v in s.walk(ROOT)] == idx
    finally:
        a.close()


@pytest.mark.parametrize("agent", ["toobig"], indirect=True)
def test_toobig_halves_max_repetitions_and_splits_gets(agent: FakeAgent) -> None:
    with snmp.Session(target(agent, max_repetitions=40)) as s:
        walked = s.walk(ROOT)
        got = s.get([f"{ROOT}.2.{i}" for i in range(1, 9)])
        assert s.max_repetitions == 2  # 40 -> 20 -> 10 -> 5 -> 2: the first size the agent accepts
    assert len(walked) == 60
    assert [v for _, _, v in got] == [f"eth{i}".encode() for i in range(1, 9)]
    assert [b for pdu, b in agent.requests if pdu == ber.GETBULK][:5] == [40, 20, 10, 5, 2]


@pytest.mark.parametrize("agent", ["slow"], indirect=True)
def test_slow_answers_halve_max_repetitions(agent: FakeAgent) -> None:
    # "slow" is an answer after more than half the timeout: 1.2 s of 2 s. Fast answers must come within 1 s,
    # which a loaded machine keeps (0.2 s of 0.3 s left 0.15 s for them, and a late one halved once more).
    agent.delay = 1.2
    with snmp.Session(target(agent, timeout=2.0, max_repetitions=32)) as s:
        assert len(s.walk(ROOT)) == 60
        assert s.max_repetitions == 8  # 32 -> 16 -> 8, then answers come fast
    assert [b for pdu, b in agent.requests if pdu == ber.GETBULK][:3] == [32, 16, 8]


@pytest.mark.parametrize("agent", ["garbage"], indirect=True)
def test_garbage_is_a_one_line_error(agent: FakeAgent) -> None:
    with pytest.raises(snmp.SnmpError, match=rf"^127\.0\.0\.1:{agent.port}: malformed answer \(7 bytes\): "):
        snmp.Session(target(agent)).get(["1.3.6.1.2.1.2.3.0"])


@pytest.mark.parametrize("agent", ["loop"], indirect=True)
def test_a_loop_keeps_what_came_before_with_a_warning(agent: FakeAgent) -> None:
    """The agent answers the same two rows to every request. The second answer is not after the OID asked for
    (snmpbulkwalk's check): the walk ends; with the check off (-Cc) an answer that brings nothing new ends it."""
    with snmp.Session(target(agent)) as s:
        got = s.walk(ROOT)
        assert [o for o, _, _ in got] == [f"{ROOT}.2.1", f"{ROOT}.2.2"]
        assert got.warning == (
            f"127.0.0.1:{agent.port}: OIDs not increasing: {ROOT}.2.1 after {ROOT}.2.2: walk of {ROOT} stopped, "
            "2 values kept (--no-check-increasing walks on past this)"
        )
        unchecked = s.walk(ROOT, check_increasing=False)
    assert [o for o, _, _ in unchecked] == [f"{ROOT}.2.1", f"{ROOT}.2.2"]
    assert unchecked.warning == (
        f"127.0.0.1:{agent.port}: OID {ROOT}.2.2 came again after {ROOT}.2.2 (loop): "
        f"walk of {ROOT} stopped, 2 values kept"
    )


@pytest.mark.parametrize("agent", ["repeat"], indirect=True)
def test_an_oid_repeated_inside_answers_is_kept_once_and_the_walk_goes_on(agent: FakeAgent) -> None:
    with snmp.Session(target(agent)) as s:
        got = s.walk(ROOT)
    assert got.warning == "" and [o for o, _, _ in got] == list(TABLE)[:-1]


@pytest.mark.parametrize("agent", ["disorder"], indirect=True)
def test_out_of_order_answers_keep_every_row_as_snmpbulkwalk_does(agent: FakeAgent) -> None:
    """Rows 5 and 6 come swapped inside an answer, both after the OID asked for: snmpbulkwalk checks each OID
    against the request only and prints all 60 (an H3C E528 recording: 114,847 values, where a check against
    the previous OID stopped at 6,583). Kept in the order received, with a note and no warning."""
    with snmp.Session(target(agent, max_repetitions=4)) as s:
        got = s.walk(ROOT)
        every = s.walk(ROOT, check_increasing=False)
    order = [o for o, _, _ in got]
    assert order[:7] == [f"{ROOT}.2.{i}" for i in (1, 2, 3, 4, 6, 5, 7)] and len(order) == 60
    assert set(order) == {f"{ROOT}.{c}.{i}" for c in (2, 10) for i in range(1, 31)}
    assert got.warning == "" and got.disorder == (
        f"127.0.0.1:{agent.port}: OIDs out of order inside an answer ({ROOT}.2.5 after {ROOT}.2.6); every value kept"
    )
    assert every.warning == every.disorder == "" and [o for o, _, _ in every] == order


@pytest.mark.parametrize("agent", ["disorder"], indirect=True)
def test_cli_walk_prints_every_row_and_notes_the_disorder(agent: FakeAgent) -> None:
    argv = [DIAG, "snmp", "walk", "-c", "public", "-t", "3", f"127.0.0.1:{agent.port}", ROOT]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 60 and lines[3:6] == [f".{ROOT}.2.{i} = OCTET STRING: eth{i}" for i in (4, 6, 5)]
    assert p.stderr.startswith(f"diag: warning: 127.0.0.1:{agent.port}: OIDs out of order inside an answer")
    p = subprocess.run([*argv[:3], "-Cc", *argv[3:]], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "" and len(p.stdout.splitlines()) == 60


@pytest.mark.parametrize("agent", ["loop"], indirect=True)
def test_cli_walk_prints_what_it_got_and_exits_1_when_the_agent_goes_back(agent: FakeAgent) -> None:
    argv = [DIAG, "snmp", "walk", "-c", "public", "-t", "3", f"127.0.0.1:{agent.port}", ROOT]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stdout.splitlines() == [f".{ROOT}.2.{i} = OCTET STRING: eth{i}" for i in (1, 2)]
    assert p.stderr.startswith(f"diag: warning: 127.0.0.1:{agent.port}: OIDs not increasing: ")


def test_cli_parses_the_inventory_only_when_its_text_may_name_the_target(agent: FakeAgent, tmp_path: Any) -> None:
    # A broken ./inventory.yaml that does not mention the address: the walk does not parse it (start-up CPU)...
    (tmp_path / "inventory.yaml").write_text("hosts:\n  dev1: {address: 127.0.0.9}\n  broken: [\n")
    walk = [DIAG, "snmp", "walk", "-c", "public", "-t", "3"]  # 3 s: the scripted agent is a thread (see target())
    p = subprocess.run(
        [*walk, f"127.0.0.1:{agent.port}", ROOT], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (p.returncode, p.stderr, len(p.stdout.splitlines())) == (0, "", 60)
    # ...and a target it names is looked up in it, so the broken file is reported with its line.
    p = subprocess.run([*walk, f"dev1:{agent.port}", ROOT], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("inventory.yaml:") and p.stdout == ""


def test_walk_of_a_scalar_falls_back_to_get(agent: FakeAgent) -> None:
    with snmp.Session(target(agent)) as s:
        assert s.walk("1.3.6.1.2.1.2.3.0") == []  # nothing under it
        assert s.walk("1.3.6.1.2.1.2.3.0", get_fallback=True) == [("1.3.6.1.2.1.2.3.0", "INTEGER", 5)]
        assert s.walk("1.3.6.1.2.1.2.4.0", get_fallback=True) == []  # not there at all: nothing
    p = subprocess.run(
        [DIAG, "snmp", "walk", "-c", "public", "-t", "3", f"127.0.0.1:{agent.port}", "1.3.6.1.2.1.2.3.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (p.returncode, p.stdout) == (0, ".1.3.6.1.2.1.2.3.0 = INTEGER: 5\n")


def test_v1_get_asks_again_without_the_missing_oid(agent: FakeAgent) -> None:
    oids = [f"{ROOT}.2.1", "1.3.6.1.2.1.2.9.0", f"{ROOT}.10.3", "1.3.6.1.2.1.2.8.0"]
    with snmp.Session(target(agent, version="1")) as s:
        got = s.get(oids)
    assert got == [
        (f"{ROOT}.2.1", "OCTET STRING", b"eth1"),
        ("1.3.6.1.2.1.2.9.0", "noSuchObject", None),
        (f"{ROOT}.10.3", "Counter32", 3000),
        ("1.3.6.1.2.1.2.8.0", "noSuchObject", None),
    ]
    assert [pdu for pdu, _ in agent.requests] == [ber.GET] * 3  # all four, then three, then two


@pytest.mark.parametrize("agent", ["stale"], indirect=True)
def test_stale_answers_are_dropped(agent: FakeAgent) -> None:
    with snmp.Session(target(agent)) as s:
        assert s.get(["1.3.6.1.2.1.2.3.0"]) == [("1.3.6.1.2.1.2.3.0", "INTEGER", 5)]


def test_no_agent_is_a_clear_error() -> None:
    # a reserved UDP port where nothing listens: below the kernel's ephemeral range, so no client socket gets it
    # either (a kernel port, freed here, could go to another process's UDP client before the request arrived)
    port = free_port(DEAD_UDP_PORTS, udp=True)
    with pytest.raises(snmp.SnmpError, match=rf"^127\.0\.0\.1:{port}: port unreachable"):
        snmp.Session(snmp.Target("127.0.0.1", port, timeout=3.0)).get(["1.3.6.1.2.1.1.3.0"])


def test_silent_agent_times_out_and_halves_bulk() -> None:
    """A socket that reads requests and never answers (a device that drops big requests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.1", 0))  # the kernel's free UDP port
        port = quiet.getsockname()[1]
        s = snmp.Session(snmp.Target("127.0.0.1", port, timeout=0.1, retries=2, max_repetitions=64))
        with pytest.raises(
            snmp.SnmpTimeout, match=r"no answer: wrong community or host down \(timeout 0.1s, 3 tries\)"
        ):
            s.walk(ROOT)
        assert s.max_repetitions == 16
        s.close()


def test_wrong_type_in_a_profile_column_is_a_finding(tmp_path: Any) -> None:
    table = {
        **{f"1.3.6.1.2.1.31.1.1.1.1.{i}": (ber.OCTET_STRING, f"eth{i}".encode()) for i in (1, 2)},
        "1.3.6.1.2.1.31.1.1.1.6.1": (ber.COUNTER64, 2**40),
        "1.3.6.1.2.1.31.1.1.1.6.2": (ber.OCTET_STRING, b"lots"),  # a broken agent
        "1.3.6.1.2.1.99.0": (ber.INTEGER, 1),
    }
    (tmp_path / "t.yaml").write_text(
        "description: test\n"
        "tables:\n"
        "  - name: t\n"
        "    index: ifIndex\n"
        "    labels: {ifName: 1.3.6.1.2.1.31.1.1.1.1}\n"
        "    metrics:\n"
        "      - {name: in_octets, oid: 1.3.6.1.2.1.31.1.1.1.6, kind: counter, help: bytes in}\n"
    )
    a = FakeAgent(table)
    try:
        r = profiles.poll(target(a), [profiles.load("t", tmp_path)])
    finally:
        a.close()
    m = next(m for m in r.metrics if m.name == "diag_snmp_in_octets")
    assert m.samples == [(("1", "eth1"), float(2**40))]
    assert [f.check for f in r.findings] == ["snmp_bad_value"]
    assert "1.3.6.1.2.1.31.1.1.1.6.2 (OCTET STRING)" in r.findings[0].evidence[0].text


def test_utilisation_rising_errors_and_reboot_rules() -> None:
    """Two polls of the shipped system + if_mib profiles against a scripted agent whose counters move."""
    ifx, ift = "1.3.6.1.2.1.31.1.1.1", "1.3.6.1.2.1.2.2.1"

    def table(uptime: int, octets: tuple[int, int], errors: int) -> dict[str, tuple[int, Any]]:
        t: dict[str, tuple[int, Any]] = {"1.3.6.1.2.1.1.3.0": (ber.TIMETICKS, uptime)}
        for i in (1, 2):
            t |= {
                f"{ifx}.1.{i}": (ber.OCTET_STRING, f"eth{i}".encode()),
                f"{ifx}.6.{i}": (ber.COUNTER64, octets[i - 1]),
                f"{ifx}.15.{i}": (ber.GAUGE32, 8),  # 8 Mbit/s = 1,000,000 bytes/s
                f"{ift}.7.{i}": (ber.INTEGER, 1),
                f"{ift}.8.{i}": (ber.INTEGER, 1),
                f"{ift}.14.{i}": (ber.COUNTER32, errors if i == 2 else 0),
            }
        return t | {"1.3.6.1.2.1.99.0": (ber.INTEGER, 0)}

    ps = [profiles.load("system"), profiles.load("if_mib")]
    state = profiles.PollState()
    a = FakeAgent(table(50_000, (0, 0), 3))
    try:
        first = profiles.poll(target(a, name="sw"), ps, state)
        assert first.findings == []  # nothing to compare with yet
        # 100 s later (as the state says): eth1 moved 95 MB (95 % of 1 MB/s), eth2 1 MB; eth2 errors 3 -> 9;
        # sysUpTime went back: a reboot.
        state.polled_at -= 100
        a.rows = FakeAgent.sorted_rows(table(700, (95_000_000, 1_000_000), 9))
        second = profiles.poll(target(a, name="sw"), ps, state)
    finally:
        a.close()
    got = sorted((f.check, f.subject, f.summary) for f in second.findings)
    assert [g[:2] for g in got] == [
        ("snmp_device_rebooted", ""),
        ("snmp_interface_errors", "eth2"),
        ("snmp_interface_utilisation", "eth1"),
    ]
    assert got[0][2] == "device rebooted: sysUpTime went back from 500 s to 7 s"
    assert got[2][2].startswith("interface eth1: inbound at 9") and got[2][2].endswith("% of its speed")


def poll_agent(table: dict[str, tuple[int, Any]], profile: str) -> Result:
    """One poll of a shipped profile against a scripted agent serving ``table``."""
    a = FakeAgent(table)
    try:
        return profiles.poll(target(a), [profiles.load(profile)])
    finally:
        a.close()


def test_entity_sensor_units_and_temperature_rule() -> None:
    ent, names = "1.3.6.1.2.1.99.1.1.1", "1.3.6.1.2.1.47.1.1.1.1.7"
    # (type, scale, precision, raw value): 72.5 °C as 725 with one decimal; 12,000 mV DC; 45 °C.
    sensors = {10: (8, 9, 1, 725), 11: (4, 8, 0, 12000), 12: (8, 9, 0, 45)}
    table: dict[str, tuple[int, Any]] = {"1.3.6.1.2.1.100.0": (ber.INTEGER, 0)}
    for i, (kind, scale, precision, raw) in sensors.items():
        table |= {
            f"{names}.{i}": (ber.OCTET_STRING, f"sensor{i}".encode()),
            f"{ent}.1.{i}": (ber.INTEGER, kind),
            f"{ent}.2.{i}": (ber.INTEGER, scale),
            f"{ent}.3.{i}": (ber.INTEGER, precision),
            f"{ent}.4.{i}": (ber.INTEGER, raw),
            f"{ent}.5.{i}": (ber.INTEGER, 1),
        }
    r = poll_agent(table, "entity_sensor")
    values = {labels[1]: v for m in r.metrics if m.name == "diag_snmp_ent_sensor_value" for labels, v in m.samples}
    assert values == pytest.approx({"sensor10": 72.5, "sensor11": 12.0, "sensor12": 45.0})
    assert [(f.check, f.subject, f.summary) for f in r.findings] == [
        ("snmp_temperature_high", "sensor10", "sensor sensor10 at 72.5 °C (above 70 °C)")
    ]


def test_printer_supply_ratio_and_low_supply() -> None:
    sup = "1.3.6.1.2.1.43.11.1.1"
    # (description, max capacity, level): 5 % left, unknown level (-2), half full.
    rows = {1: ("Black Toner", 20000, 1000), 2: ("Cyan Toner", 20000, -2), 3: ("Waste", 100, 50)}
    table: dict[str, tuple[int, Any]] = {"1.3.6.1.2.1.44.0": (ber.INTEGER, 0)}
    for i, (desc, cap, level) in rows.items():
        table |= {
            f"{sup}.5.1.{i}": (ber.INTEGER, 3),
            f"{sup}.6.1.{i}": (ber.OCTET_STRING, desc.encode()),
            f"{sup}.8.1.{i}": (ber.INTEGER, cap),
            f"{sup}.9.1.{i}": (ber.INTEGER, level),
        }
    r = poll_agent(table, "printer")
    ratio = next(m for m in r.metrics if m.name == "diag_snmp_printer_supply_level_ratio")
    assert ratio.samples == [(("1.1", "Black Toner"), 0.05), (("1.3", "Waste"), 0.5)]  # index hrDeviceIndex.supply
    assert [(f.check, f.summary) for f in r.findings] == [
        ("snmp_printer_supply_low", "printer supply Black Toner at 5%: order a replacement")
    ]


ORDER, WRONG = "order a replacement", "(wrong type from the agent)"


@pytest.mark.parametrize(
    ("maintenance", "toner", "checks"),
    [
        # black toner 8 % (0x0320 hundredths), drum 92 %; then the 0xFF end
        ("6f0104000003204101040000" "23f0ff", 0.08, [("snmp_printer_supply_low", f"black toner at 8%: {ORDER}")]),
        # a string that is not records (the 0x01 marker missing): no metric, a bad-value finding
        ("6f0204000003", None, [("snmp_bad_value", f"1 values of profile brother are not numbers {WRONG}")]),
    ],
)  # fmt: skip
def test_brother_record_strings(maintenance: str, toner: float | None, checks: list[tuple[str, str]]) -> None:
    base = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5"
    a = FakeAgent(
        {
            f"{base}.5.8.0": (ber.OCTET_STRING, bytes.fromhex(maintenance)),
            f"{base}.5.10.0": (ber.OCTET_STRING, bytes.fromhex("00010400000400ff")),
            f"{base}.4.5.2.0": (ber.OCTET_STRING, b"READY"),
        }
    )
    try:
        r = profiles.poll(target(a), [profiles.load("brother")])
    finally:
        a.close()
    got = {m.name: m.samples for m in r.metrics}
    assert got["diag_snmp_brother_pages"] == [((), 1024.0)]
    assert got.get("diag_snmp_brother_toner_black_remaining_ratio", []) == ([((), toner)] if toner is not None else [])
    assert got["diag_snmp_brother_printer_info"] == [(("READY", ""), 1)]
    assert [(f.check, f.summary) for f in r.findings] == checks


def test_split_walk_equals_one_walk_on_mixed_trees() -> None:
    """Children that are subtrees, leaves right after subtrees, multi-byte arcs: the same values, in order."""
    base = "1.3.6.1.4.1.99"
    table: dict[str, tuple[int, Any]] = {
        f"{base}.1.0": (ber.INTEGER, 1),  # a leaf child first
        **{f"{base}.2.1.{c}.{r}": (ber.INTEGER, c * 1000 + r) for c in (1, 2, 3) for r in (1, 2, 200, 16384)},
        f"{base}.3": (ber.INTEGER, 3),  # a leaf right after a subtree: GETNEXT(base.3) would skip it
        **{f"{base}.200.{r}": (ber.COUNTER32, r) for r in range(1, 40)},
        f"{base}.16384.5": (ber.INTEGER, 5),
        "1.3.6.1.4.1.100.0": (ber.INTEGER, 0),
    }
    a = FakeAgent(table)
    try:
        with snmp.Session(target(a, max_repetitions=7)) as s:
            one = s.walk_raw(ber.encode_oid(base))
            result: snmp.Walked[Any] = snmp.Walked()
            split = [
                vb for _, chunk in walk_split(s, [ber.encode_oid(base)], results=[result], width=3) for vb in chunk
            ]
            column = [vb for _, chunk in walk_split(s, [ber.encode_oid(f"{base}.200")]) for vb in chunk]
    finally:
        a.close()
    assert len(one) == len(table) - 1 and split == one and result.warning == ""
    assert column == [vb for vb in one if ber.decode_oid(vb[0]).startswith(f"{base}.200.")]


@pytest.mark.parametrize("agent", ["disorder"], indirect=True)
def test_split_walk_keeps_an_answer_out_of_order_among_itself(agent: FakeAgent) -> None:
    """The poller's split walks check order as the single walk does (against the OID asked for): rows 5 and 6
    swapped inside an answer lose nothing and are no incomplete walk."""
    with snmp.Session(target(agent, max_repetitions=4)) as s:
        result: snmp.Walked[Any] = snmp.Walked()
        split = [vb for _, chunk in walk_split(s, [ber.encode_oid(ROOT)], results=[result], width=3) for vb in chunk]
    assert result.warning == ""
    assert {ber.decode_oid(o) for o, _, _ in split} == {f"{ROOT}.{c}.{i}" for c in (2, 10) for i in range(1, 31)}
    assert len(split) == 60


@pytest.mark.parametrize("agent", ["loop"], indirect=True)
def test_split_walk_ends_a_loop_with_a_warning(agent: FakeAgent) -> None:
    for check in (True, False):
        with snmp.Session(target(agent)) as s:
            result: snmp.Walked[Any] = snmp.Walked()
            split = [
                vb
                for _, chunk in walk_split(s, [ber.encode_oid(ROOT)], results=[result], check_increasing=check)
                for vb in chunk
            ]
        oids = [o for o, _, _ in split]
        assert len(oids) == len(set(oids)) and ber.encode_oid(f"{ROOT}.2.1") in oids  # each kept once, and ended
        assert ("OIDs not increasing" if check else "(loop)") in result.warning


def test_split_walk_waits_for_a_slow_agent_answering_in_turn() -> None:
    """Every answer takes 0.3 s and the timeout is 1 s: six requests in flight are answered one after the
    other (the last after 1.8 s), which is no timeout while answers keep coming. The 0.7 s between an answer's
    delay and the timeout is what a loaded machine may take from the agent's thread (0.18 s was too little)."""
    base = "1.3.6.1.4.1.99.1"
    table = {f"{base}.{c}.{r}": (ber.INTEGER, r) for c in range(1, 7) for r in range(1, 11)}
    a = FakeAgent({**table, "1.3.6.1.4.1.100.0": (ber.INTEGER, 0)})
    a.fault, a.delay = "slow", 0.3
    try:
        with snmp.Session(snmp.Target("127.0.0.1", a.port, timeout=1.0, retries=0, max_repetitions=10)) as s:
            got = [vb for _, chunk in walk_split(s, [ber.encode_oid(base)]) for vb in chunk]
    finally:
        a.close()
    assert len(got) == len(table)


@pytest.mark.parametrize(("source", "minutes", "found"), [(5, 3, True), (5, 20, False), (3, 0, False), (3, -1, False)])
def test_ups_runtime_is_judged_on_battery(source: int, minutes: int, found: bool) -> None:
    """UPS-MIB cards that do not estimate on mains say 0 or -1 minutes (Phoenixtec, Santak, Huawei recordings)."""
    ups = "1.3.6.1.2.1.33.1"
    table = {
        f"{ups}.2.1.0": (ber.INTEGER, 2),
        f"{ups}.2.3.0": (ber.INTEGER, minutes),
        f"{ups}.2.4.0": (ber.INTEGER, 100),
        f"{ups}.4.1.0": (ber.INTEGER, source),
    }
    r = poll_agent(table, "ups")
    assert ("snmp_ups_runtime_low" in [f.check for f in r.findings]) is found
