"""Real Prometheus and Alertmanager servers for tests and benches, on loopback, each with its own temp dir.

Alertmanager is Debian's ``prometheus-alertmanager`` (0.25), run without clustering (``--cluster.listen-address=``,
so it opens no gossip port); Prometheus is Debian's ``prometheus``. Both are stopped by PID in ``close()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import owns_port, stop_process

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


class ServerError(RuntimeError):
    """A server did not start or answer; the message holds the tail of its log."""


def _http(url: str, data: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class _Server:
    name = "server"

    def __init__(self, port: int, workdir: Path | None = None) -> None:
        self.port = port
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=f"dgm-{self.name}-"))
        self.log = self.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, argv: list[str]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError):
                if _http(self.url + "/-/ready", timeout=2)[0] == 200:
                    if not owns_port(self.proc.pid, self.port):  # another test run's server on a port we took
                        raise ServerError(f"{self.name}: port {self.port} answers, but not from our process")
                    return
            time.sleep(0.1)
        raise ServerError(f"{self.name} not ready on port {self.port} after 60 s: {self.tail()}")

    def tail(self, n: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def reload(self) -> None:
        """Re-read the configuration (SIGHUP), as an operator would after editing it."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Alertmanager(_Server):
    """``Alertmanager(port).start(config_yaml)``; ``post_alerts`` is the v2 API Prometheus itself uses."""

    name = "alertmanager"

    def start(self, config_yaml: str) -> Alertmanager:
        cfg = self.dir / "alertmanager.yml"
        cfg.write_text(config_yaml)
        check = subprocess.run([AMTOOL, "check-config", str(cfg)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ServerError(f"amtool check-config: {check.stdout}{check.stderr}")
        self._spawn(
            [
                ALERTMANAGER,
                f"--config.file={cfg}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url=http://127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ]
        )
        return self

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        status, body = _http(self.url + "/api/v2/alerts", json.dumps(alerts).encode())
        if status != 200:
            raise ServerError(f"alertmanager refused alerts: {status} {body[:300]!r}")

    def alerts(self) -> list[dict[str, Any]]:
        status, body = _http(self.url + "/api/v2/alerts")
        return list(json.loads(body)) if status == 200 else []

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples on Alertmanager's own /metrics whose labels include ``labels``."""
        _, body = _http(self.url + "/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


class Prometheus(_Server):
    """``Prometheus(port).start(config_yaml, rules={"x.yml": text})`` with a fresh TSDB; ``query``, ``alerts``."""

    name = "prometheus"

    def start(self, config_yaml: str, rules: dict[str, str] | None = None) -> Prometheus:
        rdir = self.dir / "rules"
        rdir.mkdir(exist_ok=True)
        for fname, text in (rules or {}).items():
            (rdir / fname).write_text(text)
            check = subprocess.run(
                [PROMTOOL, "check", "rules", str(rdir / fname)], capture_output=True, text=True, check=False
            )
            if check.returncode != 0:
                raise ServerError(f"promtool check rules {fname}: {check.stdout}{check.stderr}")
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(config_yaml.replace("RULES_DIR", str(rdir)))
        self._spawn(
            [
                PROMETHEUS,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self.dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url=http://127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ]
        )
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = _http(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise ServerError(f"query {expr!r}: {status} {body[:300]!r}")
        return list(doc["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts as Prometheus's rule manager sees them (state pending or firing)."""
        _, body = _http(self.url + "/api/v1/alerts")
        return list(json.loads(body)["data"]["alerts"])
