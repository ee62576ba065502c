"""Benchmark: what the HTTP API costs the agent in memory, and what the framework candidates would have cost.

1. Import cost of each candidate framework in a process that already holds what the agent imports (VmRSS
   after minus before, MiB): Falcon, Falcon + Jinja2, Flask, FastAPI, FastAPI + uvicorn, Starlette. A
   candidate that is not installed is skipped (``pip install flask fastapi uvicorn`` to compare them all).
2. A real ``diag agent`` (default probes, no inventory): RSS idle (the API mounted, not imported), after the
   first API request, and after the first console page, next to ``prometheus-node-exporter`` in the same run.

Usage: .venv/bin/python bench/api_footprint.py     Prints everything; asserts nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import free_port

DIAG = str(Path(sys.executable).with_name("diag"))
API_PORTS = range(20450, 20500)  # tests/labs/apienv.py's range
CANDIDATES = [
    ("falcon", ["falcon"]),
    ("falcon + jinja2", ["falcon", "jinja2"]),
    ("flask (werkzeug, jinja2)", ["flask"]),
    ("starlette (needs an ASGI server)", ["starlette.applications", "starlette.routing"]),
    ("fastapi (pydantic)", ["fastapi"]),
    ("fastapi + uvicorn", ["fastapi", "uvicorn"]),
]
PROBE = """
import importlib, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
import diag.agent.daemon, diag.remote.runner, msgspec, sqlite3
base = rss()
for m in sys.argv[1:]:
    importlib.import_module(m)
print(f"{rss() - base:.1f}")
"""


def rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def main() -> None:
    print("import cost over what the agent already holds (MiB of RSS):")
    for label, modules in CANDIDATES:
        p = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True)
        print(f"  {label:<34} {'+' + p.stdout.strip() if p.returncode == 0 else 'not installed'}")

    tmp = Path(tempfile.mkdtemp(prefix="diag-api-bench-"))
    # ports of the API tests' range, reserved through tests/conftest.py's locks (fixed ones collided with test runs)
    port = free_port(API_PORTS)
    ne_port = free_port([p for p in API_PORTS if p != port])
    token = subprocess.run(
        [DIAG, "api", "token", "add", "bench", "--role", "viewer", "--data", str(tmp)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    agent = subprocess.Popen(
        [DIAG, "agent", "--listen", f"127.0.0.1:{port}", "--data", str(tmp)],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ne_bin = shutil.which("prometheus-node-exporter")
    ne = None
    if ne_bin:
        ne = subprocess.Popen(
            [ne_bin, f"--web.listen-address=127.0.0.1:{ne_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if get(url + "/healthz") == 200:
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(20)  # probes run their first cycles
        for _ in range(5):
            get(url + "/metrics")
        idle = rss(agent.pid)
        for _ in range(20):
            get(url + "/api/v1/whoami", token)
            get(url + "/api/v1/inventory/hosts", token)
        api = rss(agent.pid)
        for _ in range(20):
            get(url + "/ui/login")
        console = rss(agent.pid)
        print("\ndiag agent (default probes), VmRSS MiB:")
        print(f"  idle, API mounted but not imported   {idle:.1f}")
        print(f"  after 40 API requests               {api:.1f}  (+{api - idle:.1f})")
        print(f"  after 20 console pages too          {console:.1f}  (+{console - idle:.1f})")
        if ne is not None:
            print(f"  prometheus-node-exporter            {rss(ne.pid):.1f}  (ratio idle diag / node_exporter "
                  f"{idle / rss(ne.pid):.2f}x)")  # fmt: skip
        print(f"  RSS <= 40 MiB idle: {'met' if idle <= 40 else 'NOT met'}; with the API in use: "
              f"{'met' if console <= 40 else 'NOT met'}")  # fmt: skip
    finally:
        for p in (agent, ne):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
