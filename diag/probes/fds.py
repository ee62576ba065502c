"""File descriptors: system-wide allocation from /proc/sys/fs/file-nr, and processes close to their limit.

Counting /proc/[pid]/fd of every process is costly on a busy host, so the per-process check first
reads the cheap ``FDSize`` line of /proc/[pid]/status (the size of the fd table, an upper bound of
the open fds that only grows, in powers of two). A table smaller than ``scan_min_fdsize`` is skipped
at once; for the rest the soft ``Max open files`` is read from /proc/[pid]/limits, and the fd
directory is listed only when the table is big enough to reach a threshold.
"""

from __future__ import annotations

import os

from diag.errors import NoData
from diag.model import Evidence, Result, Severity
from diag.probes.base import Probe, ProbeOptions, read_text, register


class FdsOptions(ProbeOptions, kw_only=True):
    system_warning_percent: float = 80.0  # allocated file handles of fs.file-max
    system_critical_percent: float = 95.0
    process_warning_percent: float = 80.0  # open fds of the process' soft RLIMIT_NOFILE
    process_critical_percent: float = 95.0
    process_warning_fds: int = 10000  # a process holding this many fds is worth a look whatever its limit
    scan_processes: bool = True
    scan_min_fdsize: int = 128  # count only processes whose fd table grew past the initial 64 slots


# pid, comm, open fds, soft limit (None = unlimited), the "Max open files" line, FDSize
ProcFds = tuple[int, str, int, float | None, str, int]


def _field(data: bytes, key: bytes) -> bytes | None:
    """The value of ``Key:\\tvalue`` in a /proc/[pid]/status blob, found without splitting all lines."""
    i = data.find(key)
    if i < 0:
        return None
    end = data.find(b"\n", i + len(key))
    return data[i + len(key) : end if end >= 0 else None].strip()


def parse_limit(text: str) -> tuple[float | None, str]:
    """The soft ``Max open files`` of a /proc/[pid]/limits text: (limit or None for unlimited, the line)."""
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files") :].split()[0]
            return (None if soft == "unlimited" else float(soft)), line.strip()
    raise ValueError("no 'Max open files' line")


def fd_kinds(fd_dir: str) -> dict[str, int]:
    """What a process' fds point at (socket, pipe, anon_inode, file...), for the evidence of a finding."""
    kinds: dict[str, int] = {}
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return kinds
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        kind = "file" if target.startswith("/") else target.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


@register
class FdsProbe(Probe):
    name = "fds"
    help = "File handles system-wide and per process against their limits."
    Options = FdsOptions

    def collect(self) -> Result:
        assert isinstance(self.options, FdsOptions)
        o = self.options
        path = self.paths.proc("sys", "fs", "file-nr")
        text = read_text(path)
        try:
            allocated_s, _, maximum_s = text.split()[:3]
            allocated, maximum = float(allocated_s), float(maximum_s)
        except ValueError:
            raise NoData(f"{path}:1: unexpected format {text.strip()[:80]!r}") from None
        r = Result()
        r.metric("diag_filefd_allocated", "File handles the kernel has allocated.").add(allocated)
        r.metric("diag_filefd_maximum", "Most file handles the kernel allocates (fs.file-max).").add(maximum)
        if maximum > 0:
            pct = 100.0 * allocated / maximum
            sev: Severity | None = None
            if pct >= o.system_critical_percent:
                sev = "critical"
            elif pct >= o.system_warning_percent:
                sev = "warning"
            if sev is not None:
                r.find(
                    "filefd_system",
                    sev,
                    f"{allocated:.0f} file handles allocated, {pct:.0f} % of fs.file-max {maximum:.0f}",
                    subject="file-max",
                    cause="fd_exhausted",
                    evidence=[Evidence("file", "/proc/sys/fs/file-nr", text.strip(), {"percent": round(pct, 2)})],
                )
        if o.scan_processes:
            self._processes(r)
        return r

    def scan(self) -> list[ProcFds]:
        """Processes whose fd table is big enough to matter, with their open fds and soft limit."""
        assert isinstance(self.options, FdsOptions)
        proc = str(self.paths.procfs)
        min_size = self.options.scan_min_fdsize
        absolute = self.options.process_warning_fds
        ratio = self.options.process_warning_percent / 100.0
        out: list[ProcFds] = []
        for name in os.listdir(proc):
            if not name.isdigit():
                continue
            base = f"{proc}/{name}"
            try:
                with open(base + "/status", "rb") as f:
                    status = f.read()
                size_b = _field(status, b"\nFDSize:")
                if size_b is None or int(size_b) < min_size:
                    continue  # kernel threads have no FDSize; small tables hold few fds
                size = int(size_b)
                with open(base + "/limits", encoding="ascii", errors="replace") as f:
                    soft, line = parse_limit(f.read())
                # a process holds at most FDSize fds: count only if that could reach a threshold
                if size < absolute and (soft is None or size < soft * ratio):
                    continue
                n = len(os.listdir(base + "/fd"))
            except (OSError, ValueError):
                continue  # exited mid-scan, or not ours to read: skip
            comm = (_field(status, b"Name:") or b"?").decode("utf-8", "replace")
            out.append((int(name), comm, n, soft, line, size))
        return out

    def _processes(self, r: Result) -> None:
        assert isinstance(self.options, FdsOptions)
        o = self.options
        rows = self.scan()
        r.metric("diag_filefd_processes_scanned", "Processes whose fd table was big enough to be counted.").add(
            len(rows)
        )
        worst_ratio = 0.0
        # one finding per program name: a hundred workers of one server near their limit are one problem
        flagged: dict[str, tuple[int, Severity, float, ProcFds]] = {}
        for row in rows:
            _pid, comm, n, soft, _line, _size = row
            ratio = n / soft if soft else 0.0
            worst_ratio = max(worst_ratio, ratio)
            pct = 100.0 * ratio
            sev: Severity | None = None
            if soft and pct >= o.process_critical_percent:
                sev = "critical"
            elif (soft and pct >= o.process_warning_percent) or n >= o.process_warning_fds:
                sev = "warning"
            if sev is None:
                continue
            rank = (2 if sev == "critical" else 1, ratio)
            prev = flagged.get(comm)
            if prev is None or rank > (prev[0], prev[2]):
                flagged[comm] = (rank[0], sev, ratio, row)
        r.metric(
            "diag_filefd_process_usage_ratio", "Highest share of its soft fd limit that a counted process holds."
        ).add(worst_ratio)
        proc = str(self.paths.procfs)
        for comm, (_rank, sev, ratio, (pid, _c, n, soft, line, size)) in flagged.items():
            limit = "unlimited" if soft is None else f"{soft:.0f}"
            kinds = fd_kinds(f"{proc}/{pid}/fd")
            kinds_text = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
            r.find(
                "filefd_process",
                sev,
                f"process {comm} (pid {pid}) holds {n} file descriptors, {100 * ratio:.0f} % of its limit {limit}",
                subject=comm,
                cause="fd_exhausted",
                evidence=[
                    Evidence(
                        "file",
                        f"/proc/{pid}/fd and /proc/{pid}/limits",
                        f"open fds: {n} ({kinds_text})\nFDSize: {size}\n{line}",
                        {"pid": pid, "comm": comm, "fds": n, "soft_limit": soft, "kinds": kinds},
                    )
                ],
            )
