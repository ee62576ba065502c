"""PostgreSQL health (``agent.probes.postgres``): every configured instance, and its backup jobs (docs/databases.md).

Off until instances or backup jobs are configured; the servers are read with psql, one call per run (docs/databases.md).
"""

from __future__ import annotations

from diag.probes.base import register
from diag.probes.databases.options import DatabaseOptions
from diag.probes.databases.probe import DatabaseProbe


class PostgresOptions(DatabaseOptions, kw_only=True):
    pass


@register
class PostgresProbe(DatabaseProbe):
    name = "postgres"
    help = "PostgreSQL servers: up, connections, locks, long queries, replication, storage, backups and restores."
    Options = PostgresOptions
    engine = "postgres"
    collector = "diag.probes.databases.postgres:PostgresInstance"
