"""Benchmark: what the network collectors add to ``diag agent``'s memory, and the trap receiver's throughput.

Three agents run side by side on this machine: the default configuration (host probes only), and the same
plus the network collectors (trap receiver with a v2c community and a v3 authPriv user, the SNMP poller of a
real snmpd in a ``dgt-N`` namespace (tests/labs/snmplab.py) every 10 s, reach checks every 10 s). The third one
is the second after it has decrypted v3 authPriv traps (which imports ``cryptography``'s AES). Each gets N
v2c traps from one ``snmptrap`` per trap first, then RSS (VmRSS) is read after a settle time. Also prints
how many v2c traps per second a receiver turns into findings when the same recorded datagram is sent to it
over UDP, against net-snmp's ``snmptrapd`` logging the same datagrams sent the same way.

Usage: .venv/bin/python bench/agent_network_rss.py [--traps 200] [--settle 20]
Prints everything; asserts nothing. Ports from 20100-20149 (test_traps' range), reserved through
tests/conftest.py's per-port locks, so a test run beside never starts a server on one of them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.labs.snmplab import COMMUNITY as LAB_COMMUNITY  # noqa: E402
from tests.labs.snmplab import SnmpLab  # noqa: E402

PORTS = range(20100, 20150)


def ports(n: int, udp: bool = False, avoid: list[int] | None = None) -> list[int]:
    """``n`` distinct reserved ports, none of ``avoid`` (free_port returns a held port again until it is bound)."""
    got: list[int] = []
    for _ in range(n):
        got.append(free_port([p for p in PORTS if p not in got + (avoid or [])], udp=udp))
    return got

DIAG = str(Path(sys.executable).with_name("diag"))
ENV = {**os.environ, "MIBS": "", "B_COMM": "dgt-bench-comm", "B_AUTH": "dgt-bench-auth", "B_PRIV": "dgt-bench-priv",
       "B_LAB": LAB_COMMUNITY}  # fmt: skip


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(inv: str, http_port: int, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    path = tmp / f"{name}.yaml"
    path.write_text(inv)
    args = [DIAG, "agent", "-i", str(path), "--listen", f"127.0.0.1:{http_port}", "--data", str(tmp / name)]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not start: {(tmp / f'{name}.log').read_text()}")


def send_traps(port: int, n: int, v3: bool = False) -> None:
    auth = (["-v3", "-l", "authPriv", "-u", "bench", "-a", "SHA", "-A", ENV["B_AUTH"], "-x", "AES", "-X", ENV["B_PRIV"]]
            if v3 else ["-v2c", "-c", ENV["B_COMM"]])  # fmt: skip
    for i in range(n):
        subprocess.run(["snmptrap", *auth, f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                        "1.3.6.1.2.1.2.2.1.1.1", "i", str(i)], env=ENV, check=True)  # fmt: skip


def _datagram() -> bytes:
    data = bytes.fromhex((ROOT / "tests/fixtures/traps/v2c_linkdown.hex").read_text().strip())
    return data.replace(b"dgt-recorded", b"dgt-bench-co")  # same length: the BER lengths stay right


def _blast(port: int, count: int) -> float:
    """Send ``count`` copies of the recorded v2c linkDown to 127.0.0.1:port, paced a little; the start time."""
    data = _datagram()
    t0 = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(data, ("127.0.0.1", port))
            time.sleep(0.0001)
    return t0


def diag_throughput(port: int, count: int) -> tuple[int, float]:
    """Traps per second a TrapReceiver (its own thread, UDP) turns into findings, the same way as snmptrapd."""
    os.environ["B_COMM12"] = "dgt-bench-co"
    from diag.network.traps import config as trapconfig
    from diag.network.traps.receiver import TrapReceiver

    cfg = trapconfig.build_standalone(
        {"listen": [f"127.0.0.1:{port}"], "communities": ["env:B_COMM12"], "rate_limit": 1e9, "history": 10}
    )
    findings: list[object] = []
    rx = TrapReceiver(cfg, on_finding=findings.extend)
    rx.start()
    t0 = _blast(port, count)
    deadline = time.monotonic() + 30
    while len(findings) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    rx.stop()
    return len(findings), elapsed


def snmptrapd_throughput(port: int, count: int, tmp: Path) -> tuple[int, float] | None:
    """Traps per second net-snmp's snmptrapd logs, sent the same way."""
    if not Path("/usr/sbin/snmptrapd").exists():
        return None
    conf = tmp / "snmptrapd.conf"
    conf.write_text("authCommunity log dgt-bench-co\n")
    log = tmp / "snmptrapd.log"
    proc = subprocess.Popen(["/usr/sbin/snmptrapd", "-f", "-n", "-C", "-c", str(conf), "-Lf", str(log), "-On",
                             f"udp:127.0.0.1:{port}"], env=ENV)  # fmt: skip
    time.sleep(1.0)
    t0 = _blast(port, count)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and log.read_text(errors="replace").count("1.3.6.1.6.3.1.1.5.3") < count:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    got = log.read_text(errors="replace").count("1.3.6.1.6.3.1.1.5.3")
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    return got, elapsed


def memory(traps: int, settle: float, tmp: Path) -> None:
    """RSS of the three agents (see the module docstring)."""
    with SnmpLab(interfaces=51, prefix="dgt", net=236) as lab:
        net = f"""
hosts:
  sw-bench: {{address: {lab.address}, snmp: {{version: "2c", community: env:B_LAB, profiles: [system, if_mib]}}}}
agent:
  snmp_poll: {{interval: 10}}
  traps:
    listen: ["127.0.0.1:PORT"]
    communities: [env:B_COMM]
    users: [{{name: bench, auth_protocol: SHA, auth_key: env:B_AUTH, priv_protocol: AES, priv_key: env:B_PRIV}}]
  probes:
    reach:
      interval: 10
      checks: [{{type: ping, target: 127.0.0.1, count: 2}}, {{type: tcp, target: 127.0.0.1, port: CLOSED}}]
"""
        http = ports(3)
        trap = ports(2, udp=True, avoid=http)
        closed = ports(1, avoid=http + trap)[0]  # nothing listens there
        net = net.replace("CLOSED", str(closed))
        procs = {
            "default": start("hosts: {}\n", http[0], tmp, "default"),
            "network": start(net.replace("PORT", str(trap[0])), http[1], tmp, "network"),
            "network+v3": start(net.replace("PORT", str(trap[1])), http[2], tmp, "network-v3"),
        }
        try:
            send_traps(trap[0], traps)
            send_traps(trap[1], traps)
            send_traps(trap[1], 5, v3=True)
            time.sleep(settle)
            for port in http:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            print(f"diag agent RSS after {traps} v2c traps and {settle:g} s (probes on, 2-core machine):")
            base = rss_mib(procs["default"].pid)
            for name, p in procs.items():
                r = rss_mib(p.pid)
                print(f"  {name:<12} {r:6.1f} MiB  ({r - base:+.1f} MiB against the default agent)")
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
                p.wait(15)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traps", type=int, default=200)
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--only-throughput", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dgt-bench-"))
    try:
        run(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a: argparse.Namespace, tmp: Path) -> None:
    if not a.only_throughput:
        memory(a.traps, a.settle, tmp)
    n = 5000
    got, secs = diag_throughput(ports(1, udp=True)[0], n)
    print(f"{n} v2c traps sent over UDP (paced): diag TrapReceiver made {got} findings in {secs:.2f} s", end="")
    print(f" = {got / secs:,.0f}/s")
    ref = snmptrapd_throughput(ports(1, udp=True)[0], n, tmp)
    if ref is None:
        print("snmptrapd not installed (Debian package snmptrapd): no comparison")
    else:
        print(f"snmptrapd -n (net-snmp) logged {ref[0]} in {ref[1]:.2f} s = {ref[0] / ref[1]:,.0f}/s; "
              f"ratio diag/snmptrapd {(got / secs) / (ref[0] / ref[1]):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
