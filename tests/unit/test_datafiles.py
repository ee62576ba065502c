"""Data files are private: the stores are created 0600 in a 0700 directory, and the start-up check tightens
stores that other users could read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from diag.alertmanager.queue import JobStore
from diag.datafiles import check_data_dir
from diag.exporters.tickets.local import LocalTickets
from diag.incidents.store import Store


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_stores_are_created_private_and_checked_at_start(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask would give 0644 files in a 0755 directory
    try:
        data = tmp_path / "data"
        stores = [Store(data / "incidents.sqlite"), JobStore(data / "alertmanager.sqlite")]
        tickets = LocalTickets(data / "tickets.sqlite")
        stores[0].db.execute("CREATE TABLE IF NOT EXISTS t (x)")  # WAL and shm files exist now
        assert mode(data) == 0o700
        made = sorted(p for p in data.iterdir())
        assert {p.name for p in made} >= {"incidents.sqlite", "alertmanager.sqlite", "tickets.sqlite"}
        assert {p.name: mode(p) for p in made} == {p.name: 0o600 for p in made}
        for s in stores:
            s.close()
        tickets.close_db()

        os.chmod(data, 0o755)  # left so by an older diag, or a copy
        os.chmod(data / "incidents.sqlite", 0o644)
        (data / "notes.txt").write_text("not a store")
        changes = check_data_dir(data)
        assert len(changes) == 2 and "incidents.sqlite: was 0644" in changes[1] and "was 0755" in changes[0]
        assert mode(data) == 0o700 and mode(data / "incidents.sqlite") == 0o600
        assert check_data_dir(data) == []
    finally:
        os.umask(old)
