"""Which SQLite errors of the incident store are an outage (``StoreUnavailable``: whoever holds work keeps it and
tries again) and which are a bug (a plain sqlite3 error). Real SQLite errors, no mocks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from diag.errors import StoreUnavailable
from diag.incidents.store import Store, passing_as_unavailable


def test_a_read_only_database_is_an_outage_and_a_bad_statement_is_not(tmp_path: Path) -> None:
    store = Store(tmp_path / "incidents.sqlite")
    store.close()
    ro = sqlite3.connect(f"file:{tmp_path / 'incidents.sqlite'}?mode=ro", uri=True)
    with pytest.raises(StoreUnavailable) as caught, passing_as_unavailable(tmp_path / "incidents.sqlite"):
        ro.execute("INSERT INTO silences (starts, ends, reason, created_by) VALUES (0, 1, 'r', 'w')")
    ro.close()
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert "incidents.sqlite unavailable" in str(caught.value)

    store = Store(tmp_path / "incidents.sqlite")
    try:
        with pytest.raises(sqlite3.OperationalError) as bug:
            store.read("SELECT nothing FROM no_such_table")
        assert not isinstance(bug.value, StoreUnavailable)
        with pytest.raises(sqlite3.OperationalError), store.tx() as c:
            c.execute("SELEC 1")
        assert store.read("SELECT COUNT(*) FROM incidents")[0][0] == 0  # rolled back, still usable
    finally:
        store.close()


def test_a_locked_database_is_an_outage(tmp_path: Path) -> None:
    store = Store(tmp_path / "incidents.sqlite")
    store.db.execute("PRAGMA busy_timeout = 50")  # the store waits 30 s for a lock; the test does not
    other = sqlite3.connect(tmp_path / "incidents.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        with pytest.raises(StoreUnavailable, match=r"incidents\.sqlite unavailable: database is locked"), store.tx():
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.close()
