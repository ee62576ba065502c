"""The asset inventory: facts collected by playbooks with ``facts: true``, kept per host with history.

Each successful run writes ``<data>/facts/<host>/<UTC timestamp>.json`` (the parsed values of every step, the
playbook and the time), so the support team can answer "what is installed where, and since when" and see
what changed between two collections. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def host_dir(data_dir: Path, host: str) -> Path:
    # Inventory host names are already restricted to [A-Za-z0-9_.:-]; this keeps a path a path regardless.
    return data_dir / "facts" / (_SAFE.sub("_", host).lstrip(".") or "_")


def save(data_dir: Path, host: str, playbook: str, values: dict[str, Any], when: float | None = None) -> Path:
    """Write one collection for ``host``; return the file."""
    when = time.time() if when is None else when
    d = host_dir(data_dir, host)
    d.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    path = d / f"{stamp}.json"
    n = 1
    while path.exists():  # two collections in the same second keep both
        path = d / f"{stamp}-{n}.json"
        n += 1
    doc = {"host": host, "playbook": playbook, "collected_at": when, "facts": values}
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def history(data_dir: Path, host: str) -> list[Path]:
    """Collections of ``host``, oldest first."""
    d = host_dir(data_dir, host)
    return sorted(d.glob("*.json")) if d.is_dir() else []


def latest(data_dir: Path, host: str) -> dict[str, Any] | None:
    files = history(data_dir, host)
    if not files:
        return None
    doc: dict[str, Any] = json.loads(files[-1].read_text(encoding="utf-8"))
    return doc


def hosts(data_dir: Path) -> list[str]:
    d = data_dir / "facts"
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The few facts an asset list shows, from a collection of the shipped ``facts`` playbook."""
    f = doc.get("facts", {})
    osr = f.get("os") or {}
    hw = f.get("hardware") or {}
    cpu = f.get("cpu") or {}
    mem = f.get("memory") or {}
    pk = f.get("packages") or []
    return {
        "host": doc.get("host"),
        "collected_at": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(doc.get("collected_at", 0))),
        "os": osr.get("PRETTY_NAME") or osr.get("NAME"),
        "kernel": (f.get("kernel") or {}).get("release"),
        "model": " ".join(x for x in (hw.get("sys_vendor"), hw.get("product_name")) if x) or None,
        "serial": hw.get("product_serial") or hw.get("board_serial"),
        "cpu": cpu.get("model"),
        "cpus": cpu.get("count"),
        "memory_kib": mem.get("MemTotal"),
        "packages": len(pk) if isinstance(pk, list) else None,
    }


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed between two collections: summary fields, and packages added/removed/upgraded."""
    out: dict[str, Any] = {}
    so, sn = summary(old), summary(new)
    for k in sn:
        if k not in ("collected_at", "host") and so.get(k) != sn.get(k):
            out[k] = {"from": so.get(k), "to": sn.get(k)}

    def pkgs(doc: dict[str, Any]) -> dict[str, str]:
        rows = doc.get("facts", {}).get("packages") or []
        return {r["name"]: r.get("version", "") for r in rows if isinstance(r, dict) and "name" in r}

    po, pn = pkgs(old), pkgs(new)
    added = sorted(set(pn) - set(po))
    removed = sorted(set(po) - set(pn))
    changed = sorted(k for k in set(po) & set(pn) if po[k] != pn[k])
    if added or removed or changed:
        out["packages_changed"] = {
            "added": added,
            "removed": removed,
            "upgraded": [f"{k} {po[k]} -> {pn[k]}" for k in changed],
        }
    return out
