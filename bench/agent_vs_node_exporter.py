"""Benchmark: ``diag agent`` against ``prometheus-node-exporter`` on this machine, side by side in one run.

For each exporter: N sequential scrapes (as Prometheus sends them: gzip accepted, text format) give
median and p95 latency, CPU seconds per 100 scrapes (utime+stime of the exporter's process and of the
helper programs it waited for, from /proc/PID/stat), RSS (VmRSS, VmHWM) and the sample count (all, and
host samples only).

The two differ in model, and the figures say so: node_exporter collects on every scrape; diag runs its
probes on a schedule and a scrape renders cached results. So the scrape CPU of diag is measured on an
agent whose probes run once and then wait an hour (nothing else runs during the scrapes). A second
agent with the default configuration gives the RSS and samples of the real thing, and its CPU over an
idle window (probes on their 15 s schedule, no scrapes) is the cost of the probes. In this process one
probe cycle is also timed probe by probe (with the CPU of the helper programs they run), and so is the
re-render and gzip that the first scrape after a cycle pays. The line "all costs in" adds scrape,
re-render and one probe cycle for a 15 s probe interval and a 15 s scrape interval.

Usage: .venv/bin/python bench/agent_vs_node_exporter.py [--scrapes 100] [--idle 60] [--incidents]
(--incidents: the default agent also runs the incident engine, agent.incidents: {}, for its RSS)
Prints everything; asserts nothing.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIAG = os.environ.get("DIAG", str(Path(sys.executable).with_name("diag")))  # the venv running this script
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
TICK = os.sysconf("SC_CLK_TCK")
# What Prometheus 2.x sends with every scrape.
HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
# Not host figures: the exporters' own health and process metrics.
NOT_HOST = (
    "diag_probe_",
    "diag_build_info",
    "process_",
    "python_",
    "go_",
    "promhttp_",
    "node_scrape_collector_",
    "node_exporter_build_info",
)


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wire_bytes: int = 0
    text: str = ""

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def status(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
        return float("nan")


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process: all its threads (utime + stime) and the helper programs it ran and
    waited for (cutime + cstime: diag's probes run chronyc, smartctl, systemctl; node_exporter runs none)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def scrape(port: int, path: str = "/metrics") -> tuple[bytes, bytes]:
    """One scrape on a fresh connection, as Prometheus' scrape loop does it; (wire body, decoded body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=HEADERS)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{port}{path}: HTTP {r.status}")
        plain = gzip.decompress(body) if r.getheader("Content-Encoding") == "gzip" else body
        return body, plain
    finally:
        conn.close()


def wait_http(port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            scrape(port, path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def samples(text: str) -> tuple[int, int]:
    """(all samples, host samples) in an exposition."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    host = [line for line in lines if not line.startswith(NOT_HOST)]
    return len(lines), len(host)


def start_diag(
    tmp: Path, name: str, port: int, probe_interval: float | None, extra: str = ""
) -> subprocess.Popen[bytes]:
    lines = ["hosts: {}", "agent:", *([f"  {extra}"] if extra else []), "  probes:"]
    if probe_interval is not None:
        sys.path.insert(0, str(ROOT))
        from diag import config

        for probe, opts in config.build(None, {}).probes.items():
            if opts.enabled:
                lines.append(f"    {probe}: {{interval: {probe_interval}}}")
    if lines[-1] == "  probes:":
        lines.pop()
    inv = tmp / f"{name}.yaml"
    inv.write_text("\n".join(lines) + "\n")
    args = [DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}", "--data", str(tmp / name)]
    log = (tmp / f"{name}.log").open("wb")
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def wait_probes_ran(port: int, timeout: float = 60.0) -> None:
    """Until every enabled probe of the agent has finished its first run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = json.loads(scrape(port, "/healthz")[1])
        text = scrape(port)[1].decode()
        ran = sum(1 for line in text.splitlines() if line.startswith("diag_probe_success{"))
        if ran >= health["probes"] and not health["running_probes"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"probes of the agent on {port} did not all run within {timeout:g} s")


def measure(targets: list[Target], n: int, warmup: int) -> None:
    """Interleaved scrapes (one of each in turn), so load from elsewhere hits both alike."""
    for _ in range(warmup):
        for t in targets:
            scrape(t.port)
    before = {t.name: t.cpu() for t in targets}
    for _ in range(n):
        for t in targets:
            t0 = time.perf_counter()
            wire, plain = scrape(t.port)
            t.latencies.append(time.perf_counter() - t0)
            t.wire_bytes, t.text = len(wire), plain.decode()
    for t in targets:
        t.cpu_s = t.cpu() - before[t.name]


def probe_cycle(cycles: int) -> tuple[float, float, float, float, dict[str, float], int]:
    """Probes and exposition in this process, one probe after the other as the schedule spreads them.

    Returns CPU seconds per cycle of (the probes, the helper programs they ran, the re-render and gzip
    that the first scrape after a cycle pays), the concurrent ``run_all()`` CPU for comparison, the
    probes with the most CPU (ms), and the probe sample count.
    """
    sys.path.insert(0, str(ROOT))
    from diag import config
    from diag.exporters.prometheus import Exposition
    from diag.probes.runner import ProbeRunner

    def cpu() -> tuple[float, float]:
        t = os.times()
        return t.user + t.system, t.children_user + t.children_system

    with tempfile.TemporaryDirectory(prefix="diag-bench-") as d:
        cfg = config.build(None, {"data": d})
        cfg.paths.state.mkdir(parents=True, exist_ok=True)
        runner = ProbeRunner(cfg)
        exposition = Exposition(runner)
        runner.run_all()  # first run: opens files, primes rate baselines
        exposition.render(gzip=True)
        per_probe = dict.fromkeys(runner.probes, 0.0)
        probe_cpu = child_cpu = render_cpu = 0.0
        for _ in range(cycles):
            for name in runner.probes:
                c0 = time.process_time()
                (_, k0) = cpu()
                runner.run(name)
                per_probe[name] += time.process_time() - c0
                child_cpu += cpu()[1] - k0
            c1 = time.process_time()
            exposition.render(gzip=True)
            render_cpu += time.process_time() - c1
        probe_cpu = sum(per_probe.values())
        c2 = time.process_time()
        for _ in range(cycles):
            runner.run_all()
        concurrent = (time.process_time() - c2) / cycles
        host = sum(s.result.sample_count for s in runner.states.values())
        runner.shutdown()
    top = dict(sorted(((n, v / cycles * 1e3) for n, v in per_probe.items()), key=lambda kv: -kv[1])[:6])
    return probe_cpu / cycles, child_cpu / cycles, render_cpu / cycles, concurrent, top, host


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrapes", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--cycles", type=int, default=20, help="probe cycles timed in-process")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of probe-only CPU on the default agent")
    ap.add_argument("--ports", default="19250,19251,19252", help="diag (quiet), node_exporter, diag (default)")
    ap.add_argument("--incidents", action="store_true", help="the default agent also runs the incident engine")
    args = ap.parse_args()
    p_quiet, p_ne, p_default = (int(p) for p in args.ports.split(","))

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="diag-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            quiet = start_diag(tmp, "diag-quiet", p_quiet, probe_interval=3600)
            procs.append(quiet)
            default = start_diag(
                tmp, "diag-default", p_default, probe_interval=None, extra="incidents: {}" if args.incidents else ""
            )
            procs.append(default)
            ne_log = (tmp / "node_exporter.log").open("wb")
            ne = subprocess.Popen(
                [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{p_ne}"],
                stdin=subprocess.DEVNULL,
                stdout=ne_log,
                stderr=ne_log,
            )
            procs.append(ne)
            for port in (p_quiet, p_default):
                wait_http(port, "/healthz")
                wait_probes_ran(port)
            wait_http(p_ne, "/metrics")

            d_t, ne_t = Target("diag", quiet, p_quiet), Target("node_exporter", ne, p_ne)
            measure([d_t, ne_t], args.scrapes, args.warmup)
            dflt = Target("diag-default", default, p_default)
            dflt.text = scrape(p_default)[1].decode()

            # The default agent: probes on their 15 s schedule, nobody scraping.
            c0 = dflt.cpu()
            time.sleep(args.idle)
            idle_cpu = dflt.cpu() - c0
            probe_cpu, child_cpu, render_cpu, concurrent_cpu, top, cycle_samples = probe_cycle(args.cycles)
            rss = {t.name: (t.status("VmRSS"), t.status("VmHWM")) for t in (d_t, ne_t, dflt)}
        finally:
            for p in procs:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        os.kill(p.pid, signal.SIGKILL)
                        p.wait()

    n = args.scrapes
    rows: list[tuple[str, float, float, str]] = []

    def row(label: str, a: float, b: float, fmt: str = "{:.2f}") -> None:
        rows.append((label, a, b, fmt))

    d_all, d_host = samples(dflt.text)
    q_all, q_host = samples(d_t.text)
    n_all, n_host = samples(ne_t.text)
    row("scrape latency median (ms)", statistics.median(d_t.latencies) * 1e3, statistics.median(ne_t.latencies) * 1e3)
    row("scrape latency p95 (ms)", pct(d_t.latencies, 0.95) * 1e3, pct(ne_t.latencies, 0.95) * 1e3)
    row(f"CPU s per 100 scrapes ({n} done)", d_t.cpu_s * 100 / n, ne_t.cpu_s * 100 / n, "{:.3f}")
    row("CPU ms per scrape", d_t.cpu_s * 1e3 / n, ne_t.cpu_s * 1e3 / n)
    row("RSS MiB (VmRSS, default agent)", rss["diag-default"][0], rss["node_exporter"][0], "{:.1f}")
    row("peak RSS MiB (VmHWM, default agent)", rss["diag-default"][1], rss["node_exporter"][1], "{:.1f}")
    row("samples per scrape", d_all, n_all, "{:.0f}")
    row("host samples per scrape", d_host, n_host, "{:.0f}")
    row("bytes on the wire per scrape", d_t.wire_bytes, ne_t.wire_bytes, "{:.0f}")

    print(f"diag agent vs prometheus-node-exporter, {n} interleaved scrapes each after {args.warmup} warm-up")
    print(f"{'':40} {'diag':>12} {'node_exp':>12} {'ratio':>8}")
    for label, a, b, fmt in rows:
        ratio = a / b if b else float("nan")
        print(f"{label:40} {fmt.format(a):>12} {fmt.format(b):>12} {ratio:>7.2f}x")
    print(
        f"(quiet agent used for the scrape figures: {q_all} samples, {q_host} host samples, "
        f"RSS {rss['diag'][0]:.1f} MiB)"
    )

    ne_cpu = ne_t.cpu_s / n
    idle_per_15 = idle_cpu / args.idle * 15
    # 15 s probe interval, 15 s scrape interval: every scrape pays a cached render, the re-render of what
    # changed since the last one, and one cycle of probes as the real agent runs them (its idle CPU).
    per_scrape = d_t.cpu_s / n + render_cpu + idle_per_15
    print()
    print(
        f"probe cycle in-process ({args.cycles} cycles, probes one after the other): "
        f"{(probe_cpu + child_cpu) * 1e3:.1f} ms CPU = probes {probe_cpu * 1e3:.1f} + their helper programs "
        f"{child_cpu * 1e3:.1f}; {cycle_samples} probe samples"
    )
    print("  most CPU (ms per run): " + ", ".join(f"{k} {v:.2f}" for k, v in top.items()))
    print(f"  the same probes all at once (run_all, GIL contention): {concurrent_cpu * 1e3:.1f} ms")
    print(f"  re-render and gzip of every probe's text after a cycle: {render_cpu * 1e3:.1f} ms")
    print(
        f"default agent, {args.idle:g} s with probes on their schedule and no scrapes: {idle_cpu * 1e3:.0f} ms CPU "
        f"(helper programs included) = {idle_per_15 * 1e3:.1f} ms per 15 s"
    )
    print(
        f"CPU per scrape, all costs in (15 s probes, 15 s scrapes): diag {d_t.cpu_s / n * 1e3:.2f} scrape "
        f"+ {render_cpu * 1e3:.2f} re-render + {idle_per_15 * 1e3:.1f} probes = {per_scrape * 1e3:.1f} ms; "
        f"node_exporter {ne_cpu * 1e3:.1f} ms; ratio {per_scrape / ne_cpu:.2f}x"
    )
    print()
    print("goals (issue 2):")
    print(f"  host samples >= 450: {d_host} -> {'met' if d_host >= 450 else 'NOT met'}")
    print(
        f"  scrape CPU <= 1.0x node_exporter: {d_t.cpu_s / ne_t.cpu_s:.2f}x -> "
        f"{'met' if d_t.cpu_s <= ne_t.cpu_s else 'NOT met'} (all costs in: {per_scrape / ne_cpu:.2f}x)"
    )
    print(
        f"  RSS <= 40 MiB: {rss['diag-default'][0]:.1f} MiB -> {'met' if rss['diag-default'][0] <= 40 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
