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

from tests.conftest import DIAG, free_port, http_get, stop_process, wait_for

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
    finally:
        assert stop_process(proc) == 0
    lines = [x for x in log.read_text().splitlines() if x.strip()]
    records = [json.loads(x) for x in lines]  # every line is a JSON object, as journald should get them
    assert any("listening on" in r["message"] for r in records)
    assert (tmp_path / "data").is_dir()
