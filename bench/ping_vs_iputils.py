"""Ping bench: diag's echo RTTs and loss against iputils ``ping`` on the same path, idle and with the CPUs loaded.

All three variants ping b from a in the routed lab (tests/labs/routedlab.py: two routers in between, veth links)
with the same count, interval and per-probe timeout, interleaved round by round:
  (a) iputils: ``ping -q -c N -i I -W T`` (RTT to the kernel's SO_TIMESTAMP of each reply);
  (b) diag: ``diag net ping`` (RTT to the kernel's SO_TIMESTAMPNS arrival stamp, docs/reachability.md);
  (c) diag read-time: the same code with arrival stamps switched off, i.e. RTT and "in time" measured when the
      process reads the reply, as diag did before.
``--stress K`` runs ``stress-ng --cpu K`` beside the probes (started and stopped by its PID). Ratios are avg RTT
against (a); loss is what each variant reported, while the lab itself loses nothing. Run as root::

    .venv/bin/python bench/ping_vs_iputils.py [--runs 3] [--count 200] [--interval 0.01] [--stress 2]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.labs.routedlab import ADDR, RoutedLab  # noqa: E402

B = ADDR["b"]
READ_TIME = (
    "import json, sys; import diag.network.reach.arrival as a; a.enable_arrival_stamps = lambda sock: None; "
    "from diag.network.reach import ping; "
    "s = ping(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])); "
    "print(json.dumps({'loss': s.loss_ratio, 'rtts': s.received, 'clock': s.clock}))"
)


def iputils(count: int, interval: float, timeout: float) -> tuple[float, float, float]:
    p = subprocess.run(
        ["ip", "netns", "exec", "dgr-a", "ping", "-q", "-n", "-c", str(count), "-i", str(interval),
         "-W", str(timeout), B],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    loss = re.search(r"([\d.]+)% packet loss", p.stdout)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", p.stdout)
    if loss is None or rtt is None:
        raise RuntimeError(f"iputils ping said: {p.stdout}{p.stderr}")
    return float(loss.group(1)) / 100, float(rtt.group(2)) / 1000, float(rtt.group(3)) / 1000


def diag(lab: RoutedLab, count: int, interval: float, timeout: float) -> tuple[float, float, float]:
    _rc, out = lab.diag("net", "ping", B, "-c", str(count), "-i", str(interval), "--timeout", str(timeout))
    d = out["details"]
    assert d["rtt_clock"] == "kernel", d
    return d["loss_ratio"], d["rtt_seconds"]["avg"], d["rtt_seconds"]["max"]


def diag_read_time(count: int, interval: float, timeout: float) -> tuple[float, float, float]:
    p = subprocess.run(
        ["ip", "netns", "exec", "dgr-a", sys.executable, "-c", READ_TIME, B, str(count), str(interval), str(timeout)],
        capture_output=True, text=True, check=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    d = json.loads(p.stdout)
    assert d["clock"] == "read", d
    rtts = d["rtts"] or [float("nan")]
    return d["loss"], statistics.fmean(rtts), max(rtts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=0.3, help="per-probe timeout (iputils -W gets the same)")
    ap.add_argument("--stress", type=int, default=0, help="stress-ng --cpu K beside the probes (0: none)")
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {"iputils": [], "diag": [], "diag read-time": []}
    stress = None
    with RoutedLab() as lab:
        if args.stress:
            stress = subprocess.Popen(["stress-ng", "--cpu", str(args.stress), "--timeout", "600s"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            for _ in range(args.runs):
                a = (args.count, args.interval, args.timeout)
                results["iputils"].append(iputils(*a))
                results["diag"].append(diag(lab, *a))
                results["diag read-time"].append(diag_read_time(*a))
        finally:
            if stress is not None:
                stress.send_signal(signal.SIGINT)
                stress.wait(timeout=30)
    base = statistics.median(r[1] for r in results["iputils"])
    print(f"{args.runs} runs x {args.count} probes, interval {args.interval} s, timeout {args.timeout} s, "
          f"stress-ng --cpu {args.stress}")  # fmt: skip
    print(f"{'variant':16s} {'loss (runs)':24s} {'avg RTT ms (median)':>20s} {'max RTT ms':>11s} {'avg/iputils':>12s}")
    for name, rs in results.items():
        loss = " ".join(f"{r[0]:.1%}" for r in rs)
        avg = statistics.median(r[1] for r in rs)
        print(f"{name:16s} {loss:24s} {avg * 1000:20.3f} {max(r[2] for r in rs) * 1000:11.3f} {avg / base:12.2f}")


if __name__ == "__main__":
    main()
