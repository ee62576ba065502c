"""Durations as configuration writes them (``90``, ``"15m"``, ``"4h"``) and the SLA pair built from them.

Shared by the incident settings and the knowledge base, so that both read ``sla: {respond: 15m, resolve: 4h}``
the same way.
"""

from __future__ import annotations

import re

import msgspec

Duration = float | int | str

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(value: Duration) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"4h"``, ``"1d"``; ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration {value} is negative")
        return float(value)
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"duration {value!r} must be a number of seconds or like 90s, 15m, 4h, 1d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


class SlaSpec(msgspec.Struct, forbid_unknown_fields=True):
    respond: Duration
    resolve: Duration
