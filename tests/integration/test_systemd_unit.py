"""deploy/systemd/diag-agent.service: systemd accepts it, and its ExecStart line starts a working agent.

``systemd-analyze verify`` checks the unit offline (no systemd as PID 1 needed) once ExecStart points at an
executable that exists; a deliberately broken copy shows the check can fail. Then the unit's own command line,
with its paths moved into a temp dir and a test port added, starts a real ``diag agent`` that answers /healthz
and logs JSON, as the unit asks.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DIAG, free_port, http_get, owns_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "diag-agent.service"
ANALYZE = shutil.which("systemd-analyze")


def _exec_start() -> list[str]:
    (line,) = [x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def _verify(unit: Path) -> tuple[int, list[str]]:
    assert ANALYZE is not None
    p = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    # other units installed on this machine may warn about themselves; only lines about ours count
    ours = [x for x in p.stderr.splitlines() if str(unit) in x or x.startswith(unit.name)]
    return p.returncode, ours


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze (Debian systemd) is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/diag/bin/diag", DIAG))
    rc, ours = _verify(unit)
    assert rc == 0 and not ours, ours
    bad = tmp_path / "broken.service"
    bad.write_text(UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    rc, ours = _verify(bad)  # the real path /opt/diag/bin/diag does not exist here, and the specifier is wrong
    assert rc != 0 and any("restart specifier" in x for x in ours) and any("not executable" in x for x in ours)


def test_the_units_command_line_starts_an_agent_that_logs_json(tmp_path: Path) -> None:
    argv = _exec_start()
    assert argv[:2] == ["/opt/diag/bin/diag", "agent"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts: {}\n")
    port = free_port(range(20400, 20450))
    argv = [DIAG, *argv[1:]]
    argv = [str(inventory) if a == "/etc/diag/inventory.yaml" else a for a in argv]
    argv = [str(tmp_path / "data") if a == "/var/lib/diag" else a for a in argv]
    assert "--log-format" in argv and argv[argv.index("--log-format") + 1] == "json"
    log = tmp_path / "agent.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([*argv, "--listen", f"127.0.0.1:{port}"], stdout=err, stderr=err)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz", 2)[0] == 200, timeout=30, what="agent")
        assert owns_port(proc.pid, port), f"port {port}: the agent answering is not ours"
    finally:
        assert stop_process(proc) == 0
    lines = [x for x in log.read_text().splitlines() if x.strip()]
    records = [json.loads(x) for x in lines]  # every line is a JSON object, as journald should get them
    assert any("listening on" in r["message"] for r in records)
    assert (tmp_path / "data").is_dir()


WORKER_UNIT = ROOT / "deploy" / "systemd" / "diag-worker.service"


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze (Debian systemd) is not installed")
def test_systemd_analyze_verify_accepts_the_worker_unit(tmp_path: Path) -> None:
    unit = tmp_path / WORKER_UNIT.name
    text = WORKER_UNIT.read_text()
    assert "\nRestart=on-failure\n" in text  # the worker exits non-zero on an unrecoverable error: restart it
    unit.write_text(text.replace("/opt/diag/bin/diag", DIAG))
    rc, ours = _verify(unit)
    assert rc == 0 and not ours, ours
    bad = tmp_path / "broken-worker.service"
    bad.write_text(text.replace("Type=simple", "Type=simplest"))
    rc, ours = _verify(bad)
    assert rc != 0 and any("parse service type" in x for x in ours), ours


def test_the_worker_units_command_line_starts_a_worker_on_the_env_files_broker(tmp_path: Path) -> None:
    """ExecStart with the unit's EnvironmentFile (DIAG_REDIS_URL, DIAG_NAMESPACE): a worker that consumes its
    namespace's queue on that Redis, and stops with status 0 on SIGTERM (Celery's warm shutdown)."""
    import os

    import redis

    from tests.labs.redislab import RedisServer

    (line,) = [x for x in WORKER_UNIT.read_text().splitlines() if x.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[:2] == ["/opt/diag/bin/diag", "worker"]
    (env_line,) = [x for x in WORKER_UNIT.read_text().splitlines() if x.startswith("EnvironmentFile=")]
    assert env_line == "EnvironmentFile=-/etc/diag/worker.env"
    port = free_port(range(20530, 20550))
    argv = [DIAG, *argv[1:]]
    argv = [str(tmp_path / "known_hosts") if a == "/etc/diag/known_hosts" else a for a in argv]
    argv = [str(tmp_path / "data") if a == "/var/lib/diag-worker" else a for a in argv]
    argv = [f"127.0.0.1:{port}" if a == "127.0.0.1:9848" else a for a in argv]
    (tmp_path / "known_hosts").write_text("")
    with RedisServer() as rs:
        env = {**os.environ, "DIAG_REDIS_URL": rs.url, "DIAG_NAMESPACE": "unit-test"}  # what worker.env sets
        log = tmp_path / "worker.log"
        with log.open("wb") as err:
            proc = subprocess.Popen([*argv, "--log-level", "INFO"], stdout=err, stderr=err, env=env,
                                    start_new_session=True)  # fmt: skip
        try:
            r = redis.Redis.from_url(rs.url, decode_responses=True)
            wait_for(lambda: "ready." in log.read_text(), timeout=60, what="worker ready")
            # Its queue binding lives under the namespace: the environment reached the worker.
            assert any(k.startswith("unit-test:") for k in r.keys("*")), r.keys("*")
            assert http_get(f"http://127.0.0.1:{port}/metrics", 5)[0] == 200 and owns_port(proc.pid, port)
        finally:
            rc = stop_process(proc, timeout=30)
        assert rc == 0, log.read_text()
