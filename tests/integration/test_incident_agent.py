"""``diag agent`` with ``agent.incidents``: its own filesystem probe opens a ticket, with no Prometheus anywhere.

The agent runs in a private mount namespace (``unshare -m``) with a 2 MiB tmpfs only it can see. The test fills
the tmpfs (``nsenter`` into that namespace): the agent's filesystem probe finds it full, the engine damps it
for ``open_after``, opens a typical, line-1 incident (knowledge base ``disk-full``) and the outbox files it in
the embedded ticket store; ``/metrics`` shows it open. The test frees the space: the probe stops finding it,
the verifying re-check (the probe run again) confirms it, and the ticket is closed with a note saying so.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from diag import config
from diag.exporters.tickets.local import LocalTickets
from tests.conftest import DIAG, free_port, http_get, owns_port, stop_process, wait_for

pytestmark = pytest.mark.integration

PORTS = range(20250, 20300)


def inventory(data: Path, mnt: Path) -> str:
    incidents = {
        "open_after": 2,
        "close_after": 2,
        "tick": 0.5,
        "delivery": {"poll": 0.2},
        "tickets": {"backend": "local"},
    }
    lines = ["hosts: {}", "agent:", f"  data: {json.dumps(str(data))}", f"  incidents: {json.dumps(incidents)}"]
    lines.append("  probes:")
    for name in config.build(None, {}).probes:
        # Only our tmpfs: other tests on this machine may leave full filesystems of their own in sight.
        only = {"interval": 0.5, "mountpoints_exclude": f"^(?!{re.escape(str(mnt))}$)"}
        opts = only if name == "filesystem" else {"enabled": False}
        lines.append(f"    {name}: {json.dumps(opts)}")
    return "\n".join(lines) + "\n"


def test_the_agent_files_and_closes_a_ticket_for_its_own_probe(tmp_path: Path) -> None:
    mnt = tmp_path / "dgi-fs"
    mnt.mkdir()
    data = tmp_path / "data"
    inv = tmp_path / "inventory.yaml"
    inv.write_text(inventory(data, mnt))
    port = free_port(PORTS)
    log = tmp_path / "agent.log"
    script = 'mount -t tmpfs -o size=2M dgi-tmpfs "$1" && shift && exec "$@"'
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(mnt)]
    argv += [DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    def in_agent(*cmd: str) -> None:
        subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "--", *cmd], check=True, capture_output=True)

    def metrics() -> str:
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        return body.decode()

    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz", 2)[0] == 200, 30, what="agent up")
        assert owns_port(proc.pid, port), f"port {port}: the agent answering is not ours"
        assert "diag_incidents_outbox_depth" in metrics()
        in_agent("sh", "-c", f'dd if=/dev/zero of="{mnt}/fill" bs=64k 2>/dev/null; sync; true')

        def ticket() -> dict[str, object] | None:
            if not (data / "tickets.sqlite").exists():
                return None
            lt = LocalTickets(data / "tickets.sqlite")
            try:
                mine = [t for t in lt.tickets() if str(mnt) in str(t["subject"])]
                return lt.ticket(int(mine[0]["id"])) if mine else None  # type: ignore[call-overload]
            finally:
                lt.close_db()

        t = wait_for(ticket, 30, what="a ticket for the full tmpfs")
        assert (t["classification"], t["line"], t["severity"]) == ("typical", "L1", "critical")
        assert "Standard instructions" in str(t["description"]) and "filesystem_full" in str(t["description"])
        assert 'classification="typical",line="L1",severity="critical"} 1.0' in metrics()
        first = t["created_at"]

        time.sleep(1.5)  # more probe runs while it stays full: occurrences, never a second ticket
        in_agent("rm", "-f", f"{mnt}/fill")
        closed = wait_for(lambda: (x := ticket()) and x["status"] == "closed" and x, 30, what="the ticket closed")
        assert closed["created_at"] == first
        close = [n for n in closed["notes"] if n["kind"] == "close"]  # type: ignore[union-attr]
        assert len(close) == 1 and "the re-check (probe:filesystem@" in close[0]["text"]
        text = metrics()
        assert 'diag_incidents_resolved_total{classification="typical"} 1.0' in text
        assert 'diag_incidents_deliveries_total{action="open"}' in text
        lt = LocalTickets(data / "tickets.sqlite")
        assert len([x for x in lt.tickets() if str(mnt) in str(x["subject"])]) == 1
        lt.close_db()
    finally:
        status = stop_process(proc)
        assert status == 0, log.read_text(errors="replace")[-3000:]
