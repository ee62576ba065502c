"""What every command module shares: where the inventory is, and argument types that reject bad values early.

The argument types make a bad number an argparse error (exit 2, one line naming the option) before anything runs:
a negative timeout reached ``socket.settimeout`` as a traceback, a port over 65535 came back as "refused".
Nothing but ``os`` and ``argparse`` (which the command line imports anyway) at the top: a walk command's start-up.
"""

from __future__ import annotations

import argparse
import os

from diag.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a walk command's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

    from diag.inventory import Inventory

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


def load_inventory(path: str) -> Inventory:
    """The inventory with every check ``diag inventory validate`` makes of its hosts (device types included)."""
    from diag import inventory
    from diag.network.devices.registry import known_device_types  # names only, no driver imported

    return inventory.load(path, known_device_types())


def port(text: str) -> int:
    """A TCP/UDP port number, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


#: The longest time an option may give (30 days): beyond it a timeout or an interval is a typo, and 1e300 s made
#: ``socket.settimeout`` and ``time.monotonic() + t`` raise OverflowError (a traceback) instead of a one-line refusal.
MAX_SECONDS = 30 * 86400.0
#: The largest whole number an option may give (SQLite's INTEGER): a bigger --limit or incident number overflowed.
MAX_INTEGER = 2**63 - 1


def number(
    minimum: float = 0.0, *, above: bool = True, integer: bool = False, maximum: float | None = None
) -> Callable[[str], float]:
    """A type for a number above ``minimum`` (or at least it, when ``above`` is False) and at most ``maximum``
    (whole numbers: at most :data:`MAX_INTEGER` unless given); finite, never NaN."""
    if maximum is None and integer:
        maximum = MAX_INTEGER

    def convert(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if integer else 'a number'}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < minimum or (above and value == minimum):
            bound = f"above {minimum:g}" if above else f"at least {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: must be {bound}")
        if maximum is not None and value > maximum:
            shown = f"{int(maximum)}" if maximum == int(maximum) else f"{maximum:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: must be at most {shown}")
        return value

    convert.__name__ = "int" if integer else "float"  # what argparse names in its own messages
    return convert


#: The common cases, named for what they read like in ``add_argument(type=...)``.
positive_float = number(0.0)
positive_int = number(0, integer=True)
nonnegative_float = number(0.0, above=False)
nonnegative_int = number(0, above=False, integer=True)
seconds = number(0.0, maximum=MAX_SECONDS)  # a timeout, a TTL: above 0, at most 30 days
seconds_or_zero = number(0.0, above=False, maximum=MAX_SECONDS)  # an interval that may be 0
