"""The base network-device driver: a netmiko session over diag's own verified SSH transport, with override hooks.

netmiko does what it is good at (the interactive channel, finding the prompt, reading until it comes back,
config mode); diag does the connection: TCP, host-key verification against known_hosts (:mod:`diag.remote.hostkeys`
through :class:`diag.remote.ssh.SSHPool`, never netmiko's AutoAddPolicy), authentication with secrets by
reference, jump hosts. The authenticated transport is handed to netmiko through a paramiko client whose
``connect`` does nothing, so netmiko never opens, verifies or authenticates anything itself.

A platform driver subclasses :class:`Driver`, registers itself, and overrides only what differs: class
attributes (netmiko class underneath, paging command, error pattern, running-config command) and the hooks
:meth:`Driver.prepare_session`, :meth:`Driver.command_error`, :meth:`Driver.clean_output` and
:meth:`Driver.clean_config`. Quirks are documented next to the override, with a sample of the device's output.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar

import paramiko
from netmiko import BaseConnection
from netmiko.exceptions import NetmikoBaseException, ReadTimeout
from netmiko.ssh_dispatcher import CLASS_MAPPER

from diag import secrets
from diag.errors import AuthError, ConnectError, DiagError, Timeout
from diag.inventory import Host
from diag.network.devices.getters import GetResult, Getter, collect
from diag.remote.ssh import CommandResult, ConnectionLost

log = logging.getLogger(__name__)

# netmiko logs every byte it reads and writes at DEBUG; that can include configuration with secrets. Its records
# go through diag's masking filter like everyone else's, and stay quiet unless someone asked for them.
logging.getLogger("netmiko").addFilter(secrets.MaskingFilter())
if logging.getLogger("netmiko").level == logging.NOTSET:
    logging.getLogger("netmiko").setLevel(logging.WARNING)


class DeviceError(DiagError):
    """A device answered a command with an error (``% Unknown command``), or its output is unusable."""


class EnableRefused(AuthError):
    """The device refused the enable secret, or asked for one the inventory does not give (status ``auth_failed``)."""


#: A pager prompt at the very end of what the device sent: it waits for a key before the next screen. Samples:
#:   IOS, NX-OS, EOS, Eltex:  " --More-- "            Huawei, Comware:  "  ---- More ----"
#:   Junos:  "---(more)---" / "---(more 42%)---"     IOS-XR:  " --More-- "  RouterOS: "-- [Q quit|D dump|down]"
_PAGER = re.compile(
    r"[ \t]*(?:--+ ?More ?--+|-- ?more ?--|---\(more(?: \d+%)?\)---|<--- More --->|-- \[Q quit\|D dump\|[^\]\n]*\]"
    r"|Press any key to continue[^\n]*)[ \t]*\Z",
    re.I,
)
#: What a device writes to erase the pager prompt after the key: backspaces over blanks (IOS: 9 x "\b",
#: 9 blanks, 9 x "\b"), a carriage return over blanks (Junos), ANSI cursor moves (VRP "\x1b[42D").
_ERASE = re.compile(r"\x08+[ ]*\x08*|\r[ ]+\r(?!\n)|\x1b\[\d+D[ ]+\x1b\[\d+D|\x1b\[[0-9;?]*[A-Za-z]")
#: The end of a read that may be the first part of a pager prompt split across two reads (kept for the next read).
_PAGER_START = re.compile(r"(?:\A|\n)([ \t]*-{1,4} ?(?:M(?:o(?:r(?:e)?)?)?)?[ \t]*)\Z", re.I)


def where_device(host: Host) -> str:
    """``address:port (name, device_type)``: how every device message names the device."""
    target = f"[{host.address}]:{host.port}" if ":" in host.address else f"{host.address}:{host.port}"
    who = host.device_type if host.name == host.address else f"{host.name}, {host.device_type}"
    return f"{target} ({who})"


class _PreAuthClient(paramiko.SSHClient):
    """A paramiko client around a transport diag already opened, verified and authenticated.

    netmiko calls ``connect()`` then ``invoke_shell()``; ``connect`` must not touch the network (the host key
    was checked by diag's HostKeyStore, there is nothing to auto-add) and ``close`` leaves the transport to
    its owner, the SSH pool.
    """

    def __init__(self, transport: paramiko.Transport) -> None:
        super().__init__()
        self.set_missing_host_key_policy(paramiko.RejectPolicy())  # never reached; belt and braces
        self._transport = transport

    def connect(self, *args: Any, **kwargs: Any) -> None:
        if self._transport is None or not self._transport.is_active():
            raise paramiko.SSHException("the verified transport is closed")

    def close(self) -> None:
        # The pool closes the transport; netmiko already closed its channel. Forget it, do not close it.
        self._transport = None  # type: ignore[assignment]


class _SessionMixin:
    """Put in front of the platform's netmiko class: diag's transport, and the driver's session hook."""

    _diag_driver: Driver
    _diag_transport: paramiko.Transport

    _diag_carry: str = ""
    _diag_pages: int = 0

    def _build_ssh_client(self) -> paramiko.SSHClient:
        return _PreAuthClient(self._diag_transport)

    def read_channel(self) -> str:
        """netmiko's read, answering a pager: every read (commands, prompt, enable) goes through here.

        The driver turns paging off at login, but a device may refuse the command (a user-EXEC role without
        ``terminal length``, an old release) or a TACACS+ profile may turn it back on: the output then stops at
        `` --More-- `` and the prompt never comes. The pager prompt is answered with a blank and removed, with the
        characters the device sends to erase it, so the output is what an unpaged device prints.
        """
        new: str = super().read_channel()  # type: ignore[misc]
        data, self._diag_carry = self._diag_carry + new, ""
        if not new:  # nothing more came: a held-back "--" was output after all
            chan = getattr(self, "remote_conn", None)
            if not data and isinstance(chan, paramiko.Channel) and (chan.closed or chan.eof_received):
                # The device hung up (reload, link lost mid-command): netmiko would read "" until its timeout.
                raise EOFError("the device closed the connection")
            return data
        data = _ERASE.sub("", data)
        m = _PAGER.search(data)
        if m:
            self.write_channel(" ")  # type: ignore[attr-defined]
            self._diag_pages += 1
            return data[: m.start()]
        tail = _PAGER_START.search(data)
        if tail and tail.group(1).strip():
            self._diag_carry = tail.group(1)
            return data[: tail.start(1)]
        return data

    def session_preparation(self) -> None:
        self._diag_driver.prepare_session(self)  # type: ignore[arg-type]  # mixed into a BaseConnection

    def cleanup(self, command: str = "") -> None:
        """Say goodbye without waiting for an answer.

        netmiko's cleanup first checks for configuration mode, a read that waits for a timeout on some platforms
        (measured against the emulator: 1-2 s per device, 10 s on IOS-XR, closed one after the other at the end of
        a run). diag never leaves a session in configuration mode, so the logout command is written and the
        channel closed.
        """
        self.write_channel(self._diag_driver.logout_command + "\n")  # type: ignore[attr-defined]


def open_session(hooks: Any, netmiko_device_type: str, host: Host, transport: paramiko.Transport) -> BaseConnection:
    """A netmiko session of ``netmiko_device_type`` on diag's authenticated ``transport``, prepared by ``hooks``
    (a Driver, or anything with ``prepare_session(session)`` and ``logout_command``). Raises netmiko's errors."""
    sess = _session_class(netmiko_device_type)(
        device_type=netmiko_device_type,
        host=host.address,
        port=host.port,
        username=host.user or "",
        auto_connect=False,
        ssh_strict=True,
        system_host_keys=False,
        alt_host_keys=False,
        use_keys=False,
        allow_agent=False,
        conn_timeout=host.connect_timeout,
        read_timeout_override=None,
    )
    sess._diag_driver = hooks  # type: ignore[attr-defined]
    sess._diag_transport = transport  # type: ignore[attr-defined]
    sess._open()  # netmiko's own connect sequence (establish_connection + session_preparation)
    return sess


@cache
def _session_class(netmiko_device_type: str) -> type[BaseConnection]:
    base = CLASS_MAPPER[netmiko_device_type]
    cls: type[BaseConnection] = type(f"Diag{base.__name__}", (_SessionMixin, base), {})
    return cls


class Driver:
    """One connected network device. Subclasses set the class attributes and override the hooks they need."""

    #: The inventory ``device_type`` (set by the subclass; also its registry name).
    device_type: ClassVar[str] = ""
    #: The netmiko device type whose class does the session underneath (a key of netmiko's CLASS_MAPPER).
    netmiko_device_type: ClassVar[str] = "cisco_ios"
    #: What the prompt ends with, to know the device is ready after login.
    prompt_pattern: ClassVar[str] = r"[>#]"
    #: The command that turns off ``--More--`` paging (None: the platform does not page).
    paging_command: ClassVar[str | None] = "terminal length 0"
    #: The command that prints the running configuration.
    running_config_command: ClassVar[str] = "show running-config"
    #: A line of output that means the command failed (multiline regex).
    error_pattern: ClassVar[str] = r"^\s*% ?(Unknown command|Invalid input|Incomplete command|Ambiguous command).*$"
    #: An error line that means "this software does not have the command" (not "the feature is off"): a getter
    #: whose commands all answer so is not applicable to the device (diag/network/devices/getters.py collect()).
    unsupported_pattern: ClassVar[str] = (
        r"^\s*(?:% ?(?:Invalid input|Invalid command|Unknown command|Unrecognized command)|Error: ?Unrecognized command"
        r"|syntax error|unknown command\.|bad command name|expected end of command)"
    )
    #: The command that enters privileged mode when the login prompt is unprivileged (``host>``); None: never.
    enable_command: ClassVar[str | None] = None
    #: What the prompt may end with (a character class); also what may stand before the host name (``<``, ``[``).
    prompt_end: ClassVar[str] = r"[>#]"
    prompt_start: ClassVar[str] = ""
    #: What ends the CLI session (written at close, no answer awaited).
    logout_command: ClassVar[str] = "exit"
    #: Appended to the login name (MikroTik reads terminal options from it); the inventory user stays as written.
    login_suffix: ClassVar[str] = ""
    #: Lines of the running configuration that change without a configuration change (timestamps, uptimes,
    #: byte counts): removed before archiving so that a fetch that finds nothing new makes no version.
    volatile_config: ClassVar[tuple[str, ...]] = ()
    #: Secret patterns in this platform's configuration syntax (group ``s`` is the secret), on top of the
    #: archive's generic ones (diag/archive/redact.py).
    mask_patterns: ClassVar[tuple[str, ...]] = ()
    #: Vendor-neutral state this platform can show (diag/network/devices/getters.py): what ``get:`` steps read.
    getters: ClassVar[Mapping[str, Getter]] = {}

    def __init__(self, host: Host, transport: paramiko.Transport) -> None:
        self.host = host
        self.where = where_device(host)
        self.owner: Any = None  # set by open_device(): the private pool to close with the driver
        self._error_rx = re.compile(self.error_pattern, re.M)
        try:
            sess = open_session(self, self.netmiko_device_type, host, transport)
        except ReadTimeout:
            raise Timeout(f"{self.where}: no CLI prompt within {host.connect_timeout:g} s after login") from None
        except DiagError:
            raise
        except (NetmikoBaseException, paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectError(f"{self.where}: cannot start the CLI session: {_one_line(e)}") from None
        self.session = sess
        self.broken = False
        # The end of a command's output: the prompt learned at login (any mode: "r1#", "r1(config-if)#"), alone on
        # the last line. Passing it saves netmiko's find_prompt() round trip before every command (measured:
        # 85 -> 37 ms per FRR show command, bench/frr_cli.py). Anchored at a line start and at the end of what was
        # read, so "hostname r1" inside show running-config cannot end the read early.
        self._end_rx = rf"(?:\A|\n){self.prompt_start}{re.escape(sess.base_prompt)}[^\n]{{0,64}}{self.prompt_end}[ ]*\Z"
        log.debug("%s: CLI session ready, prompt %r", self.where, sess.base_prompt)

    # ---- hooks a platform overrides
    def prepare_session(self, session: BaseConnection) -> None:
        """After login: wait for the prompt, learn it, turn paging off. Called once per session."""
        session._test_channel_read(pattern=self.prompt_pattern)
        session.set_base_prompt()
        self.enter_enable(session)
        if self.paging_command:
            session.disable_paging(command=self.paging_command)

    def netmiko_preparation(self, session: BaseConnection) -> None:
        """The netmiko class's own ``session_preparation`` (for platforms whose preparation needs nothing else)."""
        CLASS_MAPPER[self.netmiko_device_type].session_preparation(session)  # type: ignore[attr-defined]

    def enter_enable(self, session: BaseConnection) -> None:
        """Enter privileged mode when the login prompt is unprivileged and the platform has an enable command.

        A device that logs in at privilege 15 (AAA) is already there (``sw-1#``): nothing is sent. Otherwise::

            sw-1>enable
            sw-1#

        A device that asks ``Password:`` gets the host's ``enable_secret`` (an inventory reference, revealed here
        and registered for masking). A wrong or missing secret is :class:`EnableRefused`, one line naming the
        device; the secret itself is never in the message::

            sw-1>enable
            Password:
            % Access denied
            sw-1>
        """
        if not self.enable_command or session.check_enable_mode(check_string="#"):
            return
        # netmiko's enable() waits for its read timeout (10 s) when the secret is wrong and the device asks again;
        # here the answer after the secret is either the privileged prompt or a refusal, read to the next prompt.
        prompt = rf"^{self.prompt_start}{re.escape(session.base_prompt)}[^\n]{{0,64}}{self.prompt_end}[ ]*$"
        asks = r"(?:pass(?:word|wd)|secret):?\s*$"
        flags = re.I | re.M
        timeout = self.host.connect_timeout
        session.write_channel(self.enable_command + session.RETURN)
        out = session.read_until_pattern(pattern=rf"{asks}|{prompt}", read_timeout=timeout, re_flags=flags)
        if re.search(asks, out, flags):
            if self.host.enable_secret is None:
                session.write_channel(session.RETURN)  # an empty answer: the device refuses and shows its prompt
                raise EnableRefused(
                    f"{self.where}: `{self.enable_command}` asks for a password; the inventory gives no enable_secret"
                )
            secret = self.host.enable_secret.reveal()
            session.write_channel(secret + session.RETURN)
            out = session.read_until_pattern(pattern=rf"{asks}|{prompt}", read_timeout=timeout, re_flags=flags)
            if re.search(asks, out, flags):  # asked again: the secret was wrong
                raise EnableRefused(f"{self.where}: `{self.enable_command}` refused: wrong enable_secret")
        if not session.check_enable_mode(check_string="#"):
            line = next((ln.strip() for ln in out.splitlines() if ln.strip().startswith("%")), "no privileged prompt")
            raise EnableRefused(f"{self.where}: `{self.enable_command}` refused: {secrets.mask(line)}")

    def command_error(self, output: str) -> str | None:
        """The error line when ``output`` says the command failed, else None."""
        m = self._error_rx.search(output)
        return m.group(0).strip() if m else None

    def clean_output(self, command: str, output: str) -> str:
        """Remove platform noise from a command's output (default: nothing)."""
        return output

    def clean_config(self, text: str) -> str:
        """The running configuration as it should be archived and diffed: :attr:`volatile_config` lines removed."""
        if not self.volatile_config:
            return text
        rx = _volatile_rx(self.volatile_config)
        kept = [line for line in text.splitlines() if not rx.match(line)]
        return "\n".join(kept).strip("\n") + "\n"

    # ---- the API
    @property
    def alive(self) -> bool:
        return not self.broken and self.session.remote_conn is not None and self.session.is_alive()

    def send_command(self, command: str, timeout: float | None = None) -> str:
        """Run one CLI command and return its output; raise DeviceError when the device says it failed."""
        res = self.run(command, timeout)
        if res.timed_out:
            raise Timeout(f"{self.where}: `{res.command}` gave no prompt back within {res.duration_s:.0f} s")
        if res.exit_status != 0:
            raise DeviceError(f"{self.where}: `{res.command}`: {res.stderr}")
        return res.stdout

    def running_config(self, timeout: float | None = None) -> str:
        """The running configuration (for the configuration archive); DeviceError when it cannot be read."""
        return self.clean_config(self.send_command(self.running_config_command, timeout))

    def run(self, command: str, timeout: float | None = None, sudo: bool = False) -> CommandResult:
        """The playbook runner's interface: a CommandResult with exit status 0, or 1 when the device said no.

        A device has no exit status: 1 means the output matched :attr:`error_pattern` (the error line is put in
        ``stderr``). A command that gives no prompt back within ``timeout`` is ``timed_out`` and the session is
        dropped (its channel is out of step with the device); a dropped connection raises ConnectionLost.
        """
        if sudo:
            raise DeviceError(f"{self.where}: sudo has no meaning on a network device (step `{command}`)")
        timeout = self.host.command_timeout if timeout is None else timeout
        shown = secrets.mask(command)
        start = time.monotonic()
        try:
            raw = self.session.send_command(
                command, expect_string=self._end_rx, read_timeout=timeout, strip_prompt=True, strip_command=True
            )
        except ReadTimeout:
            self.broken = True
            return CommandResult(shown, None, "", "", time.monotonic() - start, timed_out=True)
        except (OSError, EOFError, paramiko.SSHException, NetmikoBaseException) as e:
            self.broken = True
            raise ConnectionLost(f"{self.where}: connection lost while running `{shown}`: {_one_line(e)}") from None
        out = self.clean_output(command, _drop_echo(command, raw if isinstance(raw, str) else str(raw)))
        err = self.command_error(out)
        text = secrets.mask(out)
        return CommandResult(
            shown,
            0 if err is None else 1,
            text,
            secrets.mask(err or ""),
            time.monotonic() - start,
            stdout_bytes=len(out.encode()),
            stderr_bytes=len((err or "").encode()),
        )

    def get(self, name: str, timeout: float | None = None) -> GetResult:
        """Vendor-neutral records of one kind (``interfaces``, ``bgp``...; getters.py), read with this platform's
        commands. A command the device rejects makes the result fail (exit 1) with the device's error line."""
        return collect(
            self.where, self.device_type, self.getters, name, self.run, timeout, _rx(self.unsupported_pattern)
        )

    def close(self) -> None:
        """Leave the CLI (the platform's ``cleanup``, e.g. ``exit``) and close the channel and, if owned, the pool."""
        with contextlib.suppress(Exception):  # a dead session cannot say goodbye; closing must still finish
            self.session.disconnect()
        self.broken = True
        owner, self.owner = self.owner, None
        if owner is not None:
            owner.close_all()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_echo(command: str, output: str) -> str:
    """Remove a command echo netmiko left in place.

    netmiko strips the echo when it starts the output; after a prompt that its base prompt does not cover it
    leaves the rest of the prompt with the echo (Comware, the first command after login)::

        >display interface
        GigabitEthernet1/0/1
    """
    first, sep, rest = output.partition("\n")
    if sep and first.rstrip().endswith(command.strip()) and len(first.strip()) <= len(command.strip()) + 64:
        return rest
    return output


@cache
def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.M | re.I)


@cache
def _volatile_rx(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return secrets.mask(text[:300]) if text else type(e).__name__
