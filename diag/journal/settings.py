"""``agent.journal`` in the inventory: the journal's HMAC key file and its external anchor (docs/journal.md).

::

    agent:
      journal:
        key: file:/etc/diag/journal.key     # outside the data directory; `diag journal key new FILE` makes one
        anchor: /mnt/audit/diag-anchor.log  # or "syslog": where the head (seq + hash) is appended
        anchor_interval: 300                # seconds between anchors (only when the head moved)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from diag import yamlsrc


class JournalSpec(msgspec.Struct, forbid_unknown_fields=True):
    key: str | None = None
    anchor: str | None = None
    anchor_interval: float = 300.0


@dataclass(slots=True)
class JournalSettings:
    key: str | None = None  # a secret reference: file:PATH or env:NAME
    anchor: str | None = None  # a file path, or "syslog"
    anchor_interval: float = 300.0


def build(
    doc: yamlsrc.Doc, raw: Any, data: Path, base: tuple[str, ...] = ("agent", "journal")
) -> JournalSettings | None:
    spec = doc.check_type(base, raw if raw is not None else {}, JournalSpec)
    if spec is None:
        return None
    if spec.key is not None:
        if not spec.key.startswith(("file:", "env:")):
            doc.problem((*base, "key"), "key: a reference, file:PATH (outside the data directory) or env:NAME")
        elif spec.key.startswith("file:"):
            key_path = Path(spec.key[5:]).expanduser().resolve()
            if key_path.is_relative_to(data.resolve()):
                doc.problem((*base, "key"), f"key: {key_path} is inside the data directory {data}; keep it elsewhere")
    if spec.anchor_interval < 1:
        doc.problem((*base, "anchor_interval"), "anchor_interval must be at least 1 second")
    if spec.anchor is not None and spec.anchor != "syslog" and not spec.anchor.startswith("/"):
        doc.problem((*base, "anchor"), "anchor: an absolute file path (on another mount) or 'syslog'")
    return JournalSettings(
        key=spec.key,
        anchor=spec.anchor,
        anchor_interval=spec.anchor_interval,
    )
