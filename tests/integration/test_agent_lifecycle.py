"""``diag agent`` as a process: /healthz, clean exit on SIGTERM/SIGINT, JSON logs, bad inventories, hung and
blind probes.

Faults are real: a FIFO nobody writes makes a probe's read hang, a procfs tree without a file makes
a probe blind. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from diag import config
from tests.conftest import AGENT_PORTS, DIAG, StartAgent, free_port, http_get, port_is_free, wait_for

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "agent" / "proc"


def only_probes(procfs: Path, **probes: dict[str, object]) -> str:
    """An inventory whose agent runs just ``probes`` (with their options) on ``procfs``; all others off."""
    lines = ["hosts: {}", "agent:", f"  paths: {{procfs: {procfs}}}", "  probes:"]
    for name in config.build(None, {}).probes:
        opts = probes.get(name, {"enabled": False})
        lines.append(f"    {name}: {json.dumps(opts)}")
    return "\n".join(lines) + "\n"


def sample(text: str, name: str, probe: str) -> float | None:
    m = re.search(rf'^{name}\{{probe="{probe}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_healthz_reports_status_and_probes(start_agent: StartAgent) -> None:
    agent = start_agent("hosts: {}\n")
    h = agent.health()
    assert h["status"] == "ok" and h["version"]
    assert h["probes"] == sum(o.enabled for o in config.build(None, {}).probes.values())
    assert isinstance(h["failing_probes"], list) and isinstance(h["errors"], dict)
    status, body = agent.get("/nope")
    assert status == 404 and json.loads(body) == {"error": "not found"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_gives_clean_exit(start_agent: StartAgent, sig: signal.Signals) -> None:
    agent = start_agent("hosts: {}\n")
    assert agent.get("/metrics")[0] == 200
    assert agent.stop(sig) == 0
    err = agent.stderr()
    assert f"received {sig.name}" in err and "shutting down" in err
    assert "Traceback" not in err
    assert port_is_free(agent.port)


def test_json_log_format(start_agent: StartAgent) -> None:
    agent = start_agent("hosts: {}\n", "--log-format", "json")
    assert agent.stop() == 0
    lines = agent.stderr().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= records[0].keys()
    messages = [r["message"] for r in records]
    assert any(m.startswith("diag agent ") and "listening on" in m for m in messages)
    assert "shutting down" in messages


BROKEN = {
    "yaml_syntax": ("hosts:\n  web-1: {address: 10.0.0.1\nagent: {}\n", 3, "YAML syntax error"),
    "unknown_agent_key": ("hosts: {}\nagent:\n  listen: 127.0.0.1:1\n  colour: blue\n", 4, "unknown key"),
    "unknown_probe": ("hosts: {}\nagent:\n  probes:\n    cpu: {}\n    warp_drive: {interval: 5}\n", 5, "unknown probe"),
    "http_cap_zero": ("hosts: {}\nagent:\n  http:\n    per_client: 0\n", 4, "per_client must be at least 1"),
    "journal_key_literal": ("hosts: {}\nagent:\n  journal:\n    key: hunter2hunter2hunter2\n", 4, "a reference"),
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("command", ["agent", "validate"])
def test_broken_inventory_is_a_file_line_error(tmp_path: Path, case: str, command: str) -> None:
    text, line, message = BROKEN[case]
    inv = tmp_path / "inventory.yaml"
    inv.write_text(text)
    if command == "agent":
        # a reserved port: the inventory is refused before the agent binds, but were it not, no other run is there
        port = free_port(AGENT_PORTS)
        argv = [DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d")]
    else:
        argv = [DIAG, "inventory", "validate", str(inv)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    errors = p.stderr.splitlines()
    assert errors and all(e.startswith(f"{inv}:") for e in errors), errors
    assert any(e.startswith(f"{inv}:{line}: ") and message in e for e in errors), errors


def test_hung_probe_times_out_while_metrics_answer(start_agent: StartAgent, tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    shutil.copytree(FIXTURES, procfs)
    (procfs / "stat").unlink()
    os.mkfifo(procfs / "stat")  # nobody ever writes: the cpu probe's open() blocks for good
    agent = start_agent(
        only_probes(procfs, cpu={"interval": 2, "timeout": 1}, memory={"interval": 1}),
        "--log-level",
        "info",
    )

    def cpu_failed() -> str:
        text = agent.metrics()
        failures = sample(text, "diag_probe_failures_total", "cpu")
        return text if failures and sample(text, "diag_probe_success", "cpu") == 0 else ""

    text = wait_for(cpu_failed, what="cpu probe reported failed")
    assert "diag_cpu_seconds_total" not in text
    wait_for(lambda: sample(agent.metrics(), "diag_probe_success", "memory") == 1, what="memory probe ok")
    assert "diag_memory_total_bytes" in agent.metrics()
    # /metrics answers while the probe is stuck: the scrape only renders cached results.
    status, _ = http_get(agent.url + "/metrics", timeout=2)
    assert status == 200

    h = agent.health()
    assert "cpu" in h["failing_probes"] and "memory" not in h["failing_probes"]
    assert h["errors"]["cpu"] in ("timed out after 1 s", "previous run still going after 1 s")
    # The next scheduled run finds the first still blocked and does not start another.
    still = wait_for(
        lambda: agent.health()["errors"].get("cpu", "").startswith("previous run still going"),
        what="previous run still going",
    )
    assert still and "cpu" in agent.health()["running_probes"]
    assert "probe cpu timed out after 1 s" in agent.stderr()

    # A stuck probe thread does not keep the agent from a clean exit.
    assert agent.stop() == 0
    assert "shutting down" in agent.stderr()


def test_stuck_probe_with_a_long_timeout_does_not_delay_exit(start_agent: StartAgent, tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    shutil.copytree(FIXTURES, procfs)
    (procfs / "stat").unlink()
    os.mkfifo(procfs / "stat")
    agent = start_agent(only_probes(procfs, cpu={"interval": 1, "timeout": 120}, memory={"interval": 1}))
    wait_for(lambda: "cpu" in agent.health()["running_probes"], what="cpu probe blocked")
    # The scheduler's worker is waiting on the stuck run for up to 120 s; shutdown must not wait for it.
    # (stop() sends SIGKILL after 10 s, which would give -9.)
    assert agent.stop() == 0
    assert "shutting down" in agent.stderr()


def test_missing_proc_file_is_no_data(start_agent: StartAgent, tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    shutil.copytree(FIXTURES, procfs)
    (procfs / "meminfo").unlink()
    agent = start_agent(only_probes(procfs, cpu={"interval": 1}, memory={"interval": 1}))

    def memory_ran() -> str:
        text = agent.metrics()
        return text if sample(text, "diag_probe_no_data", "memory") == 1 else ""

    text = wait_for(memory_ran, what="memory probe reported no data")
    assert sample(text, "diag_probe_success", "memory") == 1
    assert sample(text, "diag_probe_failures_total", "memory") == 0
    assert "diag_memory_total_bytes" not in text
    wait_for(lambda: sample(agent.metrics(), "diag_probe_success", "cpu") == 1, what="cpu probe ok")
    assert "meminfo does not exist" in agent.health()["no_data"]["memory"]
    assert agent.proc.poll() is None


def test_agent_does_not_import_cli_only_libraries(tmp_path: Path) -> None:
    """The daemon's memory budget: rich (CLI rendering) and paramiko (SSH) stay out of its process."""
    inv = tmp_path / "inventory.yaml"
    inv.write_text("hosts: {}\n")
    # load() binds the listen address: a port reserved for this run (a fixed one collided with a second run)
    listen = f"127.0.0.1:{free_port(AGENT_PORTS)}"
    code = (
        "import json, sys\n"
        "from diag.agent import daemon as agent\nfrom diag.cli import main as cli\n"
        f"args = cli.build_parser().parse_args(['agent', '--inventory', {str(inv)!r}, '--listen', {listen!r}])\n"
        f"a = agent.load(args.inventory, {listen!r}, {str(tmp_path / 'd')!r})\n"
        "a.runner.run_all()\n"
        "a.exposition.render()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    python = str(Path(DIAG).with_name("python"))
    p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(p.stdout))
    assert "diag.exporters.prometheus" in modules
    heavy = {m.split(".")[0] for m in modules} & {"rich", "paramiko", "cryptography", "netmiko", "scapy", "textfsm"}
    assert heavy == set()


def test_validate_and_probe_work_while_the_agent_holds_its_port(start_agent: StartAgent, tmp_path: Path) -> None:
    """The commands an engineer runs on a monitored host must not try to bind the agent's port."""
    agent = start_agent("hosts: {}\n")
    inv = tmp_path / "same-port.yaml"
    inv.write_text(f"hosts: {{}}\nagent: {{listen: '127.0.0.1:{agent.port}', data: {str(tmp_path / 'd')!r}}}\n")
    v = subprocess.run([DIAG, "inventory", "validate", str(inv)], capture_output=True, text=True, timeout=60)
    assert (v.returncode, v.stdout.strip(), v.stderr) == (0, f"{inv}: ok", "")
    p = subprocess.run(
        [DIAG, "probe", "--inventory", str(inv), "--only", "cpu", "--json"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode in (0, 1, 2), p.stderr  # exit status is the worst finding
    assert json.loads(p.stdout)["probes"][0]["probe"] == "cpu"
    assert agent.proc.poll() is None
