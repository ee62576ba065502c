"""How the console writes times and durations (Jinja2 filters); static/console.js writes SLA time left the same way.

Compact on purpose: a time column must not wrap on a laptop screen. Today's times read ``14:03:27``, older ones
``12-05 14:03``, older than this year ``2025-12-05``; the full UTC time is in the element's ``title``.
"""

from __future__ import annotations

import time


def full(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z" if ts else "-"


def iso(ts: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""


def compact(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    t, n = time.gmtime(ts), time.gmtime(now if now is not None else time.time())
    if t[:3] == n[:3]:
        return time.strftime("%H:%M:%S", t)
    if t.tm_year == n.tm_year:
        return time.strftime("%m-%d %H:%M", t)
    return time.strftime("%Y-%m-%d", t)


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "never"
    d = (now if now is not None else time.time()) - ts
    if d < 90:
        return f"{d:.0f} s ago"
    if d < 5400:
        return f"{d / 60:.0f} min ago"
    if d < 129600:
        return f"{d / 3600:.1f} h ago"
    return f"{d / 86400:.1f} d ago"


def left(seconds: float | None) -> str:
    """SLA time left as it counts down: ``3 h 59 min`` above an hour, ``47 min 05 s`` below, or how long ago it
    ran out (``breached 2 min 10 s ago``). Whole units, rounded down, so 14,399 s reads 3 h 59 min."""
    if seconds is None:
        return "-"
    a = int(abs(seconds))
    text = f"{a // 3600} h {a % 3600 // 60} min" if a >= 3600 else f"{a // 60} min {a % 60:02d} s"
    return text if seconds >= 0 else f"breached {text} ago"
