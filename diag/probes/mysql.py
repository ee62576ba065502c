"""MySQL and MariaDB health (``agent.probes.mysql``): every configured instance, and its backup jobs
(docs/databases.md). Off until instances or backup jobs are configured; the driver is imported on the first run.
"""

from __future__ import annotations

from diag.probes.base import register
from diag.probes.databases.options import DatabaseOptions
from diag.probes.databases.probe import DatabaseProbe


class MysqlOptions(DatabaseOptions, kw_only=True):
    pass


@register
class MysqlProbe(DatabaseProbe):
    name = "mysql"
    help = "MySQL/MariaDB servers: up, connections, locks, long queries, replication, storage, backups and restores."
    Options = MysqlOptions
    engine = "mysql"
    collector = "diag.probes.databases.mysql:MysqlInstance"
