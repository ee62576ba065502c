"""What every command module shares: where the inventory is when ``--inventory`` is not given."""

from __future__ import annotations

import os

from diag.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a walk command's start-up)
if TYPE_CHECKING:
    import argparse

DEFAULT_INVENTORY = "inventory.yaml"
DEFAULT_DATA = ".diag"  # --data: TOFU host keys, facts, journal, stores


def inventory_path(args: argparse.Namespace, required: bool = False) -> str | None:
    """The --inventory file, or ./inventory.yaml when it exists (the agent runs on defaults without one)."""
    if args.inventory:
        if not os.path.exists(args.inventory):
            raise ConfigError(f"{args.inventory}: no such inventory file")
        return str(args.inventory)
    if os.path.exists(DEFAULT_INVENTORY):
        return DEFAULT_INVENTORY
    if required:
        raise ConfigError(f"{DEFAULT_INVENTORY}: no inventory file here; pass --inventory FILE")
    return None
