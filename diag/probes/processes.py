"""Processes by state, threads and PID limits from a scan of /proc/[pid]/stat; zombies and D-state findings.

The top consumers by CPU (share of one core since the previous run) and by resident memory are kept
as evidence on the findings, so whoever reads "12 processes stuck in D state" also sees who was busy.
Processes that exit while the scan runs are normal and skipped.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable

from diag.errors import NoData
from diag.model import Evidence, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

# Documentation/filesystems/proc.rst, table 1-4 (state letters); always exported so series are stable
STATES = ("R", "S", "D", "Z", "T", "t", "X", "I", "P", "W", "K")


class ProcessesOptions(ProbeOptions, kw_only=True):
    zombies_warning: int = 5  # more zombies than this: a parent does not reap its children
    uninterruptible_warning: int = 5  # more processes than this in D state: usually storage or NFS stalls
    top: int = 5  # rows in the top-consumer tables kept as evidence


# pid, comm, state, ppid, cpu ticks (utime+stime), rss pages, start time, threads
Row = tuple[int, bytes, str, int, int, int, int, int]


def parse_stat(data: bytes) -> tuple[bytes, list[bytes]]:
    """``pid (comm) S ppid ...`` -> (comm, fields after comm); comm may hold spaces and parentheses."""
    close = data.rfind(b")")
    return data[data.find(b"(") + 1 : close], data[close + 2 :].split()


@register
class ProcessesProbe(Probe):
    name = "processes"
    help = "Processes by state, threads, PID limits; zombie and uninterruptible (D) findings with top consumers."
    Options = ProcessesOptions

    def __init__(self, options: ProbeOptions, paths: Paths, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(options, paths)
        self._clock = clock  # injectable so a test can replay two recorded scans a known time apart
        self._hz = float(os.sysconf("SC_CLK_TCK"))
        self._page = float(os.sysconf("SC_PAGE_SIZE"))
        self._last: dict[tuple[int, int], int] = {}  # (pid, start time) -> cpu ticks; pid reuse is not confused
        self._last_at = 0.0

    def scan(self) -> list[Row]:
        proc = str(self.paths.procfs)
        rows: list[Row] = []
        try:
            names = os.listdir(proc)
        except OSError as e:
            raise NoData(f"{proc}: {e.strerror}") from None
        for name in names:
            if not name.isdigit():
                continue
            try:
                with open(f"{proc}/{name}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue  # exited since listdir: normal
            comm, fields = parse_stat(data)
            try:
                rows.append(
                    (
                        int(name),
                        comm,
                        fields[0].decode("ascii", "replace"),
                        int(fields[1]),
                        int(fields[11]) + int(fields[12]),
                        int(fields[21]),
                        int(fields[19]),
                        int(fields[17]),
                    )
                )
            except (IndexError, ValueError):
                continue  # not a stat line we understand (a foreign or future format): skip that process
        return rows

    def _read_int(self, *parts: str) -> float | None:
        try:
            return float(read_text(self.paths.proc(*parts)).split()[0])
        except (NoData, ValueError, IndexError):
            return None

    def collect(self) -> Result:
        assert isinstance(self.options, ProcessesOptions)
        o = self.options
        rows = self.scan()
        now = self._clock()
        if not rows:
            raise NoData(f"no processes under {self.paths.procfs}")
        counts = dict.fromkeys(STATES, 0)
        threads = 0
        cpu_now: dict[tuple[int, int], int] = {}
        for row in rows:
            counts[row[2]] = counts.get(row[2], 0) + 1
            cpu_now[(row[0], row[6])] = row[4]
            threads += row[7]

        r = Result()
        by_state = r.metric("diag_processes_state", "Processes in each scheduler state.", labels=("state",))
        for state, n in counts.items():
            by_state.add(n, state)
        r.metric("diag_processes", "Processes that exist right now.").add(len(rows))
        r.metric("diag_processes_threads", "Threads of all processes.").add(threads)
        pid_max = self._read_int("sys", "kernel", "pid_max")
        if pid_max is not None:
            r.metric("diag_processes_pid_max", "Highest PID the kernel hands out plus one.").add(pid_max)
        threads_max = self._read_int("sys", "kernel", "threads-max")
        if threads_max is not None:
            r.metric("diag_processes_threads_max", "Most threads the kernel allows.").add(threads_max)

        # CPU share per process since the previous run (of one core), for the top-consumer evidence
        span = now - self._last_at
        cpu_pct: dict[int, float] = {}
        if self._last and span > 0:
            for row in rows:
                before = self._last.get((row[0], row[6]))
                if before is not None:
                    cpu_pct[row[0]] = 100.0 * (row[4] - before) / self._hz / span
        self._last, self._last_at = cpu_now, now

        zombies, blocked = counts.get("Z", 0), counts.get("D", 0)
        if zombies > o.zombies_warning or blocked > o.uninterruptible_warning:
            top = self._top_evidence(rows, cpu_pct)
            by_pid = {row[0]: row for row in rows}
            if zombies > o.zombies_warning:
                self._zombie_finding(r, rows, by_pid, zombies, top)
            if blocked > o.uninterruptible_warning:
                self._blocked_finding(r, rows, blocked, top)
        return r

    def _top_evidence(self, rows: list[Row], cpu_pct: dict[int, float]) -> list[Evidence]:
        assert isinstance(self.options, ProcessesOptions)
        n = self.options.top
        head = f"{'PID':>7} {'COMM':<16} S {'RSS':>10} {'CPU%':>6}"

        def line(row: Row) -> str:
            cpu = cpu_pct.get(row[0])
            rss = row[5] * self._page / 2**20
            cpu_s = f"{cpu:6.1f}" if cpu is not None else f"{'-':>6}"
            return f"{row[0]:>7} {row[1].decode('utf-8', 'replace'):<16.16} {row[2]} {rss:>8.1f}Mi {cpu_s}"

        ev = []
        if cpu_pct:
            by_cpu = heapq.nlargest(n, rows, key=lambda row: cpu_pct.get(row[0], 0.0))
            ev.append(Evidence("text", f"top {n} processes by CPU", "\n".join([head, *map(line, by_cpu)])))
        by_rss = heapq.nlargest(n, rows, key=lambda row: row[5])
        ev.append(Evidence("text", f"top {n} processes by memory (RSS)", "\n".join([head, *map(line, by_rss)])))
        return ev

    def _zombie_finding(self, r: Result, rows: list[Row], by_pid: dict[int, Row], n: int, top: list[Evidence]) -> None:
        # the parent is what needs fixing (it does not call wait()), so the evidence leads with the parents
        zombies: dict[int, list[Row]] = {}
        for row in sorted(rows):
            if row[2] == "Z":
                zombies.setdefault(row[3], []).append(row)

        def name(pid: int) -> str:
            row = by_pid.get(pid)
            return row[1].decode("utf-8", "replace") if row else "?"

        ranked = sorted(zombies.items(), key=lambda kv: -len(kv[1]))
        lines = [f"{'PPID':>7} {'PARENT':<16} {'ZOMBIES':>7} PIDS"]
        for ppid, kids in ranked[:20]:
            pids = " ".join(str(k[0]) for k in kids[:10]) + (" ..." if len(kids) > 10 else "")
            lines.append(f"{ppid:>7} {name(ppid):<16.16} {len(kids):>7} {pids}")
        worst, worst_kids = ranked[0]
        r.find(
            "zombie_processes",
            "warning",
            f"{n} zombie processes; parent {name(worst)} (pid {worst}) has not reaped {len(worst_kids)} of them",
            subject="zombies",
            cause="zombie_processes",
            evidence=[
                Evidence(
                    "text",
                    "parents of zombie processes (state Z)",
                    "\n".join(lines),
                    {"parents": {ppid: [k[0] for k in kids] for ppid, kids in ranked}},
                ),
                *top,
            ],
        )

    def _blocked_finding(self, r: Result, rows: list[Row], n: int, top: list[Evidence]) -> None:
        proc = str(self.paths.procfs)
        lines = [f"{'PID':>7} {'COMM':<16} WCHAN"]
        for row in sorted(rows):
            if row[2] == "D" and len(lines) <= 20:
                try:  # where in the kernel it sleeps: io_schedule, nfs_wait_bit..., a storage hint
                    with open(f"{proc}/{row[0]}/wchan", "rb") as f:
                        wchan = f.read().decode("ascii", "replace") or "?"
                except OSError:
                    wchan = "?"
                lines.append(f"{row[0]:>7} {row[1].decode('utf-8', 'replace'):<16.16} {wchan}")
        r.find(
            "processes_uninterruptible",
            "warning",
            f"{n} processes in uninterruptible sleep (D state), usually waiting on storage or NFS",
            subject="uninterruptible",
            cause="storage_slow",
            evidence=[Evidence("text", "processes in state D", "\n".join(lines)), *top],
        )
