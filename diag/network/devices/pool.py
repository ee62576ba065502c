"""DevicePool: the SSH pool ``diag check`` uses when some targets are network devices.

Shell hosts go to :class:`diag.remote.ssh.SSHPool` unchanged. For a host whose ``device_type`` has a driver,
``connect`` returns the driver (one CLI session per device, opened on the pool's verified connection and kept
for every step of the run), so a playbook step's ``run:`` is typed at the device's prompt instead of being
given to ``sh -c``. Values of playbook variables reach the CLI through :meth:`DeviceConnection.quote_value`,
which refuses anything that could become a second command or argument instead of shell-quoting it.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Mapping
from typing import Any

from diag.errors import ConfigError, ConnectError
from diag.inventory import Host
from diag.network.devices.base import Driver, where_device
from diag.network.devices.getters import GetResult
from diag.network.devices.registry import driver_class, is_device
from diag.remote.ssh import CommandResult, SSHConnection, SSHPool, where

#: What a variable value may hold on a network CLI: interface names (GigabitEthernet0/1.100, eth0), addresses
#: and prefixes (10.0.0.0/24, 2001:db8::/32), AS numbers, VRF and neighbour names. No blanks (a second word),
#: no ``|`` (output modifiers), no ``?`` (CLI help), no control characters (a newline is a second command).
_CLI_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+,=-]+$")


def cli_quote(value: Any) -> str:
    """A variable value as one CLI word; ConfigError when it is not safe to type at a device prompt."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(cli_quote(v) for v in value)
    text = "" if value is None else str(value)
    if not _CLI_VALUE.match(text):
        raise ConfigError(
            f"variable value {text[:60]!r} cannot be sent to a network device CLI: only letters, digits and "
            "_ . : / @ + , = - are allowed (one word, no blanks, no | ? or control characters)"
        )
    return text


class DeviceConnection:
    """What the playbook runner sees for a network device: ``run`` through the driver, CLI-safe variable values."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def run(self, command: str, timeout: float | None = None, sudo: bool = False) -> CommandResult:
        return self.driver.run(command, timeout, sudo)

    def get(self, name: str, timeout: float | None = None) -> GetResult:
        return self.driver.get(name, timeout)

    @staticmethod
    def quote_value(value: Any) -> str:
        return cli_quote(value)


class DevicePool:
    """SSHPool for shell hosts, drivers for network devices; same interface for the runner."""

    def __init__(self, ssh: SSHPool) -> None:
        self.ssh = ssh
        self.max_concurrency = ssh.max_concurrency
        self.hosts: Mapping[str, Host] = ssh.hosts
        self._drivers: dict[str, Driver] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def connect(self, host: Host) -> SSHConnection | DeviceConnection:
        if not is_device(host):
            return self.ssh.connect(host)
        return DeviceConnection(self.driver(host))

    def driver(self, host: Host) -> Driver:
        """The device's driver, connected now if there is none (or the last session broke)."""
        cls = driver_class(host.device_type)
        with self._lock:
            lock = self._locks.setdefault(host.name, threading.Lock())
        with lock:
            drv = self._drivers.get(host.name)
            if drv is not None and drv.alive:
                return drv
            if drv is not None:
                drv.close()
            login = host
            if cls.login_suffix and host.user and not host.user.endswith(cls.login_suffix):
                login = dataclasses.replace(host, user=host.user + cls.login_suffix)
            try:
                conn = self.ssh.connect(login)
            except ConnectError as e:
                # The SSH pool names the host "address:port (name)"; a device message also names its type.
                msg = str(e).replace(where(host), where_device(host), 1)
                raise type(e)(msg) from None
            try:
                drv = cls(host, conn.transport)
            except ConnectError:
                self.ssh._forget(conn)
                raise
            self._drivers[host.name] = drv
            return drv

    def close_all(self) -> None:
        with self._lock:
            drivers = list(self._drivers.values())
            self._drivers.clear()
        for d in drivers:
            d.close()
        self.ssh.close_all()
