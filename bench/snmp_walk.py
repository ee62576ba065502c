"""Benchmark: ifTable + ifXTable of a 201-interface snmpd with diag, ``snmpbulkwalk`` and snmp_exporter.

One real net-snmp snmpd in a namespace (tests/labs/snmplab.py). Each contender runs N times, alternating, and
the median is printed with the ratios the issue asks for:

- walk: diag's v2c walk of both tables in this process (lean BER, ``Session.walk_raw``) against two
  ``snmpbulkwalk -On`` runs (one per table, net-snmp's default max-repetitions 10 and diag's 100).
- walk + render: ``/snmp?target=...&module=if_mib`` on a running ``diag agent`` against
  ``/snmp?target=...&module=if_mib`` on ``prometheus-snmp-exporter`` with the upstream if_mib module
  (every ifTable/ifXTable column with ifAlias/ifDescr/ifName lookups; Debian ships no snmp.yml, so the
  module is written here). Both over HTTP, so both include the HTTP round trip. diag's if_mib profile
  walks only the 14 columns it exports; the "full" line walks and renders every numeric column of both
  tables in this process, to show the cost when diag does the same work as snmp_exporter.

Usage: .venv/bin/python bench/snmp_walk.py [--runs 15] [--interfaces 201]
Prints everything; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag.exporters.exposition import encode_metrics  # noqa: E402
from diag.network.snmp import ber, profiles  # noqa: E402
from diag.network.snmp import client as snmp  # noqa: E402
from tests.labs.snmplab import COMMUNITY, SnmpLab  # noqa: E402

DIAG = str(Path(sys.executable).with_name("diag"))
SNMP_EXPORTER = "/usr/bin/prometheus-snmp-exporter"
IF_TABLE = "1.3.6.1.2.1.2.2"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1"
EXPORTER_PORT = 19580
AGENT_PORT = 19581

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


def full_profile(directory: Path) -> None:
    """A diag profile with every numeric column of both tables (the same work as snmp_exporter's module)."""
    lines = ["description: every numeric ifTable/ifXTable column", "tables:", "  - name: all", "    index: ifIndex"]
    lines += ["    labels:"] + [f"      {label}: {oid}" for label, oid in LOOKUPS] + ["    metrics:"]
    for table, cols in ((IF_TABLE, IF_COLUMNS), (IF_X_TABLE, IFX_COLUMNS)):
        for name, col, kind in cols:
            if kind in ("gauge", "counter"):
                k = "counter" if kind == "counter" else "gauge"
                lines.append(f"      - {{name: {name}, oid: {table}.1.{col}, kind: {k}, help: {name}}}")
    (directory / "if_full.yaml").write_text("\n".join(lines) + "\n")


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--interfaces", type=int, default=201)
    args = ap.parse_args()
    env = {**os.environ, "MIBS": ""}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="dgn-bench-") as tmp, SnmpLab(args.interfaces) as lab:
        tmpdir = Path(tmp)
        try:
            (tmpdir / "snmp.yml").write_text(exporter_config())
            procs.append(
                subprocess.Popen(
                    [
                        SNMP_EXPORTER,
                        f"--config.file={tmpdir / 'snmp.yml'}",
                        f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            inv = tmpdir / "inventory.yaml"
            inv.write_text(f"hosts:\n  sw1:\n    address: {lab.address}\n    snmp: {{community: 'env:DGN_C'}}\n")
            procs.append(
                subprocess.Popen(
                    [
                        DIAG,
                        "agent",
                        "--inventory",
                        str(inv),
                        "--listen",
                        f"127.0.0.1:{AGENT_PORT}",
                        "--data",
                        str(tmpdir / "data"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ, "DGN_C": COMMUNITY},
                )
            )
            exp_url = f"http://127.0.0.1:{EXPORTER_PORT}/snmp?target={lab.address}&module=if_mib"
            diag_url = f"http://127.0.0.1:{AGENT_PORT}/snmp?target=sw1&module=if_mib"
            wait_http(f"http://127.0.0.1:{EXPORTER_PORT}/metrics")
            wait_http(f"http://127.0.0.1:{AGENT_PORT}/healthz")
            full_profile(tmpdir)
            full = profiles.load("if_full", tmpdir)
            target = snmp.Target(lab.address, community=COMMUNITY, timeout=5)
            roots = [ber.encode_oid(IF_TABLE), ber.encode_oid(IF_X_TABLE)]

            def diag_walk() -> int:
                with snmp.Session(target) as s:
                    return sum(len(s.walk_raw(r)) for r in roots)

            def bulkwalk(reps: int) -> Callable[[], None]:
                def run() -> None:
                    for table in (IF_TABLE, IF_X_TABLE):
                        subprocess.run(
                            ["snmpbulkwalk", "-v2c", "-c", COMMUNITY, "-On", f"-Cr{reps}", lab.address, table],
                            env=env, stdout=subprocess.DEVNULL, check=True,
                        )  # fmt: skip

                return run

            def diag_full() -> bytes:
                return encode_metrics(profiles.poll(target, [full]).metrics)

            n_walk = diag_walk()
            exp_body, diag_body, full_body = http(exp_url), http(diag_url), diag_full()
            print(f"snmpd: {args.interfaces} interfaces at {lab.address}; {n_walk} varbinds in ifTable+ifXTable")
            print(
                f"samples: snmp_exporter {sum(1 for x in exp_body.splitlines() if not x.startswith(b'#'))}, "
                f"diag if_mib {sum(1 for x in diag_body.splitlines() if not x.startswith(b'#'))}, "
                f"diag full {sum(1 for x in full_body.splitlines() if not x.startswith(b'#'))}"
            )
            cases: dict[str, Callable[[], object]] = {
                "diag walk (in process)": diag_walk,
                "snmpbulkwalk -Cr10 x2": bulkwalk(10),
                "snmpbulkwalk -Cr100 x2": bulkwalk(100),
                "diag /snmp if_mib (agent, HTTP)": lambda: http(diag_url),
                "diag full walk+render (in process)": diag_full,
                "snmp_exporter /snmp if_mib (HTTP)": lambda: http(exp_url),
            }
            times: dict[str, list[float]] = {k: [] for k in cases}
            for _ in range(args.runs):  # alternate, so drift of the machine hits every contender alike
                for name, fn in cases.items():
                    times[name] += timed(fn, 1)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"\nmedian of {args.runs} runs (min .. max), seconds:")
            for k, v in times.items():
                print(f"  {k:38s} {med[k]:.4f}  ({min(v):.4f} .. {max(v):.4f})")
            exp = med["snmp_exporter /snmp if_mib (HTTP)"]
            print("\nratios (goal: walk <= 1.5x snmpbulkwalk, walk+render <= 1.0x snmp_exporter):")
            walk = med["diag walk (in process)"]
            for label, value in (
                ("diag walk / snmpbulkwalk -Cr10", walk / med["snmpbulkwalk -Cr10 x2"]),
                ("diag walk / snmpbulkwalk -Cr100", walk / med["snmpbulkwalk -Cr100 x2"]),
                ("diag /snmp if_mib / snmp_exporter", med["diag /snmp if_mib (agent, HTTP)"] / exp),
                ("diag full walk+render / snmp_exporter", med["diag full walk+render (in process)"] / exp),
            ):
                print(f"  {label:40s} {value:.2f}")
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
