"""Names the archive accepts (targets, sources) and regex compilation for its settings: cheap to import.

``diag.config`` validates ``agent.archive`` through this module when the agent starts, so it must not pull in
what only fetching and storing need (hashing, difflib, tempfile: ~1 MiB of the agent's RSS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from diag.errors import DiagError, InvalidInput

RUNNING_CONFIG = "running-config"
_TARGET = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")  # the inventory's host-name rule


class ArchiveError(DiagError):
    """A target, source or version that the archive does not hold (or a name it cannot hold)."""


class BadArchiveName(ArchiveError, InvalidInput):
    """A target or source name the archive can never hold (bad input, exit 2). One it merely does not hold yet
    stays an ArchiveError: docs/config-archive.md gives "not in the archive" exit 3."""


def check_target(target: str) -> str:
    if not _TARGET.match(target):
        raise BadArchiveName(f"{target!r}: a target is an inventory host name (letters, digits and _.:-)")
    return target


def check_source(source: str) -> str:
    if source == RUNNING_CONFIG:
        return source
    if not source.startswith("/") or "\0" in source or "\n" in source or "/../" in source + "/":
        raise BadArchiveName(f"{source!r}: a source is {RUNNING_CONFIG} or an absolute file path without '..'")
    return source


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Compile with MULTILINE (patterns are about lines); re.error names the bad pattern."""
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p, re.M))
        except re.error as e:
            raise re.error(f"{p!r}: {e}") from None
    return out
