"""The registry of device drivers: ``device_type`` -> driver class, filled by the driver modules of this package.

Every module of ``diag/network/devices/`` that is not infrastructure (base, pool, registry) is a driver that
registers itself with ``@DRIVERS.register("device_type")``; :func:`_load_drivers` imports them all once, on the
first question about a device type (so netmiko is imported only when a device is in play).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from diag.registry import Registry

if TYPE_CHECKING:
    from diag.inventory import Host
    from diag.network.devices.base import Driver

DRIVERS: Registry[type[Driver]] = Registry("device_driver")
#: Modules of this package that are infrastructure, not drivers.
_NOT_DRIVERS = frozenset({"base", "pool", "registry", "getters", "detect"})
_PACKAGE = "diag.network.devices"
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
        for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
            if mod.name not in _NOT_DRIVERS and not mod.name.startswith("_"):
                importlib.import_module(f"{_PACKAGE}.{mod.name}")
        _loaded = True


def device_types() -> list[str]:
    """Every inventory ``device_type`` a driver exists for."""
    _load_drivers()
    return DRIVERS.names()


def known_device_types() -> list[str]:
    """Every ``device_type`` an inventory may name: ``linux``, the drivers of this package and of entry points.

    Read from the module names and the entry-point names, without importing a driver (netmiko costs ~0.3 s and
    several MiB): inventory validation needs the names only. A test checks they are the names the drivers register.
    """
    from importlib.metadata import entry_points

    names = {"linux"}
    names.update(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name not in _NOT_DRIVERS and not m.name.startswith("_")
    )
    names.update(ep.name for ep in entry_points(group=f"diag.{DRIVERS.kind}"))
    return sorted(names)


def is_device(host: Host) -> bool:
    """Is ``host`` a network device with a driver (as opposed to a shell host such as ``linux``)?"""
    if host.device_type == "linux":  # the common case: answer without importing netmiko
        return False
    _load_drivers()
    return host.device_type in DRIVERS or host.device_type in DRIVERS.names()


def any_device(hosts: Iterable[Host]) -> bool:
    return any(is_device(h) for h in hosts)


def driver_class(device_type: str) -> type[Driver]:
    """The driver class for ``device_type``; RegistryError (with the closest known name) otherwise."""
    _load_drivers()
    return DRIVERS.get(device_type)
