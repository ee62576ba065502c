"""The log scanner: follows log files and the systemd journal, counts pattern matches, keeps matching lines as evidence.

Sources are files (default: the usual syslog files that exist here) and the journal when ``journalctl``
and journal files are present. Where each source was read up to is remembered in a small JSON file in
the state directory, written atomically, so a restarted agent neither re-reports old lines nor misses
new ones. Rotation is followed by inode: when a file's inode changes (or the file shrinks), the rotated
file that still has the old inode (``path.1``, ``path-20240101``...) is read to its end first, then the
new file from its start. On the very first run every file is taken from its end, so years of history do
not turn into a flood of findings (``from_start: true`` reads them instead). A run reads at most
``max_bytes`` in all, shared between the sources, so a runaway log cannot stall the agent; the rest is
read on the following runs (``diag_log_backlog_bytes`` shows how much is left).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Gap, Result, Severity
from diag.probes.base import Paths, Probe, ProbeOptions, register, run_command
from diag.secrets import mask

log = logging.getLogger(__name__)

DEFAULT_FILES = ["/var/log/syslog", "/var/log/kern.log", "/var/log/messages", "/var/log/auth.log"]
JOURNAL = "journal"  # the source label of the systemd journal
STATE_FILE = "logscan.json"
STATE_VERSION = 1
EVIDENCE_LINES = 20  # matching lines kept per pattern and run
LINE_CAP = 1000  # characters of one evidence line


class LogPattern(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A named regular expression; a line that matches it counts, and the lines become evidence."""

    name: str
    regex: str
    severity: Severity = "warning"
    cause: str | None = None
    summary: str = ""  # what a match means, for the finding's summary

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", self.name):
            raise ValueError(f"pattern name {self.name!r} must be letters, digits and _")
        try:
            re.compile(self.regex)
        except re.error as e:
            raise ValueError(f"pattern {self.name!r}: invalid regex: {e}") from None


DEFAULT_PATTERNS = [
    LogPattern(
        name="oom_kill",
        regex=r"Out of memory: Killed process|oom-kill:|invoked oom-killer",
        severity="critical",
        cause="memory_exhausted",
        summary="the kernel OOM killer killed processes",
    ),
    LogPattern(
        name="io_error",
        regex=r"I/O error|blk_update_request|Buffer I/O error",
        severity="critical",
        cause="disk_io_error",
        summary="the kernel reported disk I/O errors",
    ),
    LogPattern(
        name="segfault",
        regex=r"segfault at",
        severity="warning",
        cause="process_crash",
        summary="processes crashed with a segmentation fault",
    ),
    LogPattern(
        name="fs_error",
        # ext4 writes "Remounting", others "remounting"; two literals search much faster than (?i:...)
        regex=r"EXT4-fs error|XFS .* error|Remounting filesystem read-only|remounting filesystem read-only",
        severity="critical",
        cause="filesystem_error",
        summary="the kernel reported filesystem errors",
    ),
    LogPattern(
        name="auth_failure",
        regex=r"authentication failure|Failed password|Invalid user",
        severity="warning",
        cause="auth_failure",
        summary="logins failed authentication",
    ),
    LogPattern(
        name="hung_task",
        regex=r"blocked for more than",
        severity="warning",
        cause="hung_task",
        summary="tasks hung in the kernel (blocked for more than the hung-task timeout)",
    ),
]


class LogscanOptions(ProbeOptions, kw_only=True):
    files: list[str] = msgspec.field(
        default_factory=lambda: list(DEFAULT_FILES)
    )  # files that do not exist here are skipped
    journal: bool = True  # also read the systemd journal when journalctl and a journal exist
    journal_directory: str | None = None  # a journal directory to read instead of the system journal
    default_patterns: bool = True  # oom_kill, io_error, segfault, fs_error, auth_failure, hung_task
    patterns: list[LogPattern] = []  # more patterns; one with a default's name replaces that default
    from_start: bool = False  # on the very first run read existing files from their start
    max_bytes: int = 8 * 2**20  # read at most this much per run, shared between the sources

    def __post_init__(self) -> None:
        if self.max_bytes < 4096:
            raise ValueError("max_bytes must be at least 4096")

    def all_patterns(self) -> list[LogPattern]:
        by_name = {p.name: p for p in DEFAULT_PATTERNS} if self.default_patterns else {}
        by_name.update({p.name: p for p in self.patterns})
        return list(by_name.values())


@dataclass(slots=True)
class _Compiled:
    spec: LogPattern
    regexes: list[re.Pattern[str]]
    matches: int = 0
    lines: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=EVIDENCE_LINES))
    sources: dict[str, int] = field(default_factory=dict)


def cap_line(line: str) -> str:
    """Mask revealed secrets and cap a line so one giant line cannot bloat evidence."""
    line = mask(line.rstrip("\r"))
    return line if len(line) <= LINE_CAP else line[:LINE_CAP] + f"... [{len(line) - LINE_CAP} more characters]"


def split_alternatives(regex: str) -> list[str]:
    """Split a regex at its top-level ``|``: ``a|b(c|d)`` -> ``["a", "b(c|d)"]``.

    Python's re searches a pattern that starts with a literal with a fast substring scan, but tries an
    alternation at every position: on 8 MiB of log, "I/O error|blk_update_request|Buffer I/O error" takes
    ~50 ms as one pattern and ~10 ms as three. A line matches the whole iff it matches one of the parts.
    Patterns whose parts cannot stand alone (global inline flags, back references) are kept whole.
    """
    if re.match(r"\(\?[aiLmsux]+\)", regex) or re.search(r"\\[1-9]|\(\?P=", regex):
        return [regex]
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if regex[i + 1 : i + 2] == "^":
                i += 1
            if regex[i + 1 : i + 2] == "]":  # a ] right after [ or [^ is a literal
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(regex[start:i])
            start = i + 1
        i += 1
    parts.append(regex[start:])
    try:
        for part in parts:
            re.compile(part)
    except re.error:
        return [regex]
    return parts


def scan_text(text: str, source: str, patterns: list[_Compiled]) -> None:
    """Count the lines of ``text`` that match each pattern and keep the last ones as evidence.

    Each pattern runs over the whole chunk in C (``finditer``) rather than line by line in Python,
    which keeps an 8 MiB read in the tens of milliseconds; a line counts once per pattern.
    """
    for p in patterns:
        lines: dict[int, int] = {}  # start -> end of each matching line
        for rx in p.regexes:
            for m in rx.finditer(text):
                start = text.rfind("\n", 0, m.start()) + 1
                if start not in lines:
                    end = text.find("\n", m.end())
                    lines[start] = end if end >= 0 else len(text)
        if not lines:
            continue
        p.matches += len(lines)
        p.sources[source] = p.sources.get(source, 0) + len(lines)
        for start in sorted(lines)[-EVIDENCE_LINES:]:
            p.lines.append((source, text[start : lines[start]]))


@dataclass(slots=True)
class _Run:
    """What one collect() read: bytes and lines per source, budget left, sources seen."""

    budget: int
    bytes_read: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    up: dict[str, bool] = field(default_factory=dict)

    def add(self, source: str, n: int) -> None:
        self.bytes_read[source] = self.bytes_read.get(source, 0) + n
        self.budget -= n


def _read_chunk(path: Path, offset: int, limit: int, final: bool) -> tuple[bytes, int]:
    """Read up to ``limit`` bytes from ``offset``; return complete lines and the new offset.

    A partial last line is left for the next run, unless it ends a ``final`` file (a rotated file nobody
    writes any more). A single line longer than ``limit`` is taken as it is, so it can never block the reader.
    """
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(limit)
    if not data:
        return b"", offset
    at_end = len(data) < limit
    if data.endswith(b"\n") or (final and at_end):
        return data, offset + len(data)
    cut = data.rfind(b"\n")  # the budget or the writer stopped mid-line: keep that line for later
    if cut >= 0:
        data = data[: cut + 1]
    elif at_end:
        return b"", offset  # one unfinished line: wait for its end
    return data, offset + len(data)


@register
class LogscanProbe(Probe):
    name = "logscan"
    help = "Log files and the journal: pattern matches counted, matching lines kept as evidence."
    Options = LogscanOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        assert isinstance(options, LogscanOptions)
        self.patterns = options.all_patterns()
        self._compiled = [[re.compile(part) for part in split_alternatives(p.regex)] for p in self.patterns]
        self.state_path = paths.state / STATE_FILE
        self.state = self._load_state()

    # --- state -------------------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            # A corrupt state file must not stop log scanning: start over from the ends of the files.
            log.warning("%s: unreadable logscan state (%s); starting from the end of the logs", self.state_path, e)
            return {}
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            log.warning("%s: unknown logscan state version; starting from the end of the logs", self.state_path)
            return {}
        return raw

    def _save_state(self) -> None:
        """Write the state next to its final name and rename it over, so a crash never leaves half a file."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".logscan.", suffix=".tmp", dir=self.state_path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.state, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # --- collect -----------------------------------------------------------------------------------------

    def collect(self) -> Result:
        assert isinstance(self.options, LogscanOptions)
        o = self.options
        first_run = not self.state
        self.state.setdefault("version", STATE_VERSION)
        files_state: dict[str, dict[str, Any]] = self.state.setdefault("files", {})
        counts: dict[str, dict[str, int]] = self.state.setdefault("counts", {})
        bytes_total: dict[str, int] = self.state.setdefault("bytes", {})

        sources = [f for f in o.files if self.paths.root(f).exists() or f in files_state]
        journal_dir = self._journal_dir() if o.journal else None
        if journal_dir is not None:
            sources.append(JOURNAL)
        if not sources:
            raise NoData("none of the log files exist and there is no journal here")

        compiled = [_Compiled(spec, rx) for spec, rx in zip(self.patterns, self._compiled, strict=True)]
        run = _Run(budget=o.max_bytes)
        share = max(4096, o.max_bytes // len(sources))  # each source gets a fair share of the budget
        for src in sources:
            limit = min(share, run.budget)
            if limit <= 0:
                break
            if src == JOURNAL:
                assert journal_dir is not None
                self._read_journal(journal_dir, limit, run, compiled)
            else:
                self._read_file(src, files_state, first_run, limit, run, compiled)

        for p in compiled:
            per = counts.setdefault(p.spec.name, {})
            for src, n in p.sources.items():
                per[src] = per.get(src, 0) + n
        for src, n in run.bytes_read.items():
            bytes_total[src] = bytes_total.get(src, 0) + n
        self._save_state()
        return self._result(compiled, run, sources)

    def _result(self, compiled: list[_Compiled], run: _Run, sources: list[str]) -> Result:
        counts: dict[str, dict[str, int]] = self.state["counts"]
        r = Result()
        matches = r.metric(
            "diag_log_matches_total",
            "Log lines that matched a pattern, by pattern and source (kept across agent restarts).",
            "counter",
            ("pattern", "source"),
        )
        for p in compiled:
            per = counts.get(p.spec.name, {})
            # the sources of this run only: a file taken out of the config stops being exported
            for src in sources:
                matches.add(per.get(src, 0), p.spec.name, src)
        read = r.metric(
            "diag_log_bytes_read_total",
            "Bytes of log read, by source (kept across agent restarts).",
            "counter",
            ("source",),
        )
        for src in sources:
            read.add(self.state["bytes"].get(src, 0), src)
        backlog = r.metric(
            "diag_log_backlog_bytes", "Bytes of log not read yet because of the per-run read limit.", labels=("source",)
        )
        up = r.metric(
            "diag_log_source_up",
            "Whether the log source could be read on the last run (1) or not (0).",
            labels=("source",),
        )
        for src in sources:
            if src in run.up:
                up.add(1.0 if run.up[src] else 0.0, src)
                backlog.add(run.backlog.get(src, 0), src)
                if not run.up[src]:  # its new lines were not read: no match there is not "no more errors"
                    r.gaps.append(Gap(f"log source {src} could not be read"))

        for p in compiled:
            if not p.matches:
                continue
            where = ", ".join(f"{s} ({n})" for s, n in sorted(p.sources.items()))
            several = len(p.sources) > 1
            text = "\n".join(f"{s}: {cap_line(line)}" if several else cap_line(line) for s, line in p.lines)
            ev = Evidence(
                "log",
                f"last {len(p.lines)} of {p.matches} line(s) matching {p.spec.name}",
                text,
                {"pattern": p.spec.regex, "matches": p.matches, "sources": dict(p.sources)},
            )
            what = p.spec.summary or f"log lines matched {p.spec.name}"
            r.find(
                f"log_{p.spec.name}",
                p.spec.severity,
                f"{what}: {p.matches} matching line(s) in {where}",
                subject=p.spec.name,
                cause=p.spec.cause,
                evidence=[ev],
            )
        return r

    # --- files -------------------------------------------------------------------------------------------

    def _read_file(
        self,
        src: str,
        files_state: dict[str, dict[str, Any]],
        first_run: bool,
        limit: int,
        run: _Run,
        compiled: list[_Compiled],
    ) -> None:
        assert isinstance(self.options, LogscanOptions)
        path = self.paths.root(src)
        st_prev = files_state.get(src)
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as e:
            log.warning("logscan: cannot stat %s: %s", path, e.strerror)
            run.up[src] = False
            return
        try:
            if st_prev is None:
                if st is None:
                    return
                # Never seen: on the very first run start at the end (old history is not news), but a
                # file that appears later is new and is read from its start.
                start = 0 if (self.options.from_start or not first_run) else st.st_size
                files_state[src] = {"inode": st.st_ino, "dev": st.st_dev, "offset": start}
                st_prev = files_state[src]
                if start == st.st_size:
                    run.up[src] = True
                    return

            # Rotated files not read to their end yet (the read budget ran out), oldest first.
            pending: list[dict[str, Any]] = st_prev.setdefault("rotated", [])
            rotated = (
                st is None
                or st.st_ino != st_prev["inode"]
                or st.st_dev != st_prev["dev"]
                or st.st_size < st_prev["offset"]
            )
            if rotated:
                # Finish the file we were reading, if it is still around under a rotated name.
                old = self._find_rotated(path, st_prev["inode"], st_prev["dev"])
                if old is not None:
                    pending.append({"path": str(old), "inode": st_prev["inode"], "offset": st_prev["offset"]})
                    for mid in self._rotated_since(path, old, st.st_ino if st is not None else None):
                        pending.append({"path": str(mid), "inode": mid.stat().st_ino, "offset": 0})
                if st is not None:
                    st_prev.update(inode=st.st_ino, dev=st.st_dev, offset=0)
                else:
                    st_prev.update(inode=-1, dev=-1, offset=0)  # gone: read its successor from the start
            while pending and limit > 0:
                limit, done = self._finish_rotated(src, pending[0], limit, run, compiled)
                if not done:
                    break
                pending.pop(0)
            if st is None:
                run.up.setdefault(src, True)
                return
            if limit > 0 and not pending:
                data, new_offset = _read_chunk(path, st_prev["offset"], limit, final=False)
                if data:
                    run.add(src, len(data))
                    scan_text(data.decode("utf-8", errors="replace"), src, compiled)
                st_prev["offset"] = new_offset
            run.backlog[src] = max(0, st.st_size - st_prev["offset"])
            run.up[src] = True
        except OSError as e:
            log.warning("logscan: cannot read %s: %s", path, e.strerror or e)
            run.up[src] = False

    def _finish_rotated(
        self, src: str, pending: dict[str, Any], limit: int, run: _Run, compiled: list[_Compiled]
    ) -> tuple[int, bool]:
        """Read a rotated file on from where we left off; (budget left, whether it is finished)."""
        old = Path(pending["path"])
        try:
            ost = old.stat()
        except FileNotFoundError:
            ost = None
        if ost is None or ost.st_ino != pending["inode"]:
            # Renamed again (path.1 -> path.2) or deleted: look for it once more by inode.
            found = self._find_rotated(self.paths.root(src), pending["inode"], None)
            if found is None:
                log.info("logscan: rotated file of %s is gone; continuing with the newer one", src)
                return limit, True
            old, ost = found, found.stat()
            pending["path"] = str(found)
        data, new_offset = _read_chunk(old, pending["offset"], limit, final=True)
        if data:
            run.add(src, len(data))
            scan_text(data.decode("utf-8", errors="replace"), src, compiled)
        pending["offset"] = new_offset
        return limit - len(data), new_offset >= ost.st_size

    @staticmethod
    def _siblings(path: Path) -> list[Path]:
        """Rotated versions of ``path`` next to it (path.1, path.2, path-20251123), compressed ones left out."""
        with contextlib.suppress(OSError):
            return sorted(
                p
                for p in path.parent.iterdir()
                if p.name.startswith((path.name + ".", path.name + "-")) and not p.name.endswith((".gz", ".xz", ".zst"))
            )
        return []

    def _find_rotated(self, path: Path, inode: int, dev: int | None) -> Path | None:
        """The file next to ``path`` that has ``inode``: path.1 first, then any other rotated sibling."""
        for c in [path.with_name(path.name + ".1"), *self._siblings(path)]:
            try:
                st = c.stat()
            except OSError:
                continue
            if st.st_ino == inode and (dev is None or st.st_dev == dev):
                return c
        return None

    def _rotated_since(self, path: Path, old: Path, current_inode: int | None) -> list[Path]:
        """Files rotated after ``old`` that we never saw (the log rotated twice between two runs), oldest first.

        They are the siblings written to after ``old`` was: with numbered rotation path.N is older
        than path.N-1, so equal timestamps (the kernel's are coarse) order by the number, highest first.
        """
        try:
            ost = old.stat()
        except OSError:
            return []
        newer: list[tuple[int, int, str, Path]] = []
        for c in self._siblings(path):
            try:
                st = c.stat()
            except OSError:
                continue
            if st.st_ino in (ost.st_ino, current_inode) or st.st_mtime_ns < ost.st_mtime_ns:
                continue
            suffix = c.name[len(path.name) + 1 :]
            newer.append((st.st_mtime_ns, -int(suffix) if suffix.isdigit() else 0, c.name, c))
        return [c for *_, c in sorted(newer)]

    # --- journal -----------------------------------------------------------------------------------------

    def _journal_dir(self) -> Path | None:
        """The journal directory to read, or None when there is no journalctl or no journal file."""
        assert isinstance(self.options, LogscanOptions)
        if shutil.which("journalctl") is None:
            return None
        if self.options.journal_directory:
            dirs = [Path(self.options.journal_directory)]
        else:
            dirs = [self.paths.root("/var/log/journal"), self.paths.root("/run/log/journal")]
        for d in dirs:
            with contextlib.suppress(OSError):
                if any(d.glob("*.journal")) or any(d.glob("*/*.journal")):
                    return d
        return None

    def _journal_argv(self, journal_dir: Path) -> list[str]:
        assert isinstance(self.options, LogscanOptions)
        argv = ["journalctl", "--no-pager", "--quiet"]
        if self.options.journal_directory or self.paths.rootfs != Path("/"):
            argv.append(f"--directory={journal_dir}")
        return argv

    def _read_journal(self, journal_dir: Path, limit: int, run: _Run, compiled: list[_Compiled]) -> None:
        assert isinstance(self.options, LogscanOptions)
        jstate: dict[str, Any] = self.state.setdefault("journal", {})
        cursor = jstate.get("cursor")
        argv = self._journal_argv(journal_dir)
        if cursor is None and not self.options.from_start:
            # Start at the end: remember the cursor of the newest entry and read nothing. (Also when the
            # journal shows up after the first run: its history is not news either.)
            try:
                proc = run_command([*argv, "-n", "1", "--output=json", "--output-fields=MESSAGE"], self.options.timeout)
            except (NoData, ProbeError) as e:
                log.warning("logscan: journal: %s", e)
                run.up[JOURNAL] = False
                return
            entries = [e for e in parse_journal_json(proc.stdout.encode()) if isinstance(e.get("__CURSOR"), str)]
            run.up[JOURNAL] = proc.returncode == 0
            if entries:
                jstate["cursor"] = entries[-1]["__CURSOR"]
            return
        args = [*argv, "--output=json", "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_PID"]
        if cursor:
            args.append(f"--after-cursor={cursor}")
        try:
            # half the probe's timeout: the files are read in the same run, and what is left comes next run
            lines, last_cursor, nread, ok = _stream_journal(args, limit, self.options.timeout / 2)
        except OSError as e:
            log.warning("logscan: cannot run journalctl: %s", e)
            run.up[JOURNAL] = False
            return
        run.up[JOURNAL] = ok
        if last_cursor:
            jstate["cursor"] = last_cursor
        elif not ok and cursor:
            # journalctl refused the cursor (a journal from another machine, a corrupt state): asking again
            # would fail forever, so start over from the end of the journal on the next run.
            log.warning("logscan: journalctl failed after cursor %s; starting again from the end", cursor[:40])
            jstate.pop("cursor", None)
        run.add(JOURNAL, nread)
        if lines:
            scan_text("\n".join(lines), JOURNAL, compiled)


def _message(entry: dict[str, Any]) -> str:
    """An entry's text as syslog would show it; a binary MESSAGE comes as a list of byte values."""
    msg = entry.get("MESSAGE", "")
    if isinstance(msg, list):
        msg = bytes(b for b in msg if isinstance(b, int) and 0 <= b < 256).decode("utf-8", errors="replace")
    elif not isinstance(msg, str):
        msg = str(msg)
    ident = entry.get("SYSLOG_IDENTIFIER")
    pid = entry.get("_PID")
    if isinstance(ident, str):
        return f"{ident}[{pid}]: {msg}" if isinstance(pid, str) else f"{ident}: {msg}"
    return msg


def parse_journal_json(data: bytes) -> list[dict[str, Any]]:
    """``journalctl --output=json``: one JSON object per line; lines that are not JSON are skipped."""
    out = []
    for raw in data.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _stream_journal(argv: list[str], limit: int, timeout: float) -> tuple[list[str], str | None, int, bool]:
    """Run journalctl, read entries until ``limit`` bytes or ``timeout``; kill it if it has more.

    Returns (messages, cursor of the last entry read, bytes read, ok). Each JSON entry carries its own
    cursor, so stopping early loses nothing: the next run continues after the last entry read.
    """
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    messages: list[str] = []
    cursor: str | None = None
    nread = 0
    buf = b""
    done = False
    ok = True
    try:
        fd = proc.stdout.fileno()
        while nread < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("logscan: journalctl did not finish within %g s; continuing next run", timeout)
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                done = True
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                nread += len(raw) + 1
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    messages.append(_message(entry))
                    c = entry.get("__CURSOR")
                    if isinstance(c, str):
                        cursor = c
                if nread >= limit:
                    break
    finally:
        if done:
            # EOF comes when journalctl closes its output on exit, a moment before it can be reaped: give it
            # that moment instead of killing it and calling a clean run a failure (seen under load).
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    if done and proc.returncode not in (0, None):
        ok = False
    return messages, cursor, nread, ok
