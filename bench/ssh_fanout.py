"""SSH fan-out bench: the same 5-command diagnosis on 50 lab hosts with diag, paramiko threads, parallel-ssh, Ansible.

Builds a lab of real sshd hosts (tests/labs/lab.py), then runs each variant ``--runs`` times (median reported) and
prints wall time, controller CPU (the children's utime+stime around each subprocess) and ratios. Every variant
uses the same key exchange (curve25519-sha256), checks host keys against the lab's known_hosts, and has its output
verified (a variant that failed on a host is reported as failed, not timed). Run as root::

    .venv/bin/python bench/ssh_fanout.py [--hosts 50] [--runs 3] [--no-ansible-command]

Variants: (a) ``diag check`` with bench/fanout-playbook.yaml; (b) a bare paramiko ThreadPoolExecutor, 50
threads, one connection per host, 5 exec_command each (a fresh interpreter, like diag); (c) parallel-ssh -p 50
with the 5 commands joined into one (one connection per host) and (c2) as 5 separate runs; (d) an Ansible playbook
of 5 raw tasks (forks 50, pipelining, host key checking on); (e) the same with the command module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMANDS = ["uptime", "df -P /", "free -b", "cat /proc/loadavg", "ip -o link"]
KEX_OPENSSH = "curve25519-sha256"
KEX_PARAMIKO = "curve25519-sha256@libssh.org"  # the same algorithm under its original name
VENV = ROOT / ".venv" / "bin"
PLAYBOOK = ROOT / "bench" / "fanout-playbook.yaml"


@dataclass
class Sample:
    wall: float
    cpu: float


@dataclass
class Variant:
    name: str
    note: str
    run: Callable[[], None]  # raises RuntimeError when the output shows a failure
    after: Callable[[], None] | None = None  # clean-up between runs, outside the timing
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], None]) -> Sample:
    c0, t0 = children_cpu(), time.perf_counter()
    fn()
    return Sample(time.perf_counter() - t0, children_cpu() - c0)


def sh(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} exit {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}")
    return p.stdout


# ---- (b) the baseline, run in a fresh interpreter: `ssh_fanout.py --paramiko-worker INVENTORY KNOWN_HOSTS`
def paramiko_worker(inventory: str, known_hosts: str) -> None:
    """Bare paramiko: SSHClient per host, RejectPolicy, 5 exec_command, read both streams, exit status."""
    from concurrent.futures import ThreadPoolExecutor

    import paramiko
    import yaml

    t0, c0 = time.perf_counter(), time.process_time()
    doc = yaml.safe_load(Path(inventory).read_text())
    key = paramiko.Ed25519Key.from_private_key_file(doc["defaults"]["ssh_key"])
    addrs = [h["address"] for h in doc["hosts"].values()]
    other_kex = [k for k in paramiko.Transport._preferred_kex if k != KEX_PARAMIKO]  # type: ignore[attr-defined]

    def one(addr: str) -> int:
        c = paramiko.SSHClient()
        c.load_host_keys(known_hosts)
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        c.connect(
            addr,
            username=doc["defaults"]["user"],
            pkey=key,
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
            disabled_algorithms={"kex": other_kex},
        )
        ok = 0
        for cmd in COMMANDS:
            _, out, err = c.exec_command(cmd)
            out.read()
            err.read()
            ok += out.channel.recv_exit_status() == 0
        c.close()
        return ok

    with ThreadPoolExecutor(50) as ex:
        oks = list(ex.map(one, addrs))
    if sum(oks) != len(addrs) * len(COMMANDS):
        sys.exit(f"paramiko: {sum(oks)} of {len(addrs) * len(COMMANDS)} commands succeeded")
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-ansible-command", action="store_true", help="skip the slow command-module playbook")
    ap.add_argument("--only", action="append", help="run only variants whose name starts with this")
    ap.add_argument("--paramiko-worker", nargs=2, metavar=("INVENTORY", "KNOWN_HOSTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.paramiko_worker:
        paramiko_worker(*args.paramiko_worker)
        return 0
    if os.geteuid() != 0:
        sys.exit("the bench builds network namespaces: run it as root")
    for tool in ("parallel-ssh", "ansible-playbook"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: apt-get install -y pssh ansible (see scripts/debian-packages.txt)")

    from tests.labs.lab import Lab

    lab = Lab(args.hosts)
    work = Path(tempfile.mkdtemp(prefix="dgs-bench-"))
    try:
        t0 = time.perf_counter()
        lab.start()
        print(f"lab: {args.hosts} hosts with sshd built in {time.perf_counter() - t0:.1f} s ({lab.dir})", flush=True)
        variants, inproc = build_variants(lab, work, args)
        if args.only:
            variants = [v for v in variants if any(v.name.startswith(o) for o in args.only)]
        for v in variants:
            for i in range(args.runs):
                try:
                    s = timed(v.run)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    v.error = str(e).splitlines()[0] if str(e) else type(e).__name__
                    print(f"  {v.name}: FAILED: {v.error}", flush=True)
                    break
                v.samples.append(s)
                if v.after is not None:
                    v.after()
                print(f"  {v.name} run {i + 1}: {s.wall:.2f} s wall, {s.cpu:.2f} s CPU", flush=True)
        report(variants, args.hosts, inproc)
    finally:
        lab.close()
        kill_leftover_ssh(work)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def build_variants(lab: object, work: Path, args: argparse.Namespace) -> tuple[list[Variant], list[dict[str, float]]]:
    from tests.labs.lab import Lab

    assert isinstance(lab, Lab)
    hosts = list(lab.hosts.values())
    ssh_opts = [
        "-F",
        "/dev/null",
        "-o",
        f"KexAlgorithms={KEX_OPENSSH}",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-i",
        str(lab.client_key),
    ]

    # (a) diag check
    data = work / "diag-data"

    def diag() -> None:
        out = sh(
            [
                str(VENV / "diag"),
                "check",
                "--inventory",
                str(lab.inventory),
                "-p",
                str(PLAYBOOK),
                "--json",
                "--known-hosts",
                str(lab.known_hosts),
                "--data",
                str(data),
                "all",
            ]
        )
        doc = json.loads(out)
        bad = [r for r in doc["results"] if r["status"] not in ("ok", "findings")]
        if len(doc["results"]) != len(hosts) or bad:
            raise RuntimeError(f"diag: {len(doc['results'])} results, failed: {bad[:2]}")

    # (b) paramiko threads in a fresh interpreter; the worker also reports its in-process figures
    inproc: list[dict[str, float]] = []

    def bare_paramiko() -> None:
        out = sh([str(VENV / "python"), __file__, "--paramiko-worker", str(lab.inventory), str(lab.known_hosts)])
        inproc.append(json.loads(out))

    # (c) parallel-ssh
    hostfile = work / "pssh-hosts"
    hostfile.write_text("".join(f"{h.address}\n" for h in hosts))
    pssh_base = ["parallel-ssh", "-h", str(hostfile), "-p", "50", "-l", "diaglab", "-t", "60"]
    pssh_x = ["-x", " ".join(ssh_opts)]

    def pssh_combined() -> None:
        outdir = work / "pssh-out"
        shutil.rmtree(outdir, ignore_errors=True)
        sh([*pssh_base, *pssh_x, "-o", str(outdir), "; ".join(COMMANDS)])
        if len(list(outdir.iterdir())) != len(hosts):
            raise RuntimeError("parallel-ssh: missing outputs")

    def pssh_five() -> None:
        for cmd in COMMANDS:
            sh([*pssh_base, *pssh_x, cmd])

    # (d, e) Ansible
    ansible_dir = work / "ansible"
    ansible_dir.mkdir()
    inv = ansible_dir / "hosts.ini"
    common = " ".join(ssh_opts[:-2])  # the key goes through ansible_ssh_private_key_file
    inv.write_text(
        "[lab]\n"
        + "".join(f"{h.name} ansible_host={h.address}\n" for h in hosts)
        + "[lab:vars]\nansible_user=diaglab\n"
        + f"ansible_ssh_private_key_file={lab.client_key}\n"
        + f"ansible_ssh_common_args='{common}'\n"
        + "ansible_python_interpreter=/usr/bin/python3\n"
    )
    cp_dir = ansible_dir / "cp"
    (ansible_dir / "ansible.cfg").write_text(
        "[defaults]\nforks = 50\nhost_key_checking = True\ngathering = explicit\nretry_files_enabled = False\n"
        f"remote_tmp = /tmp/dgs-ansible-remote\nlocal_tmp = {ansible_dir / 'tmp'}\n"
        "[ssh_connection]\npipelining = True\n"
        # Ansible's usual ControlMaster, but short-lived and in a per-run directory, so no run reuses the
        # connections of the previous one and no master outlives the bench.
        "ssh_args = -C -o ControlMaster=auto -o ControlPersist=2s\n"
        f"control_path_dir = {cp_dir}\n"
    )
    for module in ("raw", "command"):
        tasks = "".join(f"    - {module}: {cmd}\n" for cmd in COMMANDS)
        (ansible_dir / f"{module}.yml").write_text(f"- hosts: lab\n  gather_facts: false\n  tasks:\n{tasks}")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ansible_dir / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "json"}

    def cleanup() -> None:
        kill_leftover_ssh(cp_dir)

    def ansible(module: str) -> Callable[[], None]:
        def go() -> None:
            shutil.rmtree(cp_dir, ignore_errors=True)
            out = sh(["ansible-playbook", "-i", str(inv), str(ansible_dir / f"{module}.yml")], env=env, cwd=ansible_dir)
            stats = json.loads(out[out.index("{") :])["stats"]
            bad = {h: s for h, s in stats.items() if s["ok"] != len(COMMANDS) or s["failures"] or s["unreachable"]}
            if len(stats) != len(hosts) or bad:
                raise RuntimeError(f"ansible {module}: {len(stats)} hosts, failed: {list(bad.items())[:2]}")

        return go

    variants = [
        Variant("diag check", "5-step playbook, one connection per host", diag),
        Variant("paramiko threads", "50 threads, SSHClient + 5 exec_command", bare_paramiko),
        Variant("parallel-ssh 1x", "5 commands joined with ';' (1 connection/host)", pssh_combined),
        Variant("parallel-ssh 5x", "5 runs, one per command (5 connections/host)", pssh_five),
        Variant("ansible raw", "5 raw tasks, forks 50, pipelining, ControlMaster", ansible("raw"), cleanup),
    ]
    if not args.no_ansible_command:
        variants.append(Variant("ansible command", "5 command tasks, same settings", ansible("command"), cleanup))
    return variants, inproc


def report(variants: list[Variant], n_hosts: int, inproc: list[dict[str, float]]) -> None:
    by = {v.name: v for v in variants if v.samples and not v.error}
    raw, bare, d = by.get("ansible raw"), by.get("paramiko threads"), by.get("diag check")
    runs = max(len(v.samples) for v in variants)
    print(f"\n{n_hosts} hosts x {len(COMMANDS)} commands, kex {KEX_OPENSSH}, median of {runs} run(s)")
    head = ("variant", "wall s", "ctl CPU s", "CPU/host ms", "vs ansible raw", "vs paramiko")
    print(f"{head[0]:18} {head[1]:>7} {head[2]:>9} {head[3]:>11} {head[4]:>14} {head[5]:>11}  note")
    for v in variants:
        if v.error or not v.samples:
            print(f"{v.name:18} FAILED: {v.error}")
            continue
        speedup = (
            "-"
            if not raw
            else f"{raw.wall / v.wall:.1f}x faster"
            if raw.wall >= v.wall
            else f"{v.wall / raw.wall:.1f}x slower"
        )
        vs_bare = f"{v.wall / bare.wall:.2f}x wall" if bare else "-"
        per_host = 1000 * v.cpu / n_hosts
        print(f"{v.name:18} {v.wall:7.2f} {v.cpu:9.2f} {per_host:11.1f} {speedup:>14} {vs_bare:>11}  {v.note}")
    if inproc:
        w = statistics.median(x["wall"] for x in inproc)
        c = statistics.median(x["cpu"] for x in inproc)
        print(
            f"paramiko threads inside its own process (no interpreter start, no imports): {w:.2f} s wall, {c:.2f} s CPU"
        )
    if d and raw and bare:
        per_host = 1000 * d.cpu / n_hosts
        goals = [
            ("diag >= 5x faster than ansible raw", f"{raw.wall / d.wall:.1f}x", raw.wall / d.wall >= 5),
            ("diag <= 1.1x paramiko threads wall", f"{d.wall / bare.wall:.2f}x", d.wall / bare.wall <= 1.1),
            ("diag controller CPU <= 15 ms/host", f"{per_host:.1f} ms", per_host <= 15),
        ]
        print("\ngoals:")
        for text, value, met in goals:
            print(f"  {text}: {value} -> {'met' if met else 'NOT met'}")


def kill_leftover_ssh(marker: Path) -> None:
    """Kill ssh ControlMaster processes whose command line names ``marker`` (ours only), by PID."""
    needle = str(marker).encode()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and cmdline.startswith(b"ssh"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_dir.name), 9)


if __name__ == "__main__":
    sys.exit(main())
