"""Database health: PostgreSQL and MySQL/MariaDB instances watched by the ``postgres`` and ``mysql`` probes.

``options`` (configuration, light: no client), ``sqlmask`` (literals masked out of query text), ``postgres`` and
``mysql`` (one collection of an instance: psql for PostgreSQL, mysqlclient imported on first use), ``backups``
(dump freshness and restore verification into a scratch database). The probes in ``diag/probes/{postgres,mysql}.py``
tie them together.
"""
