"""Per-command latency: diag's device driver vs plain netmiko ``ConnectHandler``, on FRR and on emulated vendors.

Same run, same commands, same host-key checking: a real FRR router (tests/labs/frrlab.py, vtysh over SSH, key
login; needs root for its network namespaces) and emulated Cisco IOS and Juniper Junos devices (fakenos,
tests/labs/fakenoslab.py, an EMULATOR: canned outputs behind a real paramiko SSH server, password login). Each
variant opens one session, runs ``--commands`` show commands, checks every output (a variant whose output lacks
what it must contain is reported as failed, not timed) and closes. Median of ``--runs`` in this process::

    .venv/bin/python bench/device_cli.py [--runs 5] [--commands 10] [--no-frr]

Printed per target: connect s, per-command ms, close ms, and per command netmiko / diag (goal: diag <= 1.0x
netmiko, i.e. the ratio >= 1.00).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag import inventory  # noqa: E402
from diag.network.devices import open_device  # noqa: E402
from tests.labs.fakenoslab import PASSWORD, USER, FakenosLab  # noqa: E402


@dataclass
class Target:
    name: str
    host: inventory.Host
    known_hosts: Path
    netmiko: dict[str, Any]  # ConnectHandler arguments besides host/port/host keys
    checks: dict[str, str]  # command -> text its output must contain


def run_diag(t: Target, cmds: list[str]) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    dev = open_device(t.host, known_hosts=[t.known_hosts])
    t1 = time.perf_counter()
    for c in cmds:
        out = dev.send_command(c)
        if t.checks[c] not in out:
            raise RuntimeError(f"diag `{c}`: output lacks {t.checks[c]!r}: {out[:120]!r}")
    t2 = time.perf_counter()
    dev.close()
    return t1 - t0, (t2 - t1) / len(cmds), time.perf_counter() - t2


def run_netmiko(t: Target, cmds: list[str]) -> tuple[float, float, float]:
    from netmiko import ConnectHandler

    t0 = time.perf_counter()
    conn = ConnectHandler(
        host=t.host.address,
        port=t.host.port,
        ssh_strict=True,
        system_host_keys=False,
        alt_host_keys=True,
        alt_key_file=str(t.known_hosts),
        allow_agent=False,
        **t.netmiko,
    )
    t1 = time.perf_counter()
    try:
        for c in cmds:
            out = str(conn.send_command(c))
            if t.checks[c] not in out:
                raise RuntimeError(f"netmiko `{c}`: output lacks {t.checks[c]!r}: {out[:120]!r}")
        t2 = time.perf_counter()
    finally:
        conn.disconnect()
    return t1 - t0, (t2 - t1) / len(cmds), time.perf_counter() - t2


def measure(t: Target, cmds: list[str], runs: int) -> dict[str, tuple[float, float, float] | str]:
    out: dict[str, tuple[float, float, float] | str] = {}
    variants: dict[str, Callable[[Target, list[str]], tuple[float, float, float]]] = {
        "diag driver": run_diag,
        "netmiko ConnectHandler": run_netmiko,
    }
    for _ in range(runs):  # interleaved, so that load on the machine falls on both alike
        for name, fn in variants.items():
            try:
                r = fn(t, cmds)
            except Exception as e:  # a failing variant is reported as failed, never timed
                out[name] = f"FAILED: {' '.join(str(e).split())[:150]}"
                continue
            prev = out.setdefault(name, ())  # type: ignore[arg-type]
            if isinstance(prev, tuple):
                out[name] = (*prev, r)  # type: ignore[assignment]
    res: dict[str, tuple[float, float, float] | str] = {}
    for name, v in out.items():
        if isinstance(v, str):
            res[name] = v
        else:
            rs: list[tuple[float, float, float]] = list(v)  # type: ignore[arg-type]
            res[name] = tuple(statistics.median(r[i] for r in rs) for i in range(3))  # type: ignore[assignment]
    return res


def report(t: Target, rows: dict[str, tuple[float, float, float] | str], n: int) -> None:
    print(f"\n{t.name}: {n} show commands per session")
    print(f"{'variant':24} {'connect s':>10} {'per cmd ms':>11} {'close ms':>9} {'per cmd / diag':>15}")
    ref = rows.get("diag driver")
    for name, r in rows.items():
        if isinstance(r, str):
            print(f"{name:24} {r}")
            continue
        ratio = f"{r[1] / ref[1]:.2f}x" if isinstance(ref, tuple) else "-"
        print(f"{name:24} {r[0]:10.3f} {r[1] * 1000:11.1f} {r[2] * 1000:9.1f} {ratio:>15}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--commands", type=int, default=10)
    ap.add_argument("--no-frr", action="store_true", help="skip the FRR lab (it needs root and network namespaces)")
    args = ap.parse_args()

    emulated = {"bench-ios": "cisco_ios", "bench-junos": "juniper_junos"}
    with FakenosLab(emulated) as lab:
        inv = inventory.load(lab.inventory(lab.dir / "inv.yaml"))
        targets = [
            Target("emulated cisco_ios (fakenos)", inv.hosts["bench-ios"], lab.known_hosts,
                   {"device_type": "cisco_ios", "username": USER, "password": PASSWORD, "secret": ""},
                   {"show ip bgp summary": "10.0.0.1", "show ip route": "0.0.0.0/0", "show processes cpu": "PID"}),
            Target("emulated juniper_junos (fakenos)", inv.hosts["bench-junos"], lab.known_hosts,
                   {"device_type": "juniper_junos", "username": USER, "password": PASSWORD},
                   {"show bgp summary": "10.1.2.1", "show route terse": "0.0.0.0/0", "show ospf neighbor": "Full"}),
        ]  # fmt: skip
        for t in targets:
            keys = list(t.checks)
            cmds = [keys[i % len(keys)] for i in range(args.commands)]
            run_diag(t, cmds[:1])  # warm-up: imports, first key exchange
            report(t, measure(t, cmds, args.runs), len(cmds))
    if not args.no_frr:
        from tests.labs.frrlab import BGP_PREFIX, VTY_USER, FrrLab

        with FrrLab() as frr:
            frr.converged()
            host = inventory.load(frr.inventory).hosts["r1"]
            t = Target("FRR 8.4 (real, vtysh over SSH)", host, frr.known_hosts,
                       {"device_type": "cisco_ios", "username": VTY_USER, "key_file": str(frr.client_key),
                        "use_keys": True},
                       {"show ip route": BGP_PREFIX, "show interface": "Interface eth2 is",
                        "show bgp summary": "10.239.1.2"})  # fmt: skip
            keys = list(t.checks)
            cmds = [keys[i % len(keys)] for i in range(args.commands)]
            run_diag(t, cmds[:1])
            report(t, measure(t, cmds, args.runs), len(cmds))


if __name__ == "__main__":
    main()
