"""A running ``diag agent`` with the API, tokens for every role, and an SSH lab behind it, for the API tests.

The agent is a real process (``diag agent``) on a port of the API tests' range, with a data directory, an
inventory of the lab's hosts (``h01`` in groups lab+web, ``h02`` in lab+db), the incident engine on
(``open_after: 0``, the local ticket store) and a ``playbooks/`` directory in
its working directory holding test playbooks (one with a step that changes the host). Tokens are made with
the real CLI (``diag api token add``). Everything is stopped by PID at teardown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import DIAG, free_port, owns_port, stop_process, wait_for
from tests.labs.lab import LAB_USER, Lab

#: This work's port range (the API tests).
PORTS = range(20450, 20500)

ROLES = {
    "viewer": ("viewer", [], []),
    "eng-web": ("engineer", ["web"], ["disk-full", "change-marker", "facts"]),
    "lead1": ("lead", [], []),
    "lead2": ("lead", [], []),
    "admin": ("admin", [], []),
}

#: The Alertmanager webhook's own credentials (the agent without a lab has them configured).
AM_TOKEN = "am-secret-" + "9" * 24
AM_PASSWORD = "basic-secret-xyz"

CHANGE_PLAYBOOK = """\
name: change-marker
description: a test playbook whose second step changes the host (creates a marker file)
vars:
  marker: {default: /nonexistent, description: file the changing step creates}
steps:
  - id: look
    run: ls -ld {{ marker }} || true
  - id: touch
    description: creates the marker file (changes the host)
    run: touch {{ marker }}
    changes: true
"""


@dataclass
class ApiEnv:
    dir: Path
    data: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def diag(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DIAG, *args], cwd=self.dir, capture_output=True, text=True, timeout=180)

    def journal(self, action: str | None = None) -> list[dict[str, Any]]:
        p = self.diag("journal", "--data", str(self.data), "--json", *(["--action", action] if action else []))
        assert p.returncode == 0, p.stderr
        return list(json.loads(p.stdout))


def inventory_text(lab: Lab) -> str:
    h1, h2 = lab.host("h01"), lab.host("h02")
    return textwrap.dedent(
        f"""\
        defaults:
          user: {LAB_USER}
          ssh_key: {lab.client_key}
          connect_timeout: 5
          command_timeout: 30
        groups:
          lab: {{tags: [lab]}}
          web: {{}}
          db: {{}}
        hosts:
          h01: {{address: {h1.address}, groups: [lab, web]}}
          h02: {{address: {h2.address}, groups: [lab, db]}}
        agent:
          api:
            known_hosts: ['{lab.known_hosts}']
            max_body_bytes: 16384
          incidents: {{open_after: 0, close_after: 0, tickets: {{backend: local}}}}
        """
    )


@contextmanager
def api_env(lab: Lab | None, base: Path) -> Iterator[ApiEnv]:
    """Start the agent (with the lab's hosts when given), make one token per entry of :data:`ROLES`."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "playbooks").mkdir(exist_ok=True)
    (base / "playbooks" / "change-marker.yaml").write_text(CHANGE_PLAYBOOK)
    inv = base / "inventory.yaml"
    (base / "am.token").write_text(AM_TOKEN + "\n")
    (base / "am.pass").write_text(AM_PASSWORD + "\n")
    inv.write_text(
        inventory_text(lab)
        if lab
        else textwrap.dedent(
            f"""\
            hosts: {{}}
            agent:
              api: {{max_body_bytes: 16384}}
              incidents: {{open_after: 0, close_after: 0}}
              alertmanager:
                auth:
                  bearer_token: 'file:{base / "am.token"}'
                  basic: {{username: am, password: 'file:{base / "am.pass"}'}}
            """
        )
    )
    data = base / "data"
    tokens: dict[str, str] = {}
    for name, (role, groups, playbooks) in ROLES.items():
        args = ["api", "token", "add", name, "--role", role, "--data", str(data)]
        args += [a for g in groups for a in ("--groups", g)] + [a for p in playbooks for a in ("--playbooks", p)]
        p = subprocess.run([DIAG, *args], cwd=base, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        tokens[name] = p.stdout.strip()
    port = free_port(PORTS)
    log = base / "agent.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "diag.cli", "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}",
             "--data", str(data)],
            cwd=base, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
        )  # fmt: skip
    env = ApiEnv(base, data, port, proc, log, tokens)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"diag agent exited with {proc.returncode}:\n{log.read_text()}")
            try:
                return httpx.get(env.url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, what="the agent")
        assert owns_port(proc.pid, port), f"port {port}: the agent answering is not the one started here"
        yield env
    finally:
        stop_process(proc)
