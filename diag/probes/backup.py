"""Backup freshness: for each configured job, the newest file matching its glob must be recent and not empty.

Keeping backup copies is a support duty; this probe checks that they keep coming. A job names a glob
(under the rootfs path, ``**`` allowed), the age the newest copy may reach, and its smallest sane size.
The probe is off until jobs are configured.
"""

from __future__ import annotations

import glob
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from diag.errors import NoData
from diag.model import Evidence, Gap, Result
from diag.probes.base import Probe, ProbeOptions, register

EVIDENCE_FILES = 5  # newest files listed in a finding's evidence


class BackupJob(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    glob: str  # e.g. /var/backups/db/*.sql.gz; relative to the rootfs path
    max_age_hours: float
    min_bytes: int = 1  # a copy smaller than this is as bad as none (an empty dump, a failed tar)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("job name must not be empty")
        if self.max_age_hours <= 0:
            raise ValueError(f"job {self.name!r}: max_age_hours must be positive")
        if self.min_bytes < 0:
            raise ValueError(f"job {self.name!r}: min_bytes must not be negative")


class BackupOptions(ProbeOptions, kw_only=True):
    interval: float = 300.0  # backups come hourly or daily: every 5 minutes is plenty
    jobs: list[BackupJob] = []

    def __post_init__(self) -> None:
        if not self.jobs:
            self.enabled = False  # nothing to watch: off by default, on as soon as jobs are configured
        names = [j.name for j in self.jobs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate backup job name(s): {', '.join(sorted(dup))}")


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


@register
class BackupProbe(Probe):
    name = "backup"
    help = "Backup freshness: the newest file of each job is younger than its limit and not empty."
    Options = BackupOptions

    def collect(self) -> Result:
        assert isinstance(self.options, BackupOptions)
        if not self.options.jobs:
            raise NoData("no backup jobs configured (agent.probes.backup.jobs)")
        now = time.time()
        r = Result()
        age_m = r.metric("diag_backup_newest_age_seconds", "Age of the newest file of the backup job.", labels=("job",))
        size_m = r.metric(
            "diag_backup_newest_size_bytes", "Size of the newest file of the backup job.", labels=("job",)
        )
        time_m = r.metric(
            "diag_backup_newest_timestamp_seconds",
            "Modification time of the newest file of the backup job (Unix time).",
            labels=("job",),
        )
        count_m = r.metric("diag_backup_files", "Files matching the backup job's glob.", labels=("job",))
        for job in self.options.jobs:
            pattern = str(self.paths.root(job.glob))
            files: list[tuple[float, int, str]] = []
            for p in glob.iglob(pattern, recursive=True):
                try:
                    st = os.stat(p)
                except OSError:
                    continue  # removed between glob and stat, or a dangling link
                if stat.S_ISREG(st.st_mode):
                    files.append((st.st_mtime, st.st_size, p))
            count_m.add(len(files), job.name)
            if not files:
                r.find(
                    "backup_missing",
                    "critical",
                    f"backup {job.name}: no file matches {job.glob}",
                    subject=job.name,
                    cause="backup_failed",
                    evidence=[Evidence("file", f"glob {job.glob}", "no regular file matches", {"glob": job.glob})],
                )
                # no copy to judge: a stale or too small backup is not over because the copies are gone
                why = f"backup {job.name}: no copy to judge the age and size of"
                r.gaps.append(Gap(why, frozenset({"backup_stale", "backup_too_small"}), frozenset({job.name})))
                continue
            files.sort(reverse=True)
            mtime, size, newest = files[0]
            age = max(0.0, now - mtime)
            age_m.add(age, job.name)
            size_m.add(size, job.name)
            time_m.add(mtime, job.name)
            listing = "\n".join(f"{_ts(t)}  {s:>14d}  {self._show(p)}" for t, s, p in files[:EVIDENCE_FILES])
            ev = [
                Evidence(
                    "file",
                    f"newest {min(len(files), EVIDENCE_FILES)} of {len(files)} file(s) matching {job.glob}",
                    listing,
                    {"newest": self._show(newest), "age_s": round(age, 1), "size_bytes": size},
                )
            ]
            limit_s = job.max_age_hours * 3600
            if age > limit_s:
                r.find(
                    "backup_stale",
                    "critical",
                    f"backup {job.name}: newest copy is {age / 3600:.1f} h old (limit {job.max_age_hours:g} h)",
                    subject=job.name,
                    cause="backup_failed",
                    evidence=ev,
                )
            if size < job.min_bytes:
                r.find(
                    "backup_too_small",
                    "critical",
                    f"backup {job.name}: newest copy {self._show(newest)} has {_size(size)} "
                    f"(at least {_size(job.min_bytes)} expected)",
                    subject=job.name,
                    cause="backup_failed",
                    evidence=ev,
                )
        return r

    def _show(self, p: str) -> str:
        """A path as the host sees it (without the rootfs prefix used in tests and containers)."""
        root = self.paths.rootfs
        if root == Path("/"):
            return p
        try:
            return "/" + str(Path(p).relative_to(root))
        except ValueError:
            return p
