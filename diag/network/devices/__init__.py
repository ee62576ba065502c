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

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from diag.registry import Registry

if TYPE_CHECKING:
    from diag.inventory import Host
    from diag.network.devices.base import Driver
    from diag.network.devices.pool import DevicePool
    from diag.remote.ssh import SSHPool

__all__ = ["DRIVERS", "archive_support", "device_types", "driver_class", "is_device", "open_device", "pool_for"]

DRIVERS: Registry[type[Driver]] = Registry("device_driver")
#: Modules of this package that are infrastructure, not drivers.
_NOT_DRIVERS = frozenset({"base", "pool"})
_loaded = False
_load_lock = threading.Lock()


def _load_drivers() -> None:
    """Import every driver module of this package once (each registers itself). Imports netmiko."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        for mod in pkgutil.iter_modules(__path__):
            if mod.name not in _NOT_DRIVERS and not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        _loaded = True


def device_types() -> list[str]:
    """Every inventory ``device_type`` a driver exists for."""
    _load_drivers()
    return DRIVERS.names()


def is_device(host: Host) -> bool:
    """Is ``host`` a network device with a driver (as opposed to a shell host such as ``linux``)?"""
    if host.device_type == "linux":  # the common case: answer without importing netmiko
        return False
    _load_drivers()
    return host.device_type in DRIVERS or host.device_type in DRIVERS.names()


def any_device(hosts: Iterable[Host]) -> bool:
    return any(is_device(h) for h in hosts)


def pool_for(ssh: SSHPool, hosts: Iterable[Host]) -> SSHPool | DevicePool:
    """The pool a playbook run over ``hosts`` should use: ``ssh`` itself, or a DevicePool around it when a network
    device is among them. netmiko is imported only then. Closing the returned pool closes ``ssh`` too."""
    hosts = list(hosts)
    if all(h.device_type == "linux" for h in hosts) or not any_device(hosts):
        return ssh
    from diag.network.devices.pool import DevicePool

    return DevicePool(ssh)


def driver_class(device_type: str) -> type[Driver]:
    """The driver class for ``device_type``; RegistryError (with the closest known name) otherwise."""
    _load_drivers()
    return DRIVERS.get(device_type)


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
