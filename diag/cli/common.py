"""What every command module shares: where the inventory is when ``--inventory`` is not given."""

from __future__ import annotations

import argparse
from pathlib import Path

from diag.errors import ConfigError

DEFAULT_INVENTORY = "inventory.yaml"
DEFAULT_DATA = ".diag"  # --data: TOFU host keys, facts, journal, stores


def inventory_path(args: argparse.Namespace, required: bool = False) -> str | None:
    """The --inventory file, or ./inventory.yaml when it exists (the agent runs on defaults without one)."""
    if args.inventory:
        if not Path(args.inventory).exists():
            raise ConfigError(f"{args.inventory}: no such inventory file")
        return str(args.inventory)
    if Path(DEFAULT_INVENTORY).exists():
        return DEFAULT_INVENTORY
    if required:
        raise ConfigError(f"{DEFAULT_INVENTORY}: no inventory file here; pass --inventory FILE")
    return None
