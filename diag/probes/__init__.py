"""Local probes: one module per probe, each registering itself in ``diag.probes.base.probes``."""

from __future__ import annotations

import importlib
import pkgutil

from diag.probes.base import Paths, Probe, ProbeOptions, probes

__all__ = ["Paths", "Probe", "ProbeOptions", "load_all", "probes"]


def load_all() -> None:
    """Import every probe module so that each registers itself."""
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
