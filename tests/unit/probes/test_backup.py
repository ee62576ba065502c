"""backup: newest file per job, age and size limits, options, and the off-by-default rule."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from diag.errors import NoData
from diag.model import Result
from diag.probes.backup import BackupOptions, BackupProbe
from diag.probes.base import Paths


def make(root: Path, jobs: list[dict[str, Any]]) -> BackupProbe:
    return BackupProbe(msgspec.convert({"jobs": jobs}, BackupOptions), Paths(rootfs=root, state=root / ".state"))


def put(root: Path, rel: str, data: bytes, age_h: float) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    t = time.time() - age_h * 3600
    os.utime(p, (t, t))
    return p


def values(r: Result, name: str) -> dict[str, float]:
    return {lv[0]: v for m in r.metrics if m.name == name for lv, v in m.samples}


def test_off_without_jobs_on_with_jobs() -> None:
    assert msgspec.convert({}, BackupOptions).enabled is False
    assert msgspec.convert({"jobs": [{"name": "a", "glob": "/x", "max_age_hours": 1}]}, BackupOptions).enabled
    opts = msgspec.convert({"enabled": False, "jobs": [{"name": "a", "glob": "/x", "max_age_hours": 1}]}, BackupOptions)
    assert opts.enabled is False
    with pytest.raises(NoData, match="no backup jobs"):
        BackupProbe(msgspec.convert({}, BackupOptions), Paths()).collect()


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"name": "a", "glob": "/x", "max_age_hours": 0}, "max_age_hours must be positive"),
        ({"name": "a", "glob": "/x", "max_age_hours": 1, "min_bytes": -1}, "min_bytes"),
        ({"name": "a", "glob": "/x"}, "missing required field `max_age_hours`"),
        ({"name": "a", "glob": "/x", "max_age_hours": 1, "when": "daily"}, "unknown field `when`"),
    ],
)
def test_bad_jobs_are_refused(job: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert({"jobs": [job]}, BackupOptions)


def test_duplicate_job_names_are_refused() -> None:
    job = {"name": "a", "glob": "/x", "max_age_hours": 1}
    with pytest.raises(msgspec.ValidationError, match="duplicate backup job"):
        msgspec.convert({"jobs": [job, job]}, BackupOptions)


def test_fresh_stale_missing_and_empty(tmp_path: Path) -> None:
    put(tmp_path, "/backup/db/db-1.sql.gz", b"x" * 500, age_h=50)
    put(tmp_path, "/backup/db/db-2.sql.gz", b"x" * 700, age_h=2)
    put(tmp_path, "/backup/etc/etc-1.tar.gz", b"x" * 100, age_h=30)
    put(tmp_path, "/backup/home/2025/11/home.tar", b"", age_h=1)
    (tmp_path / "backup" / "db" / "subdir.sql.gz").mkdir()  # directories do not count
    r = make(
        tmp_path,
        [
            {"name": "db", "glob": "/backup/db/*.sql.gz", "max_age_hours": 26},
            {"name": "etc", "glob": "/backup/etc/*.tar.gz", "max_age_hours": 26},
            {"name": "home", "glob": "/backup/home/**/*.tar", "max_age_hours": 26},
            {"name": "mail", "glob": "/backup/mail/*.tar", "max_age_hours": 26},
            {"name": "big", "glob": "/backup/db/*.sql.gz", "max_age_hours": 26, "min_bytes": 1000},
        ],
    ).collect()
    got = {(f.check, f.subject) for f in r.findings}
    assert got == {
        ("backup_stale", "etc"),
        ("backup_too_small", "home"),
        ("backup_missing", "mail"),
        ("backup_too_small", "big"),
    }
    assert all(f.severity == "critical" and f.cause == "backup_failed" for f in r.findings)
    assert values(r, "diag_backup_files") == {"db": 2, "etc": 1, "home": 1, "mail": 0, "big": 2}
    assert values(r, "diag_backup_newest_size_bytes")["db"] == 700
    assert 1.9 * 3600 < values(r, "diag_backup_newest_age_seconds")["db"] < 2.1 * 3600
    stale = next(f for f in r.findings if f.check == "backup_stale")
    assert "30.0 h old (limit 26 h)" in stale.summary
    assert "/backup/etc/etc-1.tar.gz" in stale.evidence[0].text  # shown as the host sees it
    assert str(tmp_path) not in stale.evidence[0].text
