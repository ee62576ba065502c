"""FakeConnection and FakePool: stand-ins for the SSH pool, used ONLY by unit tests of the playbook runner.

They answer commands from recorded outputs (tests/fixtures/remote/<playbook>/<scenario>/<step>.out/.err and
exit.json, recorded from lab hosts or written from real outputs of Debian 12 hosts) so that the checks of
every shipped playbook can be tested without a network. Integration tests use the real sshd lab instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diag.inventory import Host
from diag.remote import playbook as pbmod
from diag.remote.runner import host_view
from diag.remote.ssh import CommandResult

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "remote"
SHIPPED = Path(__file__).resolve().parent.parent.parent / "playbooks"

Responder = Callable[[str, float | None, bool], CommandResult]


def result(command: str, stdout: str = "", exit_status: int | None = 0, stderr: str = "", **kw: Any) -> CommandResult:
    return CommandResult(command, exit_status, stdout, stderr, 0.01, **kw)


class FakeConnection:
    """Answers ``run`` from a dict command -> CommandResult, or from a function; records every call."""

    def __init__(self, responses: dict[str, CommandResult] | Responder | None = None) -> None:
        self.responses = responses if responses is not None else {}
        self.calls: list[tuple[str, float | None, bool]] = []
        self.lock = threading.Lock()

    def run(self, command: str, timeout: float | None = None, sudo: bool = False) -> CommandResult:
        with self.lock:
            self.calls.append((command, timeout, sudo))
        if callable(self.responses):
            return self.responses(command, timeout, sudo)
        if command not in self.responses:
            raise AssertionError(f"FakeConnection: unexpected command {command!r}")
        return self.responses[command]


class FakePool:
    """connect(host) gives the host's FakeConnection, or raises the exception configured for it."""

    def __init__(self, conns: dict[str, FakeConnection | BaseException], max_concurrency: int = 50) -> None:
        self.conns = conns
        self.max_concurrency = max_concurrency

    def connect(self, host: Host) -> FakeConnection:
        c = self.conns[host.name]
        if isinstance(c, BaseException):
            raise c
        return c


def host(name: str = "web-03", **kw: Any) -> Host:
    return Host(name=name, address=kw.pop("address", "192.0.2.10"), **kw)


def scenario(playbook: str, name: str, h: Host | None = None) -> tuple[pbmod.Playbook, dict[str, str], FakeConnection]:
    """The shipped playbook, the scenario's variables, and a connection that replays the recorded outputs."""
    pb = pbmod.load(SHIPPED / f"{playbook}.yaml")
    d = FIXTURES / playbook / name
    meta = json.loads((d / "exit.json").read_text())
    variables: dict[str, str] = meta.pop("vars", {})
    h = h or host()
    resolved = pb.resolve_vars(variables, h.vars)
    responses: dict[str, CommandResult] = {}
    for step in pb.steps:
        out = d / f"{step.id}.out"
        if not out.exists():
            continue  # a step the scenario never reaches: FakeConnection fails the test if it is asked
        err = d / f"{step.id}.err"
        cmd = step.command.render(resolved, host_view(h))
        responses[cmd] = result(cmd, out.read_text(), meta.get(step.id, 0), err.read_text() if err.exists() else "")
    return pb, variables, FakeConnection(responses)
