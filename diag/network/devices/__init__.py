"""Network devices over SSH: one netmiko-based driver per platform, picked by the inventory's ``device_type``.

Entry points (docs/network-devices.md):

- :func:`open_device` ``(host, known_hosts=None, data=None) -> Driver``: a connected driver for one inventory
  host, to use as a context manager: ``send_command(cmd) -> str``, ``running_config() -> str``, ``close()``.
  This is what the configuration archive calls.
- :func:`archive_support` ``() -> (is_device, read_running_config)``: the pair ``diag.archive.fetch`` asks for.
- :func:`is_device` ``(host) -> bool``: does a driver exist for the host's ``device_type``?
- :class:`diag.network.devices.pool.DevicePool`: what ``diag check`` uses so that playbook steps on network
  devices go through their driver instead of a shell.

A driver for a new platform is one module in this package that registers a :class:`Driver` subclass with
``@DRIVERS.register("device_type")``; the modules are discovered here, there is no central map. Third-party
packages can add drivers through the entry-point group ``diag.device_driver``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from diag.network.devices.registry import DRIVERS, any_device, device_types, driver_class, is_device

if TYPE_CHECKING:
    from diag.inventory import Host
    from diag.network.devices.base import Driver
    from diag.network.devices.pool import DevicePool
    from diag.remote.ssh import SSHPool

__all__ = [
    "DRIVERS",
    "any_device",
    "archive_support",
    "device_types",
    "driver_class",
    "is_device",
    "open_device",
    "pool_for",
]


def pool_for(ssh: SSHPool, hosts: Iterable[Host]) -> SSHPool | DevicePool:
    """The pool a playbook run over ``hosts`` should use: ``ssh`` itself, or a DevicePool around it when a network
    device is among them. netmiko is imported only then. Closing the returned pool closes ``ssh`` too."""
    hosts = list(hosts)
    if all(h.device_type == "linux" for h in hosts) or not any_device(hosts):
        return ssh
    from diag.network.devices.pool import DevicePool

    return DevicePool(ssh)


def open_device(
    host: Host,
    known_hosts: Path | Iterable[Path] | None = None,
    data: Path | None = None,
) -> Driver:
    """Connect to one network device and return its driver, ready for ``send_command``/``running_config``.

    The SSH connection is diag's own (:class:`diag.remote.ssh.SSHPool`): host keys are verified against
    ``known_hosts`` (default ``$DIAG_KNOWN_HOSTS`` or ``~/.ssh/known_hosts``; TOFU hosts use
    ``DATA/known_hosts.tofu``), jump hosts and credentials by reference work as for hosts. Closing the driver
    closes the connection. Errors are ``diag.errors.ConnectError`` subclasses naming ``address:port (name, type)``.
    """
    from diag.network.devices.pool import DevicePool
    from diag.remote.ssh import SSHPool

    pool = DevicePool(
        SSHPool(
            known_hosts=known_hosts,
            tofu_store=(data / "known_hosts.tofu") if data is not None else None,
            max_concurrency=1,
        )
    )
    try:
        drv = pool.driver(host)
    except BaseException:
        pool.close_all()
        raise
    drv.owner = pool  # closing the driver closes its private pool
    return drv


def archive_support(
    known_hosts: Path | Iterable[Path] | None = None, data: Path | None = None
) -> tuple[Callable[[Host], bool], Callable[[Host], str]]:
    """For the configuration archive: (is this host a device with a driver, read its running configuration).

    Each read opens the device with :func:`open_device` (host keys from ``known_hosts``, default
    ``$DIAG_KNOWN_HOSTS`` or ``~/.ssh/known_hosts``), reads ``running_config()`` and closes it.
    """

    def read(host: Host) -> str:
        with open_device(host, known_hosts=known_hosts, data=data) as dev:
            return dev.running_config()

    return is_device, read
