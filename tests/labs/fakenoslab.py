"""An emulator lab: one fakenos process serving emulated vendor CLIs over SSH on loopback, one port per device.

fakenos ("Fake Network Operating System", PyPI) is an EMULATOR, not a device: it answers each command with canned
text in the platform's format (prompts, ``enable``, paging commands), with a real paramiko SSH server in front (host
key, password authentication). Where it has no output for a command diag needs (a running configuration with
secrets, a BGP peer in Active, a route table with a default route...), the lab serves its own, recorded in
``tests/fixtures/devices/<platform>/<command>.txt`` in the platform's real format.

Every output is read from disk at each command, so a test injects a fault into a running device with
:meth:`FakenosLab.set_output` (or :meth:`FakenosLab.replace`): the next command sees it. The token ``{{rising}}`` in
an output becomes a number that grows with every read (an error counter that rises between two samples).

One process serves all devices (``python -m tests.labs.fakenoslab serve CONFIG.json``): it starts in about a
second and is stopped by PID. Ports are picked free on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port, owns_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "devices"
USER = "netops"
PASSWORD = "emul4tor-pw"

#: The line each platform prints for a command it does not know (the emulator's answer to anything unknown).
UNKNOWN = {
    "cisco_ios": "                ^\n% Invalid input detected at '^' marker.",
    "cisco_nxos": "                ^\n% Invalid command at '^' marker.",
    "cisco_xr": "                ^\n% Invalid input detected at '^' marker.",
    "juniper_junos": "                ^\nunknown command.",
    "arista_eos": "% Invalid input",
    "huawei_vrp": "                ^\nError: Unrecognized command found at '^' position.",
    "mikrotik_routeros": "bad command name bogus (line 1 column 1)",
    "hp_comware": "                ^\n % Unrecognized command found at '^' position.",
    "eltex": "% Unrecognized command",
}
#: The command that turns paging off on each platform (MikroTik has none: its commands say ``without-paging``).
#: The emulator records every one it receives (``received.log``), so a test can see that each login sent it.
PAGING = {
    "cisco_ios": "terminal length 0",
    "cisco_nxos": "terminal length 0",
    "cisco_xr": "terminal length 0",
    "arista_eos": "terminal length 0",
    "eltex": "terminal datadump",
    "juniper_junos": "set cli screen-length 0",
    "huawei_vrp": "screen-length 0 temporary",
    "hp_comware": "screen-length disable",
}
#: Prompts as the real platforms print them, where fakenos's own (``host>`` for every platform) differs: netmiko
#: learns the host name from them (it strips Huawei's ``<``/``>``, MikroTik's ``[user@...] >``).
PROMPTS = {
    "juniper_junos": "netops@{base_prompt}> ",
    "huawei_vrp": "<{base_prompt}>",
    "hp_comware": "<{base_prompt}>",
    "mikrotik_routeros": "[netops@{base_prompt}] > ",
}
#: What those platforms answer to the commands netmiko sends while preparing the session.
SESSION = {
    "juniper_junos": {
        "set cli screen-width 511": "Screen width set to 511",
        "set cli complete-on-space off": "Disabling complete-on-space",
        "set cli screen-length 0": "Screen length set to 0",
    },
    "huawei_vrp": {
        "screen-length 0 temporary": "Info: The configuration takes effect on the current user terminal interface only."
    },
    "hp_comware": {"screen-length disable": ""},
    "mikrotik_routeros": {},
}


def slug(command: str) -> str:
    """The fixture file name of a command: ``show ip bgp summary`` -> ``show_ip_bgp_summary.txt``."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in command.strip()) + ".txt"


#: The devices' SSH ports, reserved per test run by tests/conftest.py (a kernel-chosen port was closed and bound
#: again seconds later by the emulator: in between the kernel could hand it to any other connection or run).
PORTS = range(20660, 20700)


def free_ports(n: int) -> list[int]:
    """``n`` distinct reserved ports (free_port returns a held port again until something binds it)."""
    got: list[int] = []
    for _ in range(n):
        got.append(free_port([p for p in PORTS if p not in got]))
    return got


@dataclass
class Device:
    name: str
    platform: str
    port: int


class FakenosLab:
    """Start the emulator process for ``devices`` (name -> platform); use as a context manager."""

    def __init__(self, devices: dict[str, str], keep: bool = False) -> None:
        import paramiko

        self.dir = Path(tempfile.mkdtemp(prefix="dgf-fakenos-"))
        ports = free_ports(len(devices))
        self.devices = {n: Device(n, p, port) for (n, p), port in zip(devices.items(), ports, strict=True)}
        self.keep = keep or bool(os.environ.get("DGF_LAB_KEEP"))
        key = paramiko.RSAKey.generate(2048)
        self.key_file = self.dir / "hostkey"
        key.write_private_key_file(str(self.key_file))
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(
            "".join(f"[127.0.0.1]:{d.port} ssh-rsa {key.get_base64()}\n" for d in self.devices.values())
        )
        self.password_file = self.dir / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        for d in self.devices.values():
            (self.dir / "out" / d.name).mkdir(parents=True)
        config = {
            "dir": str(self.dir),
            "key": str(self.key_file),
            "devices": [{"name": d.name, "platform": d.platform, "port": d.port} for d in self.devices.values()],
        }
        (self.dir / "config.json").write_text(json.dumps(config))
        self.log = open(self.dir / "fakenos.log", "wb")  # noqa: SIM115  (closed in close())
        root = Path(__file__).resolve().parent.parent.parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.labs.fakenoslab", "serve", str(self.dir / "config.json")],
            cwd=root,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = {d.port for d in self.devices.values()}
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fakenos exited: {(self.dir / 'fakenos.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"fakenos ports {sorted(pending)} not listening after {timeout} s")
            for port in list(pending):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pending.discard(port)
                    if not owns_port(self.proc.pid, port):  # a port from the kernel, closed, then bound again
                        raise RuntimeError(f"port {port} answers, but not from our fakenos")
            time.sleep(0.1)

    # ---- faults
    def set_output(self, device: str, command: str, text: str) -> None:
        """What ``device`` answers to ``command`` from now on (atomically replaced on disk)."""
        path = self.dir / "out" / device / slug(command)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def output(self, device: str, command: str) -> str:
        """What ``device`` answers to ``command`` now (its override, else its fixture)."""
        over = self.dir / "out" / device / slug(command)
        if over.exists():
            return over.read_text()
        return fixture_text(self.devices[device].platform, command) or ""

    def replace(self, device: str, command: str, old: str, new: str, count: int = 1) -> None:
        """Inject a fault: ``old`` -> ``new`` in the device's answer to ``command`` (``old`` must be there)."""
        text = self.output(device, command)
        if old not in text:
            raise AssertionError(f"{device} `{command}`: {old!r} not in its output")
        self.set_output(device, command, text.replace(old, new, count))

    def received(self, device: str) -> list[str]:
        """The paging commands ``device`` received so far, one per login that sent it."""
        log = self.dir / "out" / device / "received.log"
        return log.read_text().splitlines() if log.exists() else []

    def reset(self, device: str, command: str | None = None) -> None:
        """Back to the fixture outputs (one command or all of the device's)."""
        d = self.dir / "out" / device
        for f in d.glob("*.txt") if command is None else [d / slug(command)]:
            f.unlink(missing_ok=True)

    # ---- inventory
    def inventory(
        self,
        path: Path,
        extra_hosts: dict[str, dict[str, Any]] | None = None,
        host_vars: dict[str, dict[str, Any]] | None = None,
        **group: Any,
    ) -> Path:
        """An inventory with every device in the group ``emulated`` (``group`` overrides its settings)."""
        import yaml

        hosts: dict[str, Any] = {}
        for d in self.devices.values():
            hosts[d.name] = {
                "address": "127.0.0.1",
                "port": d.port,
                "device_type": d.platform,
                "groups": ["emulated"],
            }
            if host_vars and d.name in host_vars:
                hosts[d.name]["vars"] = host_vars[d.name]
        hosts.update(extra_hosts or {})
        doc = {
            "groups": {
                "emulated": {
                    "user": USER,
                    "password": f"file:{self.password_file}",
                    "connect_timeout": 20,
                    "command_timeout": 30,
                    **group,
                }
            },
            "hosts": hosts,
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        if not self.keep:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> FakenosLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fixture_text(platform: str, command: str) -> str | None:
    p = FIXTURES / platform / slug(command)
    return p.read_text() if p.exists() else None


# ---- the emulator process


def _serve(config_path: str) -> None:
    import logging

    from fakenos import FakeNOS
    from fakenos.core.nos import Nos

    logging.basicConfig(level=logging.CRITICAL)  # fakenos logs every unknown command at ERROR
    _one_enter_per_crlf()
    _login_options_in_the_name()
    cfg = json.loads(Path(config_path).read_text())
    base = Path(cfg["dir"]) / "out"
    reads: dict[tuple[str, str], int] = {}

    def answer(name: str, platform: str, command: str) -> Any:
        def out(*_a: Any, **_k: Any) -> str:
            over = base / name / slug(command)
            text = over.read_text() if over.exists() else fixture_text(platform, command)
            if text is None:
                return UNKNOWN[platform]
            n = reads[(name, command)] = reads.get((name, command), 0) + 1
            return text.replace("{{rising}}", str(100 + 37 * n)).rstrip("\n")

        return out

    def received(name: str, command: str, reply: str) -> Any:
        def out(*_a: Any, **_k: Any) -> str:
            with open(base / name / "received.log", "a") as f:
                f.write(command + "\n")
            return reply

        return out

    hosts: dict[str, Any] = {}
    plugins: list[Any] = []
    for d in cfg["devices"]:
        platform, name = d["platform"], d["name"]
        commands: dict[str, Any] = {"_default_": {"output": UNKNOWN[platform]}}
        fx = FIXTURES / platform
        for f in sorted(fx.glob("*.txt")) if fx.is_dir() else []:
            cmd = (fx / f.name).with_suffix("").name
            command = cmd.replace("_", " ")
            commands[command] = {"output": answer(name, platform, command), "help": f"emulated {command}"}
        if platform in PAGING:
            commands[PAGING[platform]] = {
                "output": received(name, PAGING[platform], SESSION.get(platform, {}).get(PAGING[platform], "")),
                "help": "paging off",
            }
        plugin = platform
        if platform in PROMPTS:
            plugin = f"diaglab_{platform}"
            session = {c: {"output": o, "help": c} for c, o in SESSION[platform].items()}
            plugins.append(Nos(name=plugin, initial_prompt=PROMPTS[platform], commands=session))
        hosts[name] = {
            "port": d["port"],
            "platform": platform,
            "nos": {"plugin": plugin, "configuration": {"commands": commands}},
        }
    inv = {
        "default": {
            "username": USER,
            "password": PASSWORD,
            "server": {
                "plugin": "ParamikoSshServer",
                "configuration": {"address": "127.0.0.1", "ssh_key_file": cfg["key"], "timeout": 1},
            },
        },
        "hosts": hosts,
    }
    net = FakeNOS(inventory=inv, plugins=plugins)
    net.start()
    stop = False

    def on_term(*_a: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stop:
        time.sleep(0.2)
    net.stop()


def _login_options_in_the_name() -> None:
    """RouterOS reads terminal options after a ``+`` in the login name (``netops+ct511w4098h``) and checks the
    password of ``netops``; the emulator compares the whole name. Compare the part before ``+``, as RouterOS does
    (so a login as plain ``netops``, e.g. by ``diag inventory detect``, works too)."""
    from fakenos.plugins.servers import ssh_server_paramiko as srv

    original = srv.ParamikoSshServerInterface.check_auth_password

    def check(self: Any, username: str, password: str) -> int:
        return original(self, username.split("+", 1)[0], password)  # type: ignore[no-any-return]

    srv.ParamikoSshServerInterface.check_auth_password = check


def _one_enter_per_crlf() -> None:
    """Make the emulator take ``\r\n`` as one Enter, as a real terminal does.

    fakenos echoes ``\r\n`` and runs a line for each ``\r`` and each ``\n`` it receives. netmiko's MikroTik class
    ends commands with ``\r\n``, so the emulator ran an empty second line whose echo landed in the middle of the
    command's output (a blank line inside ``export``, seen as a configuration change by the archive). A ``\n``
    right after a ``\r`` is dropped before the emulator's tap sees it.
    """
    from fakenos.plugins.servers import ssh_server_paramiko as srv

    original = srv.channel_to_shell_tap

    def tap(channel_stdio: Any, shell_stdin: Any, shell_replied_event: Any, run_srv: Any) -> None:
        class OneEnter:
            def __init__(self, f: Any) -> None:
                self.f, self.last = f, b""
                self.channel = f.channel

            def read(self, n: int) -> bytes:
                while True:
                    b: bytes = self.f.read(n)
                    if not (b == b"\n" and self.last == b"\r"):
                        self.last = b
                        return b
                    self.last = b

            def write(self, data: bytes) -> Any:
                return self.f.write(data)

        original(OneEnter(channel_stdio), shell_stdin, shell_replied_event, run_srv)

    srv.channel_to_shell_tap = tap


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        _serve(sys.argv[2])
    else:
        print("usage: python -m tests.labs.fakenoslab serve CONFIG.json", file=sys.stderr)
        sys.exit(2)
