"""Private data files: diag's SQLite stores are created 0600 in 0700 directories, and checked at start.

The stores hold evidence, command output, alert texts and ticket drafts, which are nobody else's business on a
shared host. The file is created with its mode before SQLite opens it (no window in which it is 0644), and SQLite
gives its ``-wal`` and ``-shm`` files the database file's mode. :func:`check_data_dir` is run by the agent at
start: a store or directory that another user can read (left by an older diag, a copy, a umask of 0) is made
private again, and each change is logged with the file and its old mode.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
#: What is private in a data directory (the stores, their WAL files, the TOFU host keys).
PRIVATE_SUFFIXES = (".sqlite", ".db", ".sqlite-wal", ".sqlite-shm", ".db-wal", ".db-shm", ".tofu")


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700; an existing directory is left as it is (it may be shared, /tmp)."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist yet; tighten it if it is readable by others."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        os.close(fd)


def connect(path: Path, **kwargs: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` on a private file (see :func:`private_file`)."""
    private_file(path)
    conn: sqlite3.Connection = sqlite3.connect(str(path), **kwargs)
    return conn


def _tighten(path: Path, mode: int) -> str | None:
    """Remove group/other bits from ``path``; a line saying what changed, or None when it was private already."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    old = stat.S_IMODE(st.st_mode)
    if not old & 0o077:
        return None
    os.chmod(path, old & ~0o077 & 0o777 | (mode & 0o700))
    return f"{path}: was {old:04o}, readable by other users; made {mode:04o}"


def check_data_dir(data: Path) -> list[str]:
    """Make the data directory 0700 and its stores 0600 (one level down too); the changes, each logged."""
    changes: list[str] = []
    if not data.is_dir():
        return changes
    for d in [data, *(p for p in data.iterdir() if p.is_dir() and not p.is_symlink())]:
        if d != data and not any(f.name.endswith(PRIVATE_SUFFIXES) for f in d.iterdir()):
            continue
        fixed = _tighten(d, DIR_MODE)
        if fixed:
            changes.append(fixed)
        for f in d.iterdir():
            if f.is_file() and not f.is_symlink() and f.name.endswith(PRIVATE_SUFFIXES):
                fixed = _tighten(f, FILE_MODE)
                if fixed:
                    changes.append(fixed)
    for line in changes:
        log.warning("data directory: %s", line)
    return changes
