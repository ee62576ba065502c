"""Scale-out bench: a simulated fleet on this machine, checked through 1, 2 and 4 `diag worker` processes.

What it measures, all in one run against real peers (a real Redis, real sshd hosts in network namespaces):
- throughput (hosts/s) of the 5-command diagnosis (bench/fanout-playbook.yaml) on ``--hosts`` lab hosts, through
  the Celery backend with 1, 2 and 4 workers, next to the in-process backend (`diag check` as it always ran);
- CPU seconds spent by the workers and the controller per host, and each worker's RSS;
- inventory load time for a 10,000-host inventory, and the memory it takes per host (tracemalloc);
- scheduler overhead: 10,000 scheduled checks (every 300 s) ticked for one simulated interval against Redis,
  with dispatch replaced by a counter so only the scheduler's own cost is timed; CPU per tick and per firing;
- SNMP: ``--snmpd`` real snmpd endpoints (one namespace each, 20 interfaces) behind ``--snmp-devices`` inventory
  devices, polled (system + if_mib) by the agent's in-process SnmpPoller and through 1, 2 and 4 workers;
- Redis memory per host result.
Prints the figures and ratios; asserts nothing. Run as root::

    .venv/bin/python bench/fleet_scale.py [--hosts 200] [--runs 2]
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.gen_inventory import generate  # noqa: E402
from diag import inventory  # noqa: E402
from diag.distributed.backend import CeleryBackend  # noqa: E402
from diag.distributed.leader import Leadership  # noqa: E402
from diag.distributed.scheduler import DistributedScheduler, ScheduledCheck  # noqa: E402
from diag.distributed.tasks import results_key  # noqa: E402
from diag.remote import playbook as pbmod  # noqa: E402
from diag.remote.ssh import SSHPool  # noqa: E402
from diag.services.backends import LocalBackend  # noqa: E402
from tests.labs.lab import Lab  # noqa: E402
from tests.labs.redislab import RedisServer  # noqa: E402
from tests.labs.snmplab import COMMUNITY, SnmpLab  # noqa: E402

PLAYBOOK = ROOT / "bench" / "fanout-playbook.yaml"
PY = str(ROOT / ".venv" / "bin" / "python")


def tree_cpu(pid: int) -> float:
    """utime+stime of a process and its threads (Celery's thread pool lives in the worker process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def start_workers(n: int, url: str, known_hosts: Path, tmp: Path, concurrency: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        log = open(tmp / f"w{n}-{i}.log", "wb")  # noqa: SIM115 - the child's stdout
        procs.append(
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "diag.cli",
                    "worker",
                    "--redis",
                    url,
                    "--name",
                    f"w{i}",
                    "--known-hosts",
                    str(known_hosts),
                    "--data",
                    str(tmp / f"w{i}"),
                    "--concurrency",
                    str(concurrency),
                    "--log-level",
                    "INFO",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=tmp,
            )
        )
    deadline = time.monotonic() + 120
    for i in range(n):
        while "ready." not in (tmp / f"w{n}-{i}.log").read_text(errors="replace"):
            if time.monotonic() > deadline or procs[i].poll() is not None:
                raise SystemExit(f"worker {i} did not start: {(tmp / f'w{n}-{i}.log').read_text()}")
            time.sleep(0.1)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def fleet(args: argparse.Namespace, lab: Lab, url: str, tmp: Path) -> None:
    inv = inventory.load(str(lab.inventory))
    hosts = inv.select(["lab"])
    pb = pbmod.load(PLAYBOOK)
    n = len(hosts)
    print(f"\n== throughput: {n} lab hosts x 5 commands ({args.runs} runs each, median)")
    print(
        f"{'backend':<22}{'wall s':>9}{'hosts/s':>10}{'ctl CPU ms/host':>17}{'wkr CPU ms/host':>17}{'wkr RSS MiB':>13}"
    )
    rows: dict[str, float] = {}
    walls, cpus = [], []
    for _ in range(args.runs):
        pool = SSHPool(known_hosts=[lab.known_hosts], max_concurrency=50, hosts=inv.hosts)
        c0, t0 = self_cpu(), time.monotonic()
        rep = LocalBackend(pool).run_check(hosts, pb)
        walls.append(time.monotonic() - t0)
        cpus.append(self_cpu() - c0)
        pool.close_all()
        bad = [r.host for r in rep.results if r.status != "ok"]
        if bad:
            raise SystemExit(f"in-process run failed on {bad[:5]}")
    wall = statistics.median(walls)
    rows["local"] = wall
    print(
        f"{'in-process (50 thr)':<22}{wall:>9.2f}{n / wall:>10.1f}"
        f"{statistics.median(cpus) / n * 1000:>17.1f}{'-':>17}{'-':>13}"
    )
    r = redis.Redis.from_url(url)
    for workers in (1, 2, 4):
        procs = start_workers(workers, url, lab.known_hosts, tmp, concurrency=max(1, 50 // workers))
        try:
            backend = CeleryBackend(url, lab.inventory, PLAYBOOK, timeout_s=600)
            walls, ctl, wkr = [], [], []
            for _ in range(args.runs):
                w0 = sum(tree_cpu(p.pid) for p in procs)
                c0, t0 = self_cpu(), time.monotonic()
                rep = backend.run_check(hosts, pb)
                walls.append(time.monotonic() - t0)
                ctl.append(self_cpu() - c0)
                wkr.append(sum(tree_cpu(p.pid) for p in procs) - w0)
                bad = [x.host for x in rep.results if x.status != "ok"]
                if bad:
                    raise SystemExit(f"{workers} workers: failed on {bad[:5]}: {rep.results[0].error}")
            share = sorted(collections.Counter(backend.workers().values()).values())
            rss = statistics.mean(rss_mib(p.pid) for p in procs)
            mem = r.memory_usage(results_key(backend.last_run_id)) or 0
        finally:
            stop_workers(procs)
        wall = statistics.median(walls)
        rows[f"{workers}"] = wall
        print(
            f"{f'celery, {workers} worker(s)':<22}{wall:>9.2f}{n / wall:>10.1f}"
            f"{statistics.median(ctl) / n * 1000:>17.1f}"
            f"{statistics.median(wkr) / n * 1000:>17.1f}{rss:>13.1f}   hosts per worker {share}"
        )
    print(f"Redis memory for one run's results: {mem / n / 1024:.1f} KiB per host (evidence included, 24 h TTL)")
    print(
        "ratios (wall time vs in-process):",
        ", ".join(f"{k} worker(s) {rows[k] / rows['local']:.2f}x" for k in ("1", "2", "4")),
    )
    print(f"speed-up 1 -> 2 workers {rows['1'] / rows['2']:.2f}x, 1 -> 4 workers {rows['1'] / rows['4']:.2f}x")


def snmp_fleet(args: argparse.Namespace, url: str, tmp: Path) -> None:
    from contextlib import ExitStack

    from diag.distributed.app import make_app
    from diag.distributed.backend import dispatch_snmp
    from diag.distributed.tasks import SNMP_LATEST_KEY
    from diag.network.snmp.poller import SnmpPoller

    print(f"\n== SNMP: {args.snmp_devices} devices on {args.snmpd} real snmpd endpoints (system + if_mib, 20 ifaces)")
    os.environ["DGD_BENCH_COMMUNITY"] = COMMUNITY
    with ExitStack() as stack:
        labs = [stack.enter_context(SnmpLab(20)) for _ in range(args.snmpd)]
        path = tmp / "snmp-inventory.yaml"
        lines = ["defaults:", "  snmp: {community: 'env:DGD_BENCH_COMMUNITY', timeout: 2, retries: 1}", "hosts:"]
        for i in range(args.snmp_devices):
            lines.append(f"  dev{i}: {{address: {labs[i % len(labs)].address}, snmp: {{profiles: [system, if_mib]}}}}")
        path.write_text("\n".join(lines) + "\n")
        inv = inventory.load(str(path))
        hosts = list(inv.hosts.values())
        n = len(hosts)
        poller = SnmpPoller(inv)
        c0, t0 = self_cpu(), time.monotonic()
        results = poller.poll_once()
        wall, cpu = time.monotonic() - t0, self_cpu() - c0
        failed = ("snmp_not_answering", "snmp_poll_failed")
        bad = [h for h, r in results.items() if any(f.check in failed for f in r.findings)]
        print(f"{'backend':<22}{'wall s':>9}{'polls/s':>10}{'CPU ms/poll':>13}")
        print(f"{'in-process poller':<22}{wall:>9.2f}{n / wall:>10.1f}{cpu / n * 1000:>13.1f}   failed: {len(bad)}")
        r = redis.Redis.from_url(url)
        for workers in (1, 2, 4):
            procs = start_workers(workers, url, tmp / "known_hosts", tmp, concurrency=max(1, 32 // workers))
            try:
                app = make_app(url)
                r.delete(SNMP_LATEST_KEY)
                w0 = sum(tree_cpu(p.pid) for p in procs)
                t0 = time.monotonic()
                dispatch_snmp(app, path, hosts)
                while r.hlen(SNMP_LATEST_KEY) < n:
                    if time.monotonic() - t0 > 600:
                        raise SystemExit("SNMP polls through workers did not finish in 600 s")
                    time.sleep(0.02)
                wall = time.monotonic() - t0
                cpu = sum(tree_cpu(p.pid) for p in procs) - w0
            finally:
                stop_workers(procs)
            print(f"{f'celery, {workers} worker(s)':<22}{wall:>9.2f}{n / wall:>10.1f}{cpu / n * 1000:>13.1f}")


def inventory_cost(tmp: Path) -> None:
    print("\n== 10,000-host inventory")
    path = tmp / "inv10k.yaml"
    path.write_text(generate(10_000))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        inventory.load(str(path))
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    inv = inventory.load(str(path))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"load: median {statistics.median(times) * 1000:.0f} ms; "
        f"resident: {size / len(inv.hosts) / 1024:.2f} KiB per host"
    )


def scheduler_cost(url: str) -> None:
    print("\n== scheduler: 10,000 scheduled checks, every 300 s, one simulated interval (300 ticks of 1 s)")
    r = redis.Redis.from_url(url)
    r.flushdb()
    jobs = [
        ScheduledCheck(name=f"job{i}", playbook="linux-baseline", targets=[f"h{i}"], every=300) for i in range(10_000)
    ]
    fired = 0

    def fire(job: ScheduledCheck, slot: int) -> None:
        nonlocal fired
        fired += 1

    now = [1_800_000_000.0]
    sched = DistributedScheduler(r, Leadership(r, "bench"), jobs, fire, clock=lambda: now[0])
    tracemalloc.start()
    sched.run_once()  # builds the heap, fires the current slot of every job
    heap_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    first = fired
    c0, t0 = self_cpu(), time.perf_counter()
    for _ in range(300):
        now[0] += 1
        sched.run_once()
    cpu, wall = self_cpu() - c0, time.perf_counter() - t0
    steady = fired - first
    print(f"first tick after taking the lead: {first} firings (each job's current slot)")
    print(
        f"steady state: {steady} firings in 300 ticks; CPU {cpu:.2f} s per 300 s interval "
        f"({cpu / 300 * 1000:.1f} ms per tick, {cpu / max(steady, 1) * 1e6:.0f} us per firing incl. the Redis fence);"
        f" wall {wall:.2f} s; scheduler state {heap_bytes / 1024 / 1024:.1f} MiB"
    )
    print(f"= {cpu / 300 * 100:.2f} % of one core to schedule 10,000 checks every 5 minutes")
    sched.leadership.resign()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--snmpd", type=int, default=16, help="real snmpd endpoints (namespaces)")
    ap.add_argument("--snmp-devices", type=int, default=256, help="inventory devices spread over them")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dgd-bench-"))
    with RedisServer() as rs:
        inventory_cost(tmp)
        scheduler_cost(rs.url)
        (tmp / "known_hosts").write_text("")
        snmp_fleet(args, rs.url, tmp)
        t0 = time.monotonic()
        with Lab(args.hosts) as lab:
            print(f"\n(lab of {args.hosts} sshd hosts built in {time.monotonic() - t0:.1f} s)")
            fleet(args, lab, rs.url, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
