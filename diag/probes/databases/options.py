"""Configuration of the database probes: instances (DSN + secret reference), thresholds and backup jobs.

Kept free of any driver import so that validating an inventory never loads a database client; the DSN is checked
here for what can be checked without a driver: it names no password (secrets are references, never literals).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec

from diag.probes.base import ProbeOptions
from diag.secrets import SecretRef, is_reference

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: key=value DSN pairs (libpq conninfo); a value may be single-quoted
_KV_RE = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


def dsn_keys(dsn: str) -> dict[str, str]:
    """The parameters of a URL (``postgresql://u@h:5432/db?sslmode=require``) or ``key=value`` DSN.

    For URLs, the user, host, port and database are returned as ``user``, ``host``, ``port``, ``dbname``; a
    password in the URL comes back as ``password`` so that the caller can refuse it.
    """
    if "://" in dsn:
        u = urlsplit(dsn)
        out = {k: v for k, v in parse_qsl(u.query, keep_blank_values=True)}
        if u.username:
            out["user"] = u.username
        if u.password is not None:
            out["password"] = u.password
        if u.hostname:
            out["host"] = u.hostname
        try:
            if u.port is not None:
                out["port"] = str(u.port)
        except ValueError as e:
            raise ValueError(f"bad port in DSN: {e}") from None
        if u.path.strip("/"):
            out["dbname"] = u.path.strip("/")
        return out
    out = {}
    pos = 0
    text = dsn.strip()
    while pos < len(text):
        m = _KV_RE.match(text, pos)
        if not m:
            raise ValueError(f"DSN is neither a URL nor key=value pairs near {text[pos : pos + 20]!r}")
        value = m.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("\\'", "'")
        out[m.group(1)] = value
        pos = m.end()
    return out


class Instance(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One database server to watch. ``dsn`` says where (TCP host:port or a socket directory/file) and who."""

    name: str  # the ``server`` label of every metric; unique per probe
    dsn: str  # postgresql://diag@127.0.0.1:5432/postgres, host=/run/postgresql dbname=postgres, mysql://diag@host/
    password: str | None = None  # env:NAME or file:PATH, never the secret itself
    connect_timeout: float = 5.0
    role: Literal["any", "primary", "replica"] = "any"  # a server in the other role is a finding (failover)
    min_replicas: int = 0  # a primary with fewer streaming replicas connected is a finding

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"instance name {self.name!r}: letters, digits and _.- only (at most 63)")
        try:
            keys = dsn_keys(self.dsn)
        except ValueError as e:
            raise ValueError(f"instance {self.name!r}: {e}") from None
        if "password" in keys:
            raise ValueError(
                f"instance {self.name!r}: the DSN must not hold the password; set password: env:NAME or file:PATH"
            )
        if self.password is not None and not is_reference(self.password):
            raise ValueError(
                f"instance {self.name!r}: password must be a reference (env:NAME or file:PATH), not a literal"
            )
        if self.connect_timeout <= 0 or self.min_replicas < 0:
            raise ValueError(f"instance {self.name!r}: connect_timeout must be positive and min_replicas >= 0")

    def secret(self) -> str | None:
        """The password, read now (``SecretError`` when the reference cannot be resolved)."""
        return SecretRef(self.password).reveal() if self.password else None


class VerifyQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A query run in the restored copy; its first column of the first row is compared."""

    sql: str
    min: float | None = None  # e.g. a row count that must be at least this
    max: float | None = None
    equals: str | None = None  # e.g. a checksum (compared as text)

    def __post_init__(self) -> None:
        if not self.sql.strip():
            raise ValueError("a verification query needs sql")


class Verify(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Restore verification: restore the newest dump into a scratch database on ``instance``, query, drop."""

    instance: str  # a configured instance of the same probe; the scratch database is created there
    interval_hours: float = 24.0  # at most one restore per interval, always of the newest dump
    timeout: float = 3600.0  # seconds for the restore and the queries together; the restore is killed after
    queries: list[VerifyQuery] = []

    def __post_init__(self) -> None:
        if self.interval_hours <= 0 or self.timeout <= 0:
            raise ValueError("verify: interval_hours and timeout must be positive")


class BackupJob(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    glob: str  # e.g. /var/backups/pg/app-*.dump (relative to the rootfs path)
    max_age_hours: float
    min_bytes: int = 1
    verify: Verify | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"backup job name {self.name!r}: letters, digits and _.- only")
        if self.max_age_hours <= 0 or self.min_bytes < 0:
            raise ValueError(f"backup job {self.name!r}: max_age_hours must be positive, min_bytes >= 0")


class DatabaseOptions(ProbeOptions, kw_only=True):
    """Options shared by the postgres and mysql probes (thresholds apply to every instance of the probe)."""

    interval: float = 60.0
    timeout: float = 30.0
    instances: list[Instance] = []
    backups: list[BackupJob] = []
    connections_warning_percent: float = 80.0
    connections_critical_percent: float = 95.0
    idle_in_transaction_warning_seconds: float = 60.0
    lock_wait_warning_seconds: float = 30.0
    long_query_warning_seconds: float = 300.0
    long_transaction_warning_seconds: float = 600.0
    replica_lag_warning_seconds: float = 60.0
    replica_lag_critical_seconds: float = 300.0
    replica_lag_warning_bytes: float = 1024.0**3  # 1 GiB of WAL/binlog not replayed
    cache_hit_warning_percent: float = 90.0
    cache_min_reads: int = 10000  # block/page reads since the previous run before the hit ratio is judged
    restart_notice_seconds: float = 3600.0  # "server restarted" stays this long after the restart
    log_warning_bytes: float = 0.0  # WAL (pg_wal) / binary logs bigger than this; 0 = not judged
    evidence_sessions: int = 5  # sessions listed in a finding's evidence
    query_chars: int = 300  # masked query text kept per session in evidence

    def __post_init__(self) -> None:
        if not self.instances and not self.backups:
            self.enabled = False  # nothing configured: off, and no driver is ever imported
        for kind, names in (
            ("instance", [i.name for i in self.instances]),
            ("backup job", [b.name for b in self.backups]),
        ):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {kind} name(s): {', '.join(dup)}")
        known = {i.name for i in self.instances}
        for b in self.backups:
            if b.verify is not None and b.verify.instance not in known:
                raise ValueError(
                    f"backup job {b.name!r}: verify.instance {b.verify.instance!r} is not a configured instance"
                )
        if not 0 < self.connections_warning_percent <= self.connections_critical_percent <= 100:
            raise ValueError("need 0 < connections_warning_percent <= connections_critical_percent <= 100")
        if self.replica_lag_warning_seconds > self.replica_lag_critical_seconds:
            raise ValueError("replica_lag_warning_seconds must not exceed replica_lag_critical_seconds")
