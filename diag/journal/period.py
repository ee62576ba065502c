"""Where a journal query starts: ``--since 30m`` / ``?since=2h`` or an ISO date, as epoch seconds.

Shared by ``diag journal`` and ``GET /api/v1/journal`` so both read a period the same way.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from diag.errors import ConfigError

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """``30m``, ``2h``, ``7d`` (ago), or an ISO 8601 date/time (UTC unless it says otherwise) -> epoch seconds."""
    m = _REL.match(value.strip())
    if m:
        return (now if now is not None else time.time()) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {value!r}: give 30m, 2h, 7d or an ISO date/time such as 2026-11-23T08:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
