"""Filesystems: size, free and available bytes, inodes and the read-only flag of every real mount.

Mounts come from /proc/mounts (pseudo filesystems and /proc, /sys, /dev are skipped, duplicates of the
same device on the same mountpoint count once); figures come from statvfs(2) on the mountpoint under
the rootfs path. A dead NFS server makes statvfs block forever, so the stats run in a daemon worker
thread with a deadline per mount: a mount that misses it is reported (``diag_filesystem_device_error``
and a finding) and not stat'ed again until the stuck call returns, as node_exporter does with its
"stuck mounts".

Findings: space used above warning/critical percent (of the space ordinary users can use, as df
counts it), inodes used above their thresholds, a filesystem that became read-only (rw at the previous
run, or mounted with errors=remount-ro, or rw in /etc/fstab), a hung mount.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from diag.errors import NoData
from diag.model import Evidence, Gap, Result, Severity
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

# node_exporter's default fs-types-exclude, plus a few more kernel-internal ones
PSEUDO_FS = frozenset(
    {
        *("autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs"),
        *("efivarfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay", "proc", "procfs", "pstore"),
        *("rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tracefs", "ramfs", "nfsd"),
        *("fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal"),
    }
)
StatFn = Callable[[str], os.statvfs_result]


class FilesystemOptions(ProbeOptions, kw_only=True):
    warning_percent: float = 90.0  # space used, of size minus the root reserve (like df's Use%)
    critical_percent: float = 95.0
    inodes_warning_percent: float = 90.0
    inodes_critical_percent: float = 95.0
    fs_types_exclude: list[str] = []  # more filesystem types to skip, besides the pseudo ones
    mountpoints_exclude: str = (
        r"^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
    )
    stat_timeout: float = 3.0  # seconds one statvfs may take before the mount counts as hung


@dataclass(slots=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    line: str


def _unescape(s: str) -> str:
    r"""/proc/mounts writes space, tab, newline and backslash in paths as octal: ``\040``."""
    if "\\" not in s:
        return s
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mounts(text: str) -> list[Mount]:
    """``device mountpoint fstype options dump pass`` lines; the last mount of a device on a path wins."""
    out: dict[tuple[str, str], Mount] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        m = Mount(_unescape(parts[0]), _unescape(parts[1]), parts[2], tuple(parts[3].split(",")), line)
        out[(m.device, m.mountpoint)] = m
    return list(out.values())


def parse_fstab(text: str) -> dict[str, tuple[str, ...]]:
    """/etc/fstab -> {mountpoint: options}; comments and blank lines are skipped."""
    out: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and not parts[0].startswith("#"):
            out[_unescape(parts[1])] = tuple(parts[3].split(","))
    return out


def human(n: float) -> str:
    """Bytes the way ``df -h`` prints them (powers of 1024)."""
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1024 or unit == "P":
            return f"{n:.0f}{unit}" if unit == "" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.0f}E"  # pragma: no cover - unreachable, the loop returns at P


@dataclass(slots=True)
class _Batch:
    """Stats a list of paths one after another in a worker thread; the caller watches the clock."""

    paths: list[str]
    stat: StatFn
    stuck: set[str]
    cond: threading.Condition = field(default_factory=threading.Condition)
    results: dict[str, os.statvfs_result | OSError] = field(default_factory=dict)
    current: int = 0
    started: float = 0.0
    cancelled: bool = False
    done: bool = False

    def run(self) -> None:
        for i, path in enumerate(self.paths):
            with self.cond:
                if self.cancelled:
                    return
                self.current, self.started = i, time.monotonic()
            try:
                res: os.statvfs_result | OSError = self.stat(path)
            except OSError as e:
                res = e
            with self.cond:
                self.results[path] = res
                self.stuck.discard(path)  # a hung stat that finally returned frees its mount
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()


@register
class FilesystemProbe(Probe):
    name = "filesystem"
    help = "Filesystem space, inodes and read-only state per mount; full, inode-exhausted, read-only, hung."
    Options = FilesystemOptions

    def __init__(self, options: ProbeOptions, paths: Paths, statvfs: StatFn = os.statvfs) -> None:
        super().__init__(options, paths)
        assert isinstance(options, FilesystemOptions)
        self._stat = statvfs  # injectable: a test can stand in for a dead NFS server
        self._types_skip = PSEUDO_FS | frozenset(options.fs_types_exclude)
        self._mp_exclude = re.compile(options.mountpoints_exclude) if options.mountpoints_exclude else None
        self._mp_skip: dict[str, bool] = {}  # mountpoint -> excluded, so the regex runs once per path
        self._stuck: set[str] = set()  # stat paths whose statvfs has not returned yet (guarded by batch cond)
        self._was_rw: dict[str, bool] = {}  # mountpoint -> writable at the previous run

    def _wanted(self, m: Mount) -> bool:
        if m.fstype in self._types_skip:
            return False
        skip = self._mp_skip.get(m.mountpoint)
        if skip is None:
            skip = self._mp_skip[m.mountpoint] = bool(self._mp_exclude and self._mp_exclude.search(m.mountpoint))
        return not skip

    def stat_all(self, targets: list[str]) -> dict[str, os.statvfs_result | OSError | None]:
        """statvfs every path with a deadline each; None marks a path whose stat hangs."""
        assert isinstance(self.options, FilesystemOptions)
        timeout = self.options.stat_timeout
        out: dict[str, os.statvfs_result | OSError | None] = {}
        stuck = self._stuck
        todo = []
        for t in targets:
            if t in stuck:
                out[t] = None  # still hung since an earlier run: do not pile up threads on it
            else:
                todo.append(t)
        while todo:
            batch = _Batch(todo, self._stat, stuck)
            hung: int | None = None
            with batch.cond:
                threading.Thread(target=batch.run, name="statvfs", daemon=True).start()
                while not batch.done:
                    i = batch.current
                    left = (batch.started or time.monotonic()) + timeout - time.monotonic()
                    if left <= 0 and todo[i] not in batch.results:
                        hung = i
                        batch.cancelled = True
                        stuck.add(todo[i])
                        break
                    batch.cond.wait(max(left, 0.01))
                out.update(batch.results)
            if hung is None:
                break
            out[todo[hung]] = None
            todo = todo[hung + 1 :]
        return out

    def collect(self) -> Result:
        assert isinstance(self.options, FilesystemOptions)
        o = self.options
        mounts = [m for m in parse_mounts(read_text(self.paths.proc("mounts"))) if self._wanted(m)]
        if not mounts:
            raise NoData("no real filesystems in /proc/mounts")
        try:
            fstab = parse_fstab(read_text(self.paths.root("/etc/fstab")))
        except NoData:
            fstab = {}
        targets = {m.mountpoint: str(self.paths.root(m.mountpoint)) for m in mounts}
        stats = self.stat_all(list(dict.fromkeys(targets.values())))

        r = Result()
        labels = ("device", "mountpoint", "fstype")
        size = r.metric("diag_filesystem_size_bytes", "Filesystem size.", labels=labels)
        free = r.metric("diag_filesystem_free_bytes", "Free space, the root reserve included.", labels=labels)
        avail = r.metric("diag_filesystem_avail_bytes", "Space available to ordinary users.", labels=labels)
        files = r.metric("diag_filesystem_files", "Inodes the filesystem has.", labels=labels)
        files_free = r.metric("diag_filesystem_files_free", "Inodes still free.", labels=labels)
        ro_m = r.metric("diag_filesystem_readonly", "Whether the filesystem is mounted read-only.", labels=labels)
        err_m = r.metric(
            "diag_filesystem_device_error", "Whether statvfs on the mount failed or hung (1).", labels=labels
        )
        was_rw: dict[str, bool] = {}
        for m in mounts:
            lv = (m.device, m.mountpoint, m.fstype)
            st = stats.get(targets[m.mountpoint])
            if st is None:
                err_m.add(1, *lv)
                r.find(
                    "filesystem_hung",
                    "warning",
                    f"statvfs on {m.mountpoint} ({m.fstype} from {m.device}) hung for over {o.stat_timeout:g} s",
                    subject=m.mountpoint,
                    cause="mount_hung",
                    evidence=[Evidence("file", "/proc/mounts", m.line, {"mountpoint": m.mountpoint})],
                )
                r.gaps.append(Gap(f"statvfs on {m.mountpoint} hung", subjects=frozenset({m.mountpoint})))
                continue
            if isinstance(st, OSError):
                err_m.add(1, *lv)  # vanished or forbidden mount: the figure says so, no finding
                # ... and its fullness was not looked at: an incident about it holds ("not checked")
                r.gaps.append(Gap(f"statvfs on {m.mountpoint} failed: {st}", subjects=frozenset({m.mountpoint})))
                continue
            err_m.add(0, *lv)
            fr = st.f_frsize or st.f_bsize
            total, bfree, bavail = st.f_blocks * fr, st.f_bfree * fr, st.f_bavail * fr
            ro = bool(st.f_flag & os.ST_RDONLY) or "ro" in m.options
            size.add(total, *lv)
            free.add(bfree, *lv)
            avail.add(bavail, *lv)
            files.add(st.f_files, *lv)
            files_free.add(st.f_ffree, *lv)
            ro_m.add(1 if ro else 0, *lv)
            was_rw[m.mountpoint] = not ro
            self._judge_space(r, m, total, bfree, bavail)
            self._judge_inodes(r, m, st.f_files, st.f_ffree)
            if ro:
                self._judge_readonly(r, m, fstab.get(m.mountpoint))
        self._was_rw = was_rw
        return r

    def _df_row(self, m: Mount, total: float, bfree: float, bavail: float) -> tuple[str, float]:
        used = total - bfree
        pct = 100.0 * used / (used + bavail) if used + bavail > 0 else 0.0
        head = f"{'Filesystem':<20} {'Type':<8} {'Size':>6} {'Used':>6} {'Avail':>6} {'Use%':>5} Mounted on"
        row = (
            f"{m.device:<20} {m.fstype:<8} {human(total):>6} {human(used):>6} {human(bavail):>6} "
            f"{pct:>4.0f}% {m.mountpoint}"
        )
        return f"{head}\n{row}", pct

    def _judge_space(self, r: Result, m: Mount, total: float, bfree: float, bavail: float) -> None:
        assert isinstance(self.options, FilesystemOptions)
        if total <= 0:
            return
        table, pct = self._df_row(m, total, bfree, bavail)
        sev: Severity | None = None
        if pct >= self.options.critical_percent:
            sev = "critical"
        elif pct >= self.options.warning_percent:
            sev = "warning"
        if sev is None:
            return
        r.find(
            "filesystem_full",
            sev,
            f"filesystem {m.mountpoint} is {pct:.0f} % full ({human(bavail)} left of {human(total)})",
            subject=m.mountpoint,
            cause="disk_full",
            evidence=[
                Evidence(
                    "text",
                    f"usage of {m.mountpoint} (as df -h shows it)",
                    table,
                    {"size_bytes": total, "free_bytes": bfree, "avail_bytes": bavail, "used_percent": round(pct, 2)},
                )
            ],
        )

    def _judge_inodes(self, r: Result, m: Mount, total: int, ffree: int) -> None:
        assert isinstance(self.options, FilesystemOptions)
        if total <= 0:
            return  # btrfs and some network filesystems do not count inodes
        used = total - ffree
        pct = 100.0 * used / total
        sev: Severity | None = None
        if pct >= self.options.inodes_critical_percent:
            sev = "critical"
        elif pct >= self.options.inodes_warning_percent:
            sev = "warning"
        if sev is None:
            return
        head = f"{'Filesystem':<20} {'Inodes':>10} {'IUsed':>10} {'IFree':>10} {'IUse%':>5} Mounted on"
        row = f"{m.device:<20} {total:>10} {used:>10} {ffree:>10} {pct:>4.0f}% {m.mountpoint}"
        r.find(
            "filesystem_inodes",
            sev,
            f"filesystem {m.mountpoint} has used {pct:.0f} % of its inodes ({ffree} left)",
            subject=m.mountpoint,
            cause="inodes_exhausted",
            evidence=[
                Evidence(
                    "text",
                    f"inodes of {m.mountpoint} (as df -i shows them)",
                    f"{head}\n{row}",
                    {"inodes": total, "inodes_free": ffree, "used_percent": round(pct, 2)},
                )
            ],
        )

    def _judge_readonly(self, r: Result, m: Mount, fstab_opts: tuple[str, ...] | None) -> None:
        why = ""
        if fstab_opts is not None and "ro" in fstab_opts:
            return  # meant to be read-only
        if self._was_rw.get(m.mountpoint):
            why = "it was read-write at the previous run"
        elif "errors=remount-ro" in m.options:
            why = "it is mounted with errors=remount-ro, so the kernel remounted it after an error"
        elif fstab_opts is not None and "ro" not in fstab_opts:
            why = "/etc/fstab mounts it read-write"
        if not why:
            return
        text = f"/proc/mounts: {m.line}"
        if fstab_opts is not None:
            text += f"\n/etc/fstab options for {m.mountpoint}: {','.join(fstab_opts)}"
        r.find(
            "filesystem_readonly",
            "critical",
            f"filesystem {m.mountpoint} is read-only: {why}",
            subject=m.mountpoint,
            cause="filesystem_readonly",
            evidence=[Evidence("file", "/proc/mounts", text, {"mountpoint": m.mountpoint, "options": list(m.options)})],
        )
