"""Benchmark: diag's postgres + mysql probes against postgres_exporter + mysqld_exporter, in one run.

One PostgreSQL and one MariaDB server (tests/labs/dblab.py, each with its replica running, on loopback) are watched
by three things at once:

- ``diag agent`` with two database instances configured (``agent.probes.postgres`` and ``.mysql``, one instance
  each, every other probe disabled), probes every ``--interval`` seconds;
- a second ``diag agent`` with the same configuration but no database (the baseline for the RSS increase);
- Debian's ``prometheus-postgres-exporter`` and ``prometheus-mysqld-exporter`` (default collectors, plus the
  processlist and binlog sizes for mysqld_exporter, which diag also reads), scraped every ``--interval`` seconds.

Over the same ``--seconds`` window it reads utime+stime (+ cutime+cstime: the psql runs the agent waited for) of
each process from /proc/PID/stat: CPU per probe cycle (agent) and per scrape (exporters, both summed), and their
ratio; the goal of issue 18 is <= 1.0x. The agent's /metrics is scraped as often as the exporters are, so that both
sides pay for their exposition. RSS: VmRSS of the agent with databases minus the agent without (goal <= 6 MiB), and
the exporters' VmRSS for comparison. Also one probe cycle in this process (time.process_time of the two probes'
collect()), without the agent around it.

Usage: .venv/bin/python bench/db_probe_vs_exporters.py [--seconds 60] [--interval 1]
Prints everything; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.labs.dblab import DIAG_PASSWORD, MariaPair, PgPair  # noqa: E402

DIAG = os.environ.get("DIAG", str(Path(sys.executable).with_name("diag")))
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, and cutime, cstime: the psql runs the agent waited for are its cost too
    return sum(int(f) for f in fields[11:15]) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} does not answer")


def agent(tmp: Path, name: str, probes: dict[str, object], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    from diag import config

    lines = ["hosts: {}", "agent:", "  probes:"]
    for p in config.build(None, {}).probes:
        lines.append(f"    {p}: {json.dumps(probes.get(p, {'enabled': False}))}")
    inv = tmp / f"{name}.yaml"
    inv.write_text("\n".join(lines) + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}", "--data", str(tmp / name)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url)
    return proc, url


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dgdb-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port() for _ in range(4)]
        with PgPair(ports[0], ports[1]) as pg, MariaPair(ports[2], ports[3]) as my:
            env = {**os.environ, "DGB_MYSQL_PW": DIAG_PASSWORD}
            dbs = {
                "postgres": {"interval": args.interval, "instances": [{"name": "pg", "dsn": pg.primary.dsn}]},
                "mysql": {"interval": args.interval,
                          "instances": [{"name": "my", "dsn": my.primary.dsn, "password": "env:DGB_MYSQL_PW"}]},
            }  # fmt: skip
            with_db, with_url = agent(tmp, "with-db", dbs, env)
            without_db, without_url = agent(tmp, "without-db", {}, env)
            procs += [with_db, without_db]
            pg_port, my_port = free_port(), free_port()
            pg_exp = subprocess.Popen(
                [shutil.which("prometheus-postgres-exporter") or "/usr/bin/prometheus-postgres-exporter",
                 f"--web.listen-address=127.0.0.1:{pg_port}"],
                env={**os.environ, "DATA_SOURCE_NAME": f"postgresql://postgres@127.0.0.1:{pg.primary.port}/postgres?sslmode=disable"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            my_exp = subprocess.Popen(
                [shutil.which("prometheus-mysqld-exporter") or "/usr/bin/prometheus-mysqld-exporter",
                 f"--web.listen-address=127.0.0.1:{my_port}", "--collect.info_schema.processlist",
                 "--collect.binlog_size"],
                env={**os.environ, "DATA_SOURCE_NAME": f"diag:{DIAG_PASSWORD}@(127.0.0.1:{my.primary.port})/"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs += [pg_exp, my_exp]
            pg_url, my_url = f"http://127.0.0.1:{pg_port}/metrics", f"http://127.0.0.1:{my_port}/metrics"
            for u in (pg_url, my_url):
                wait_http(u)
            assert b"pg_up 1" in get(pg_url), "postgres_exporter cannot reach the server"
            assert b"mysql_up 1" in get(my_url), "mysqld_exporter cannot reach the server"
            # warm up: the agent's drivers are imported on the first run, the exporters' first scrape connects
            deadline = time.monotonic() + 30
            while b'diag_mysql_up{server="my"} 1.0' not in get(
                with_url
            ) or b'diag_postgres_up{server="pg"} 1.0' not in get(with_url):
                if time.monotonic() > deadline:
                    raise RuntimeError("the agent does not see both servers")
                time.sleep(0.5)
            for _ in range(3):
                get(pg_url), get(my_url)
            time.sleep(2)

            def last_runs(url: str) -> tuple[str, ...]:
                """The probes' last-run timestamps: each change is one more run."""
                text = get(url).decode()
                return tuple(ln.split()[-1] for ln in text.splitlines()
                             if ln.startswith(('diag_probe_last_run_timestamp_seconds{probe="postgres"}',
                                               'diag_probe_last_run_timestamp_seconds{probe="mysql"}')))  # fmt: skip

            seen = last_runs(with_url)
            changes = 0
            c0 = {p.pid: cpu_seconds(p.pid) for p in procs}
            scrapes = 0
            t_end = time.monotonic() + args.seconds
            while time.monotonic() < t_end:
                t = time.monotonic()
                get(pg_url), get(my_url), get(without_url)
                now_runs = last_runs(with_url)  # the agent's scrape, as the exporters' are scraped
                changes += sum(1 for x, y in zip(seen, now_runs, strict=False) if x != y)
                seen = now_runs
                scrapes += 1
                time.sleep(max(0.0, args.interval - (time.monotonic() - t)))
            c1 = {p.pid: cpu_seconds(p.pid) for p in procs}
            cycles = changes / 2  # a cycle is one run of each probe (counted when a scrape saw a new run)
            d = {pid: c1[pid] - c0[pid] for pid in c0}
            agent_cpu = d[with_db.pid] - d[without_db.pid]  # what the databases add to the same agent
            exp_cpu = d[pg_exp.pid] + d[my_exp.pid]
            per_cycle = agent_cpu / max(1.0, cycles)
            per_scrape = exp_cpu / max(1, scrapes)
            rss_with, rss_without = rss_mib(with_db.pid), rss_mib(without_db.pid)
            print(f"window {args.seconds:.0f} s, interval {args.interval:g} s: "
                  f"{cycles:.0f} probe cycles, {scrapes} scrapes of each")  # fmt: skip
            print(f"agent with 2 DB instances: CPU {d[with_db.pid]:.2f} s; without: {d[without_db.pid]:.2f} s; "
                  f"difference {agent_cpu:.2f} s = {per_cycle * 1000:.1f} ms per cycle")  # fmt: skip
            print(f"postgres_exporter CPU {d[pg_exp.pid]:.2f} s + mysqld_exporter {d[my_exp.pid]:.2f} s = "
                  f"{per_scrape * 1000:.1f} ms per scrape of both")  # fmt: skip
            print(f"CPU ratio diag / exporters: {per_cycle / per_scrape:.2f}x (goal <= 1.0x)")
            print(
                f"RSS: agent with DBs {rss_with:.1f} MiB, without {rss_without:.1f} MiB: "
                f"increase {rss_with - rss_without:.1f} MiB (goal <= 6 MiB); "
                f"postgres_exporter {rss_mib(pg_exp.pid):.1f} MiB + mysqld_exporter {rss_mib(my_exp.pid):.1f} MiB"
            )
            ours = [ln for ln in get(with_url).decode().splitlines() if ln.startswith(("diag_postgres", "diag_mysql"))]
            theirs = [ln for ln in (get(pg_url) + get(my_url)).decode().splitlines() if ln and not ln.startswith("#")]
            print(f"samples: diag {len(ours)}, exporters {len(theirs)}")
            # one cycle in this process, without the agent around it
            import msgspec

            from diag.probes.base import Paths
            from diag.probes.mysql import MysqlOptions, MysqlProbe
            from diag.probes.postgres import PostgresOptions, PostgresProbe

            os.environ["DGB_MYSQL_PW"] = DIAG_PASSWORD
            paths = Paths(state=tmp / "inproc")
            probes = [PostgresProbe(msgspec.convert(dbs["postgres"], PostgresOptions), paths),
                      MysqlProbe(msgspec.convert(dbs["mysql"], MysqlOptions), paths)]  # fmt: skip
            for p in probes:
                p.collect()
            import resource

            def children() -> float:
                ru = resource.getrusage(resource.RUSAGE_CHILDREN)
                return ru.ru_utime + ru.ru_stime

            t0, w0, k0 = time.process_time(), time.perf_counter(), children()
            n = 50
            for _ in range(n):
                for p in probes:
                    p.collect()
            here, psql = (time.process_time() - t0) / n * 1000, (children() - k0) / n * 1000
            wall = (time.perf_counter() - w0) / n * 1000
            print(f"in-process cycle (both probes): {here:.2f} ms CPU here + {psql:.2f} ms in psql, {wall:.2f} ms wall")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
