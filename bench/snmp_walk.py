"""Benchmark: diag's SNMP walks and ``/snmp`` against net-snmp's ``snmpbulkwalk`` and snmp_exporter, same run.

One real net-snmp snmpd in a namespace (tests/labs/snmplab.py, 201 interfaces). Each contender runs N
times, alternating with the others so that the load of the machine hits all alike; medians and the
ratios issue 17 asks for are printed:

- whole MIB-2 walk as a command: ``diag snmp walk ADDR 1.3.6.1.2.1`` against ``snmpbulkwalk -On ADDR
  1.3.6.1.2.1`` (both print every value; output to a file), v2c and v3 authPriv (SHA/AES). Goals:
  v2c <= 1.0x, v3 <= 1.5x. Start-up of the Python command is included, as a user sees it.
- the same walk in this process: diag's v3 engine against ezsnmp's ``bulk_walk`` (net-snmp's USM), when
  ezsnmp is installed (``pip install ezsnmp``; no longer a dependency): the measurement that chose the engine.
- ``/snmp?target=...&module=if_mib`` on a running ``diag agent`` against the same on
  ``prometheus-snmp-exporter`` with upstream's if_mib module (every ifTable/ifXTable column with ifAlias,
  ifDescr, ifName lookups; Debian ships no snmp.yml, so the module is written here). diag's if_mib walks
  the same two tables whole. Both over HTTP. Goal: <= 0.5x.

CPU (user + system seconds) is measured beside wall time for every contender: of the command's process
(getrusage of children), of this process (in-process walks), of the agent's and snmp_exporter's process
(/proc/PID/stat, around each scrape). On a loaded machine wall time is mostly waiting for a core, and
a command that needs more CPU waits longer: the CPU ratio says what the load will make of the wall ratio.

Usage: .venv/bin/python bench/snmp_walk.py [--runs 15] [--interfaces 201]
Prints everything; asserts nothing. The load average at start and end is printed (run it with and
without ``stress-ng --cpu 2`` beside it).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag.network.snmp import ber  # noqa: E402
from diag.network.snmp import client as snmp  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.labs.snmplab import COMMUNITY, V3_AUTH, V3_PRIV, V3_USER, SnmpLab  # noqa: E402

DIAG = str(Path(sys.executable).with_name("diag"))
SNMP_EXPORTER = "/usr/bin/prometheus-snmp-exporter"
IF_TABLE = "1.3.6.1.2.1.2.2"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1"

# (name, column under ifEntry/ifXEntry, snmp_exporter type): the columns of upstream's if_mib module.
IF_COLUMNS = [
    ("ifIndex", 1, "gauge"), ("ifDescr", 2, "DisplayString"), ("ifType", 3, "gauge"), ("ifMtu", 4, "gauge"),
    ("ifSpeed", 5, "gauge"), ("ifPhysAddress", 6, "PhysAddress48"), ("ifAdminStatus", 7, "gauge"),
    ("ifOperStatus", 8, "gauge"), ("ifLastChange", 9, "gauge"), ("ifInOctets", 10, "counter"),
    ("ifInUcastPkts", 11, "counter"), ("ifInNUcastPkts", 12, "counter"), ("ifInDiscards", 13, "counter"),
    ("ifInErrors", 14, "counter"), ("ifInUnknownProtos", 15, "counter"), ("ifOutOctets", 16, "counter"),
    ("ifOutUcastPkts", 17, "counter"), ("ifOutNUcastPkts", 18, "counter"), ("ifOutDiscards", 19, "counter"),
    ("ifOutErrors", 20, "counter"), ("ifOutQLen", 21, "gauge"),
]  # fmt: skip
IFX_COLUMNS = [
    ("ifName", 1, "DisplayString"), ("ifInMulticastPkts", 2, "counter"), ("ifInBroadcastPkts", 3, "counter"),
    ("ifOutMulticastPkts", 4, "counter"), ("ifOutBroadcastPkts", 5, "counter"), ("ifHCInOctets", 6, "counter"),
    ("ifHCInUcastPkts", 7, "counter"), ("ifHCInMulticastPkts", 8, "counter"),
    ("ifHCInBroadcastPkts", 9, "counter"), ("ifHCOutOctets", 10, "counter"), ("ifHCOutUcastPkts", 11, "counter"),
    ("ifHCOutMulticastPkts", 12, "counter"), ("ifHCOutBroadcastPkts", 13, "counter"),
    ("ifLinkUpDownTrapEnable", 14, "gauge"), ("ifHighSpeed", 15, "gauge"), ("ifPromiscuousMode", 16, "gauge"),
    ("ifConnectorPresent", 17, "gauge"), ("ifAlias", 18, "DisplayString"), ("ifCounterDiscontinuityTime", 19, "gauge"),
]  # fmt: skip
LOOKUPS = [("ifAlias", f"{IF_X_TABLE}.1.18"), ("ifDescr", f"{IF_TABLE}.1.2"), ("ifName", f"{IF_X_TABLE}.1.1")]


def exporter_config() -> str:
    """snmp_exporter 0.21's config: the if_mib module as upstream's generator makes it (auth in the module)."""
    lines = ["if_mib:", f"  walk: [{IF_TABLE}, {IF_X_TABLE}]", "  get: [1.3.6.1.2.1.1.3.0]", "  metrics:"]
    lines += ["  - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge, help: sysUpTime}"]
    for table, cols in ((IF_TABLE, IF_COLUMNS), (IF_X_TABLE, IFX_COLUMNS)):
        for name, col, kind in cols:
            lines += [f"  - name: {name}", f"    oid: {table}.1.{col}", f"    type: {kind}", f"    help: {name}"]
            lines += ["    indexes:", "    - {labelname: ifIndex, type: gauge}", "    lookups:"]
            for label, oid in LOOKUPS:
                lines.append(f"    - {{labels: [ifIndex], labelname: {label}, oid: {oid}, type: DisplayString}}")
    lines += ["  version: 2", "  auth:", f"    community: {COMMUNITY}", "  max_repetitions: 25", "  timeout: 5s"]
    return "\n".join(lines) + "\n"


#: A contender: what to run, and the clock of the CPU it uses (seconds, user + system).
Case = tuple[Callable[[], object], Callable[[], float]]


def children_cpu() -> float:
    """CPU of the waited-for child processes (the commands)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def process_cpu(pid: int) -> Callable[[], float]:
    """CPU of a running process (a server answering scrapes), from /proc/PID/stat."""
    tick = os.sysconf("SC_CLK_TCK")

    def clock() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    return clock


def own_cpu() -> float:
    return time.process_time()


def http(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:  # loopback only
        return bytes(r.read())


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            http(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def median_table(times: dict[str, tuple[list[float], list[float]]], title: str) -> dict[str, tuple[float, float]]:
    """Print and return the median (wall, CPU) of each contender."""
    med = {k: (statistics.median(w), statistics.median(c)) for k, (w, c) in times.items()}
    print(f"\n{title}: median of {len(next(iter(times.values()))[0])} runs, seconds: wall (min .. max), CPU")
    for k, (w, _) in times.items():
        print(f"  {k:44s} {med[k][0]:.4f}  ({min(w):.4f} .. {max(w):.4f})  cpu {med[k][1]:.4f}")
    return med


def alternate(cases: Mapping[str, Case], runs: int) -> dict[str, tuple[list[float], list[float]]]:
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cases}
    for _ in range(runs):  # alternate, so drift of the machine hits every contender alike
        for name, (fn, cpu) in cases.items():
            c, t = cpu(), time.perf_counter()
            fn()
            times[name][0].append(time.perf_counter() - t)
            times[name][1].append(cpu() - c)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--interfaces", type=int, default=201)
    args = ap.parse_args()
    env = {**os.environ, "MIBS": ""}
    # The command as installed, with its modules' bytecode: pip compiles it at install, but an editable
    # install under PYTHONDONTWRITEBYTECODE=1 (set on the machines here) would compile every module of
    # the command from source on every run (~12 ms of CPU a walk).
    compileall.compile_dir(str(ROOT / "diag"), quiet=1)
    procs: list[subprocess.Popen[bytes]] = []
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with (
        tempfile.TemporaryDirectory(prefix="dgn-bench-") as tmp,
        SnmpLab(args.interfaces, prefix="dgb", net=233) as lab,
    ):
        tmpdir = Path(tmp)
        try:
            exporter_port = free_port(range(19580, 19680))
            (tmpdir / "snmp.yml").write_text(exporter_config())
            procs.append(
                subprocess.Popen(
                    [SNMP_EXPORTER, f"--config.file={tmpdir / 'snmp.yml'}",
                     f"--web.listen-address=127.0.0.1:{exporter_port}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            exp_url = f"http://127.0.0.1:{exporter_port}/snmp?target={lab.address}&module=if_mib"
            wait_http(f"http://127.0.0.1:{exporter_port}/metrics")
            agent_port = free_port(range(19680, 19780))
            inv = tmpdir / "inventory.yaml"
            inv.write_text(f"hosts:\n  sw1:\n    address: {lab.address}\n    snmp: {{community: 'env:DGN_C'}}\n")
            procs.append(
                subprocess.Popen(
                    [DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{agent_port}",
                     "--data", str(tmpdir / "data")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "DGN_C": COMMUNITY},
                )
            )  # fmt: skip
            diag_url = f"http://127.0.0.1:{agent_port}/snmp?target=sw1&module=if_mib"
            wait_http(f"http://127.0.0.1:{agent_port}/healthz")

            mib2 = "1.3.6.1.2.1"
            v3_net = ["-v3", "-l", "authPriv", "-u", V3_USER, "-a", "SHA", "-A", V3_AUTH, "-x", "AES", "-X", V3_PRIV]
            v3_diag = ["-u", V3_USER, "-a", "SHA", "--auth-key-env", "DGN_A", "-x", "AES", "--priv-key-env", "DGN_P"]
            cmd_env = {**env, "DIAG_SNMP_COMMUNITY": COMMUNITY, "DGN_A": V3_AUTH, "DGN_P": V3_PRIV}
            out = tmpdir / "walk.txt"

            def command(argv: list[str]) -> Callable[[], int]:
                def run() -> int:
                    with open(out, "wb") as f:
                        subprocess.run(argv, stdout=f, env=cmd_env, check=True)
                    return sum(1 for line in out.read_bytes().splitlines() if line.startswith(b"."))

                return run

            walks: dict[str, Case] = {
                "v2c diag snmp walk (command)": (command([DIAG, "snmp", "walk", lab.address, mib2]), children_cpu),
                "v2c snmpbulkwalk -On": (
                    command(["snmpbulkwalk", "-v2c", "-c", COMMUNITY, "-On", lab.address, mib2]),
                    children_cpu,
                ),
                "v3 diag snmp walk (command)": (
                    command([DIAG, "snmp", "walk", *v3_diag, lab.address, mib2]),
                    children_cpu,
                ),
                "v3 snmpbulkwalk -On": (command(["snmpbulkwalk", *v3_net, "-On", lab.address, mib2]), children_cpu),
            }
            counts = {k: fn() for k, (fn, _) in walks.items()}
            print(f"snmpd: {args.interfaces} interfaces at {lab.address}; values printed by each walk of MIB-2:")
            for k, n in counts.items():
                print(f"  {k:44s} {n}")
            med = median_table(alternate(walks, args.runs), "whole MIB-2 walk as a command")

            v3t = snmp.Target(lab.address, version="3", user=V3_USER, auth_key=V3_AUTH, priv_key=V3_PRIV, timeout=5)
            in_process: dict[str, Case] = {}

            def diag_v3() -> int:
                with snmp.open_session(v3t) as s:
                    return len(s.walk_raw(ber.encode_oid(mib2)))

            in_process["v3 diag engine (in process)"] = (diag_v3, own_cpu)
            try:
                from ezsnmp import Session as EzSession  # type: ignore[import-untyped,import-not-found,unused-ignore]

                def ezsnmp_v3() -> int:
                    ez = EzSession(
                        hostname=lab.address, version=3, security_username=V3_USER, security_level="authPriv",
                        auth_protocol="SHA", auth_passphrase=V3_AUTH, privacy_protocol="AES",
                        privacy_passphrase=V3_PRIV, timeout=5, print_oids_numerically=True,
                        set_max_repeaters_to_num=100,
                    )  # fmt: skip
                    return len(ez.bulk_walk(mib2))

                in_process["v3 ezsnmp bulk_walk (in process)"] = (ezsnmp_v3, own_cpu)
            except ImportError:
                print("\n(ezsnmp is not installed: no in-process comparison with it)")
            for k, (fn, _) in in_process.items():
                print(f"  {k}: {fn()} values")
            med |= median_table(alternate(in_process, args.runs), "whole MIB-2 walk over v3 authPriv, in process")

            exp_body, diag_body = http(exp_url), http(diag_url)
            print(
                f"\n/snmp samples: snmp_exporter {sum(1 for x in exp_body.splitlines() if not x.startswith(b'#'))}, "
                f"diag if_mib {sum(1 for x in diag_body.splitlines() if not x.startswith(b'#'))}"
            )
            # CPU of the server answering the scrape (the agent, snmp_exporter), not of this process.
            scrapes: dict[str, Case] = {
                "diag /snmp if_mib (agent, HTTP)": (lambda: http(diag_url), process_cpu(procs[1].pid)),
                "snmp_exporter /snmp if_mib (HTTP)": (lambda: http(exp_url), process_cpu(procs[0].pid)),
            }
            med |= median_table(alternate(scrapes, args.runs), "/snmp if_mib (ifTable + ifXTable walked whole)")

            print("\nratios of medians, wall and CPU (goals, on wall time: v2c <= 1.0, v3 <= 1.5, /snmp <= 0.5):")
            ratios = [
                ("v2c: diag snmp walk / snmpbulkwalk", "v2c diag snmp walk (command)", "v2c snmpbulkwalk -On"),
                ("v3 authPriv: diag snmp walk / snmpbulkwalk", "v3 diag snmp walk (command)", "v3 snmpbulkwalk -On"),
                (
                    "diag /snmp if_mib / snmp_exporter",
                    "diag /snmp if_mib (agent, HTTP)",
                    "snmp_exporter /snmp if_mib (HTTP)",
                ),
            ]
            if "v3 ezsnmp bulk_walk (in process)" in med:
                ratios.append(
                    (
                        "v3 in process: diag engine / ezsnmp",
                        "v3 diag engine (in process)",
                        "v3 ezsnmp bulk_walk (in process)",
                    )
                )
            for label, ours, theirs in ratios:
                (w1, c1), (w2, c2) = med[ours], med[theirs]
                cpu = f"{c1 / c2:.2f}" if c2 > 0 else "n/a (under the clock's tick)"
                print(f"  {label:44s} wall {w1 / w2:.2f}  cpu {cpu}")
            print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        finally:
            for p in procs:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
