"""Network-device CLI bench: show commands on a real FRR router (labs/frrlab.py) with diag's driver and with peers.

Each variant opens one session to r1 (vtysh as the login shell), runs the same show commands, checks every output
(a variant whose output lacks what it must contain is reported as failed, not timed) and closes. Median of ``--runs``
in this process, so interpreter start-up is not counted. Run as root::

    .venv/bin/python bench/frr_cli.py [--runs 5] [--commands 10]

Variants:
  (a) diag: ``open_device`` (diag's SSHPool: host key checked against known_hosts, then netmiko on that transport);
  (b) netmiko alone: ``ConnectHandler(device_type="cisco_ios")`` with its own paramiko connect (host key checked
      against the same known_hosts file through ``alt_host_keys``/``ssh_strict``), the way netmiko is usually used;
  (c) diag's SSHPool without a CLI session: one exec channel per command on one connection (sshd runs the login
      shell as ``vtysh -c CMD``), what ``diag check`` would do for a shell host; only possible where the device's
      login shell accepts ``-c``, as vtysh does;
  (d) OpenSSH: one ``ssh r1 CMD`` process per command (sshd runs ``vtysh -c CMD``), the usual shell-script way.
Ratios are against (a): above 1 means the peer is slower.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag import inventory  # noqa: E402
from diag.network.devices import open_device  # noqa: E402
from tests.labs.frrlab import BGP_PREFIX, MGMT, VTY_USER, FrrLab  # noqa: E402

CHECKS = {"show ip route": BGP_PREFIX, "show interface": "Interface eth2 is", "show bgp summary": "10.239.1.2"}


def commands(n: int) -> list[str]:
    keys = list(CHECKS)
    return [keys[i % len(keys)] for i in range(n)]


def verify(cmd: str, out: str) -> None:
    if CHECKS[cmd] not in out:
        raise RuntimeError(f"`{cmd}`: output lacks {CHECKS[cmd]!r}: {out[:200]!r}")


def diag_variant(lab: FrrLab, cmds: list[str]) -> tuple[float, float]:
    host = inventory.load(lab.inventory).hosts["r1"]
    t0 = time.perf_counter()
    with open_device(host, known_hosts=lab.known_hosts) as dev:
        t1 = time.perf_counter()
        for c in cmds:
            verify(c, dev.send_command(c))
    return t1 - t0, time.perf_counter() - t0


def netmiko_variant(lab: FrrLab, cmds: list[str]) -> tuple[float, float]:
    from netmiko import ConnectHandler

    t0 = time.perf_counter()
    conn = ConnectHandler(
        device_type="cisco_ios",
        host=MGMT,
        username=VTY_USER,
        key_file=str(lab.client_key),
        use_keys=True,
        allow_agent=False,
        ssh_strict=True,
        system_host_keys=False,
        alt_host_keys=True,
        alt_key_file=str(lab.known_hosts),
    )
    try:
        t1 = time.perf_counter()
        for c in cmds:
            out = conn.send_command(c)
            verify(c, out if isinstance(out, str) else str(out))
    finally:
        conn.disconnect()
    return t1 - t0, time.perf_counter() - t0


def exec_variant(lab: FrrLab, cmds: list[str]) -> tuple[float, float]:
    from diag.remote.ssh import SSHPool

    host = inventory.load(lab.inventory).hosts["r1"]
    t0 = time.perf_counter()
    with SSHPool(known_hosts=lab.known_hosts, max_concurrency=1) as pool:
        conn = pool.connect(host)
        t1 = time.perf_counter()
        for c in cmds:
            r = conn.run(c)
            if r.exit_status != 0:
                raise RuntimeError(f"exec `{c}`: exit {r.exit_status}: {r.stderr.strip()[:200]}")
            verify(c, r.stdout)
    return t1 - t0, time.perf_counter() - t0


def openssh_variant(lab: FrrLab, cmds: list[str]) -> tuple[float, float]:
    base = ["ssh", "-i", str(lab.client_key), "-o", f"UserKnownHostsFile={lab.known_hosts}"]
    base += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"{VTY_USER}@{MGMT}"]
    t0 = time.perf_counter()
    first = 0.0
    for i, c in enumerate(cmds):
        p = subprocess.run([*base, c], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"ssh `{c}`: exit {p.returncode}: {p.stderr.strip()[:200]}")
        verify(c, p.stdout)
        if i == 0:
            first = time.perf_counter() - t0
    return first, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--commands", type=int, default=10)
    args = ap.parse_args()
    cmds = commands(args.commands)
    variants: dict[str, Callable[[FrrLab, list[str]], tuple[float, float]]] = {
        "diag (open_device)": diag_variant,
        "netmiko ConnectHandler": netmiko_variant,
        "diag SSHPool exec channels": exec_variant,
        "OpenSSH, ssh per command": openssh_variant,
    }
    with FrrLab() as lab:
        lab.converged()
        rows: dict[str, tuple[float, float] | str] = {}
        for name, fn in variants.items():
            try:
                fn(lab, cmds)  # warm-up (imports, first key exchange)
                runs = [fn(lab, cmds) for _ in range(args.runs)]
            except Exception as e:  # a failing variant is reported as failed, never timed
                rows[name] = f"FAILED: {' '.join(str(e).split())[:150]}"
                continue
            rows[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    print(f"FRR 8.4 vtysh over SSH, {len(cmds)} show commands per session, median of {args.runs} runs")
    print(f"{'variant':28} {'connect s':>10} {'total s':>9} {'per cmd ms':>11} {'total / diag':>13}")
    ref = rows.get("diag (open_device)")
    for name, r in rows.items():
        if isinstance(r, str):
            print(f"{name:28} {r}")
            continue
        per = (r[1] - r[0]) / max(len(cmds) - (1 if name.startswith("OpenSSH") else 0), 1) * 1000
        ratio = f"{r[1] / ref[1]:.2f}x" if isinstance(ref, tuple) else "-"
        print(f"{name:28} {r[0]:10.3f} {r[1]:9.3f} {per:11.1f} {ratio:>13}")


if __name__ == "__main__":
    main()
