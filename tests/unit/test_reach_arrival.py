"""Echo replies count by the kernel's arrival time, not by when a descheduled process gets to read them.

The probes run on loopback inside a network namespace of their own (``unshare --net``), so no other test's ICMP
shares the raw socket and ``net.ipv4.ping_group_range`` can allow the ping socket there without touching the host.
A "slow reader" socket sleeps right after each send, past the probe's timeout, as a process descheduled on a
loaded machine would: the reply is in the socket's queue long before the process reads it.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag.network.reach.arrival import (
    SO_TIMESTAMPNS_NEW,
    IcmpReceiver,
    SendTime,
    arrival_rtt,
    enable_arrival_stamps,
)
from diag.network.reach.packets import encode_echo_request

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 0.5
#: How long the reader sleeps after each send: well past TIMEOUT, so a read-time RTT is at least this.
DELAY = 1.5


class _SlowReader(socket.socket):
    """An ICMP socket whose process is descheduled right after each send and reads only DELAY seconds later."""

    def sendto(self, *args: Any) -> int:  # type: ignore[override]
        n: int = super().sendto(*args)
        time.sleep(DELAY)
        return n


def _delayed_check(kind: str, method: str) -> dict[str, Any]:
    """Run in the namespace: a ping or a one-hop traceroute to 127.0.0.1 through a slow reader."""
    ping_mod = importlib.import_module("diag.network.reach.ping")
    trace_mod = importlib.import_module("diag.network.reach.trace")
    stype = socket.SOCK_RAW if method == "raw" else socket.SOCK_DGRAM
    ping_mod.open_icmp_socket = lambda: (_SlowReader(socket.AF_INET, stype, socket.IPPROTO_ICMP), method, "")
    if kind == "ping":
        return dict(ping_mod.ping("127.0.0.1", count=2, interval=0.0, timeout=TIMEOUT).to_dict())
    trace_mod.socket.socket = _SlowReader  # the tracer's raw socket (this process does nothing else)
    return dict(trace_mod.traceroute("127.0.0.1", "icmp", max_hops=1, probes=2, timeout=TIMEOUT).to_dict())


@pytest.fixture(scope="module")
def arrival_stamps_on() -> Iterator[None]:
    """Hold a timestamping socket open until the kernel stamps packets on arrival.

    The first socket that asks for timestamps switches stamping on through a deferred static key (a workqueue
    item): until it runs, packets are stamped when read. Loopback replies arrive within the send, so without this
    the first probe of a test could race it; a socket held open keeps stamping on for the whole module.
    """
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        if enable_arrival_stamps(rx) is None:
            pytest.skip("no kernel receive timestamps on this platform: ping falls back to read time")
        for _ in range(100):
            tx.sendto(b"x", rx.getsockname())
            time.sleep(0.05)
            _data, anc, _f, _a = rx.recvmsg(16, socket.CMSG_SPACE(16))
            read_ns = time.time_ns()
            stamped = [struct.unpack("=qq", d) for lvl, typ, d in anc if typ == SO_TIMESTAMPNS_NEW]
            if stamped and read_ns - (stamped[0][0] * 10**9 + stamped[0][1]) >= 40_000_000:
                break  # stamped when it arrived, not when it was read
        else:
            pytest.fail("the kernel never stamped a packet on arrival within 100 tries")
        yield
    finally:
        rx.close()
        tx.close()


def _in_netns(kind: str, method: str) -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace (unshare --net) and a raw socket")
    code = (
        "import json, sys; from tests.unit.test_reach_arrival import _delayed_check; "
        "print(json.dumps(_delayed_check(sys.argv[1], sys.argv[2])))"
    )
    script = 'ip link set lo up && sysctl -q -w net.ipv4.ping_group_range="0 0" && exec "$@"'
    p = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, "sh", sys.executable, "-c", code, kind, method],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


@pytest.mark.parametrize("method", ["raw", "dgram"])
def test_reply_read_after_the_deadline_counts_with_its_arrival_rtt(arrival_stamps_on: None, method: str) -> None:
    d = _in_netns("ping", method)
    # Read at read time, every reply came DELAY after its send: past TIMEOUT, so all lost (the old behaviour).
    assert d["received"] == 2 and d["loss_ratio"] == 0.0, d
    assert d["rtt_clock"] == "kernel"
    # Each RTT runs to the kernel's arrival: within the timeout, where a read-time RTT would be over DELAY.
    assert all(r is not None and r <= TIMEOUT < DELAY for r in d["rtts"]), d["rtts"]


def test_traceroute_reads_the_same_way(arrival_stamps_on: None) -> None:
    d = _in_netns("trace", "raw")
    assert d["reached"] is True, d
    (hop,) = d["hops"]
    assert [p["kind"] for p in hop["probes"]] == ["reached", "reached"], hop
    assert all(p["rtt"] <= TIMEOUT < DELAY for p in hop["probes"]), hop


SENT = SendTime(mono=100.0, wall_ns=1_700_000_000_000_000_000)
STAMP = (SO_TIMESTAMPNS_NEW, "=qq")


def _anc(wall_ns: int) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, SO_TIMESTAMPNS_NEW, struct.pack("=qq", *divmod(wall_ns, 10**9)))]


def test_arrival_rtt_runs_to_the_kernel_stamp() -> None:
    assert arrival_rtt(_anc(SENT.wall_ns + 2_500_000), STAMP, SENT, read_rtt=3.0) == pytest.approx(0.0025)


def test_arrival_rtt_falls_back_to_read_time() -> None:
    assert arrival_rtt([], STAMP, SENT, read_rtt=0.7) == 0.7  # no stamp in the ancillary data
    assert arrival_rtt(_anc(SENT.wall_ns + 1000), None, SENT, read_rtt=0.7) == 0.7  # stamps not enabled
    # The wall clock stepped between send and read: an arrival before the send, or after the read, is not one.
    assert arrival_rtt(_anc(SENT.wall_ns - 5_000_000_000), STAMP, SENT, read_rtt=0.7) == 0.7
    assert arrival_rtt(_anc(SENT.wall_ns + 5_000_000_000), STAMP, SENT, read_rtt=0.7) == 0.7


def test_at_the_deadline_queued_messages_count_until_one_arrived_late(arrival_stamps_on: None) -> None:
    # The receiver on a UDP socket (the payload is an ICMP message as a ping socket returns it): one message
    # queued right after the send, one queued after the deadline, and nobody reads until both are there.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        receiver = IcmpReceiver(rx, with_ip_header=False)
        sent = SendTime.now()
        tx.sendto(encode_echo_request(7, 1), rx.getsockname())
        time.sleep(DELAY)
        tx.sendto(encode_echo_request(7, 2), rx.getsockname())
        got = list(receiver.arrivals(sent, TIMEOUT))
    assert [m.seq for m, _ in got if m is not None] == [1]  # the late one is not counted, and ends the wait
    assert got[0][1] <= TIMEOUT < DELAY
    assert receiver.clock == "kernel"
