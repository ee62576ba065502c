"""Which incident store a deployment uses: the embedded SQLite :class:`~diag.incidents.store.Store`, or its
PostgreSQL twin :class:`~diag.incidents.pgstore.PgStore` when ``agent.incidents.database_url`` is set (scale-out).
"""

from __future__ import annotations

from typing import Any

from diag.incidents.store import Store


def open_store(settings: Any) -> Store:
    """The configured store: PostgreSQL when ``database_url`` is set (scale-out), else SQLite in the data dir."""
    url = getattr(settings, "database_url", None)
    if url:
        from diag.incidents.pgstore import PgStore
        from diag.secrets import SecretRef, is_reference

        return PgStore(SecretRef(url).reveal() if is_reference(url) else url)
    return Store(settings.db_path)
