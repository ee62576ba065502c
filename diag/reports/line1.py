"""The line-1 automation figures of ``diag report``: how much of what people file diag handles itself.

Read from the line-1 ledger (``DATA/line1.db``, :mod:`diag.line1.ledger`) for the tickets people filed in the
period: the share triaged automatically (a KB entry recognised the symptom and diag diagnosed the subject and
decided typical/atypical), the share resolved by line-1 automation (a standard change verified, the ticket
resolved), reopenings, and the time from filing to diag's first answer; the same per KB entry, and the results
of standard changes applied in the period.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from diag.line1.ledger import FILENAME, Ledger


def _share(n: int, total: int) -> float | None:
    return round(n / total, 4) if total else None


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    triaged = [r for r in rows if r["kb_entry"] and r["state"] not in ("new", "refused")]
    resolved = [r for r in rows if r["resolved_by_line1"]]
    first = [r["first_response_at"] - r["filed_at"] for r in rows if r["first_response_at"]]
    return {
        "tickets": len(rows),
        "triaged_automatically": len(triaged),
        "triaged_share": _share(len(triaged), len(rows)),
        "typical": sum(1 for r in rows if r["classification"] == "typical"),
        "resolved_by_line1": len(resolved),
        "resolved_share": _share(len(resolved), len(rows)),
        "reopened": sum(1 for r in rows if r["reopened"]),
        "refused": sum(1 for r in rows if r["state"] == "refused"),
        "to_line2": sum(1 for r in rows if r["line"] == "L2"),
        "first_response_median_s": _median(first),
        "first_response_mean_s": round(sum(first) / len(first), 1) if first else None,
    }


def compute(data: Path, start: float, end: float) -> dict[str, Any] | None:
    """The section, or None when line-1 automation never ran with this data directory."""
    if not (data / FILENAME).exists():
        return None
    ledger = Ledger(data)
    try:
        rows = [r for r in ledger.tickets(since=start) if r["filed_at"] < end]
        apps = [a for a in ledger.applications(limit=100_000) if start <= a["ts"] < end]
    finally:
        ledger.close()
    out = _figures(rows)
    out["by_kb_entry"] = [
        {"kb_entry": kb, **_figures([r for r in rows if (r["kb_entry"] or "(none)") == kb])}
        for kb in sorted({r["kb_entry"] or "(none)" for r in rows})
    ]
    out["standard_changes"] = [
        {"change": c, "result": res, "count": n}
        for (c, res), n in sorted(Counter((a["change_id"], a["result"]) for a in apps).items())
    ]
    return out
