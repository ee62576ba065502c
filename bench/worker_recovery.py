"""Recovery bench: how long after a worker is SIGKILLed mid-run are its hosts re-sent to another worker?

Against real peers, in one run: a real Redis, real `diag worker` processes and real sshd hosts (network namespaces).
Per run: worker A (2 threads) and worker B (``--hosts`` threads, so B always has a free thread and the figure is the
broker's restore delay, not B's backlog) check ``--hosts`` lab hosts whose one step sleeps ``--step`` seconds; A is
killed (SIGKILL of its process group) one second after it started its first host. From the run's event log
(``diag:run:<id>:events``): the kill -> re-send time of each of A's hosts (B's ``start``), its ratio to the
visibility timeout, and to the goal (visibility timeout + 5 s, issue 14); plus whether every host was recorded once.
Prints the figures; asserts nothing. Run as root::

    .venv/bin/python bench/worker_recovery.py [--runs 3] [--visibility-timeout 5] [--hosts 8]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag import inventory  # noqa: E402
from diag.distributed.backend import CeleryBackend  # noqa: E402
from diag.remote import playbook as pbmod  # noqa: E402
from tests.labs.lab import Lab  # noqa: E402
from tests.labs.redislab import RedisServer  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")


def worker(name: str, url: str, lab: Lab, tmp: Path, threads: int, vt: float) -> subprocess.Popen[bytes]:
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - the child's stdout
    return subprocess.Popen(
        [PY, "-m", "diag.cli", "worker", "--redis", url, "--name", name, "--known-hosts", str(lab.known_hosts),
         "--data", str(tmp / name), "--concurrency", str(threads), "--visibility-timeout", str(vt),
         "--log-level", "INFO"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp,
    )  # fmt: skip


def one_run(lab: Lab, rs: RedisServer, tmp: Path, args: argparse.Namespace) -> tuple[list[float], list[float], bool]:
    rs.restart()  # an empty Redis for every run
    pb = tmp / "slow.yaml"
    pb.write_text(textwrap.dedent(f"""\
        name: slow
        description: sleeps, then prints the host name
        steps:
          - id: name
            run: sleep {args.step}; uname -n
        """))  # fmt: skip
    procs = {n: worker(n, rs.url, lab, tmp, t, args.visibility_timeout) for n, t in (("A", 2), ("B", args.hosts))}
    try:
        for n in procs:
            while "ready." not in (tmp / f"{n}.log").read_text(errors="replace"):
                time.sleep(0.1)
        backend = CeleryBackend(rs.url, lab.inventory, pb, timeout_s=300, visibility_timeout=args.visibility_timeout)
        hosts = inventory.load(str(lab.inventory)).select(["lab"])
        box: dict[str, object] = {}
        t = threading.Thread(target=lambda: box.update(report=backend.run_check(hosts, pbmod.load(pb))))
        t.start()
        while not any(e["worker"] == "A" for e in (backend.events() if backend.last_run_id else [])):
            time.sleep(0.02)
        time.sleep(1.0)
        killed_at = time.time()
        os.killpg(procs["A"].pid, signal.SIGKILL)
        procs["A"].wait()
        t.join(600)
        events = backend.events()
        lost = {e["host"] for e in events if e["worker"] == "A" and e["event"] == "start"}
        lost -= {e["host"] for e in events if e["worker"] == "A" and e["event"] == "finish"}
        starts = [e for e in events if e["event"] == "start"]

        def at(h: str, worker: str) -> float:
            return float(min(e["at"] for e in starts if e["host"] == h and e["worker"] == worker))

        resent = [at(h, "B") - killed_at for h in lost]
        since_start = [at(h, "B") - at(h, "A") for h in lost]  # the visibility timeout runs from A's delivery
        report = box["report"]
        done = backend.workers()
        once = len(done) == len(hosts) and {r.status for r in report.results} == {"ok"}  # type: ignore[attr-defined]
        return resent, since_start, once
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--visibility-timeout", type=float, default=5.0)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--step", type=float, default=4.0, help="seconds each host's step sleeps")
    args = ap.parse_args()
    vt, goal = args.visibility_timeout, args.visibility_timeout + 5
    worst: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dgw-bench-") as tmp_s, Lab(args.hosts) as lab, RedisServer() as rs:
        for i in range(args.runs):
            resent, since_start, once = one_run(lab, rs, Path(tmp_s), args)
            worst.append(max(resent))
            print(
                f"run {i + 1}: {len(resent)} hosts of the killed worker re-sent after "
                f"{min(resent):.2f}-{max(resent):.2f} s (x{max(resent) / vt:.2f} the visibility timeout {vt:g} s, "
                f"x{max(resent) / goal:.2f} the goal {goal:g} s); A's start -> B's start {max(since_start):.2f} s; "
                f"every host ok and recorded once: {once}"
            )
    runs = ", ".join(f"{w:.2f}" for w in worst)
    print(f"kill -> re-send, worst per run: {runs} s; median {statistics.median(worst):.2f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
