"""A FAKE Cisco IOS CLI over SSH (paramiko server) replaying a recorded session, for what no real peer here can show.

No real IOS runs on this machine (IOS/IOS-XE images need Cisco's hardware or licensed VMs), and the fakenos
emulator (tests/labs/fakenoslab.py) never pages and never asks for an enable secret. This fake does what a
Catalyst does in a session recorded for the purpose (prompts, wording and the bytes it writes to erase the pager
are IOS 15.2's):

- a login banner (MOTD) with prompt-like lines in it (``sw-1>``, ``sw-1#``) before the real prompt;
- the login lands in user EXEC (``sw-1>``); ``enable`` asks ``Password:`` (no echo), a wrong secret is asked
  again, three wrong ones give ``% Bad secrets``;
- ``terminal length 0`` is refused (``% Invalid input detected``, as under a restricted role), so ``show
  running-config`` and ``show interfaces`` page: 23 lines, then `` --More-- ``; a blank gives the next screen
  after erasing the pager with 9 backspaces, 9 blanks, 9 backspaces, Enter gives one line, ``q`` stops;
- a command this "software version" lacks answers with the caret line and ``% Invalid input detected at '^'
  marker.``;
- ``cut_after``: a command whose output stops half way and the connection drops (a device reloading, a link
  lost mid-command).

Everything it receives is kept in ``received`` (to check what the driver typed: never the secret in the clear
outside the ``Password:`` answer).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

PAGER = " --More-- "
ERASE = "\b" * 9 + " " * 9 + "\b" * 9
SCREEN = 23


@dataclass
class Script:
    """What the fake device answers (command -> output, without the trailing prompt)."""

    hostname: str = "sw-1"
    motd: str = ""
    enable_secret: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    #: Commands answered with the first half of their output, then the connection drops.
    cut_after: frozenset[str] = frozenset()
    refuse_paging_off: bool = True


@dataclass
class Stats:
    received: list[str] = field(default_factory=list)
    pages: int = 0
    enable_tries: int = 0


class _Server(paramiko.ServerInterface):
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username == self.user and password == self.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: object) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return True


class _Session:
    """One interactive IOS session on a channel (user EXEC -> privileged EXEC)."""

    def __init__(self, chan: paramiko.Channel, script: Script, stats: Stats) -> None:
        self.chan, self.script, self.stats = chan, script, stats
        self.privileged = False
        self.last_cr = False

    def prompt(self) -> str:
        return f"{self.script.hostname}{'#' if self.privileged else '>'}"

    def send(self, text: str) -> None:
        self.chan.sendall(text.replace("\r\n", "\n").replace("\n", "\r\n").encode())

    def readline(self, echo: bool = True) -> str | None:
        """One line up to Enter ("\r", "\n" or "\r\n" as one Enter); None when the client is gone."""
        buf = ""
        while True:
            data = self.chan.recv(1)
            if not data:
                return None
            ch = data.decode(errors="replace")
            if ch == "\n" and self.last_cr and not buf:
                self.last_cr = False
                continue
            if ch in "\r\n":
                self.last_cr = ch == "\r"
                self.stats.received.append(buf)
                if echo:
                    self.send("\n")
                return buf
            self.last_cr = False
            buf += ch
            if echo:
                self.chan.sendall(data)

    def run(self) -> None:
        self.send(f"\n{self.script.motd}\n\n{self.prompt()}")
        while True:
            line = self.readline()
            if line is None:
                return
            cmd = " ".join(line.split())
            if not self.command(cmd):
                return
            self.send(f"{self.prompt()}")

    def command(self, cmd: str) -> bool:
        s = self.script
        if cmd == "":
            return True
        if cmd in ("exit", "logout", "quit"):
            self.chan.close()
            return False
        if cmd == "enable":
            return self.enable()
        if cmd.startswith("terminal length") and s.refuse_paging_off:
            self.send(f"{' ' * (len(self.prompt()) + 9)}^\n% Invalid input detected at '^' marker.\n")
            return True
        if cmd.startswith("terminal "):
            return True
        text = s.outputs.get(cmd)
        if text is None:
            self.send(f"{' ' * (len(self.prompt()) + len(cmd) - 1)}^\n% Invalid input detected at '^' marker.\n")
            return True
        if cmd in s.cut_after:
            self.send(text[: len(text) // 2])
            self.chan.get_transport().close()  # type: ignore[union-attr]
            return False
        return self.paged(text)

    def enable(self) -> bool:
        for _ in range(3):
            self.send("Password: ")
            secret = self.readline(echo=False)
            if secret is None:
                return False
            self.stats.enable_tries += 1
            self.send("\n")
            if secret == self.script.enable_secret and secret:
                self.privileged = True
                return True
        self.send("% Bad secrets\n")
        return True

    def paged(self, text: str) -> bool:
        lines = text.rstrip("\n").split("\n")
        i = 0
        budget = SCREEN
        while i < len(lines):
            self.send(lines[i] + "\n")
            i += 1
            budget -= 1
            if budget == 0 and i < len(lines):
                self.chan.sendall(PAGER.encode())
                self.stats.pages += 1
                key = self.chan.recv(1)
                if not key:
                    return False
                self.chan.sendall(ERASE.encode())
                if key == b" ":
                    budget = SCREEN
                elif key in (b"\r", b"\n"):
                    budget = 1
                else:  # q: the rest is not shown
                    return True
        return True


class FakeIos:
    """The FAKE device on 127.0.0.1:``port``; ``known_hosts_line`` trusts its key. Stop with ``close()``."""

    def __init__(self, script: Script, user: str = "netops", password: str = "pw-login-1234") -> None:
        self.script, self.user, self.password = script, user, password
        self.key = paramiko.ECDSAKey.generate()
        self.stats = Stats()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.key.get_name()} {self.key.get_base64()}\n"

    def write_known_hosts(self, path: Path) -> Path:
        path.write_text(self.known_hosts_line())
        return path

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(client,), daemon=True)
            t.start()
            self._threads.append(t)

    def _handle(self, client: socket.socket) -> None:
        transport = paramiko.Transport(client)
        transport.add_server_key(self.key)
        try:
            transport.start_server(server=_Server(self.user, self.password))
            chan = transport.accept(20)
            if chan is None:
                return
            _Session(chan, self.script, self.stats).run()
        except (EOFError, OSError, paramiko.SSHException):
            return
        finally:
            transport.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(timeout=5)


@contextlib.contextmanager
def fake_ios(script: Script) -> Iterator[FakeIos]:
    dev = FakeIos(script)
    try:
        yield dev
    finally:
        dev.close()
