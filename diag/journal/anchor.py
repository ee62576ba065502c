"""Anchors of the journal's head outside its file: one line per anchor in a sink (a file on another mount, or syslog).

A line reads ``diag-journal-anchor v1 time=2026-12-07T04:00:00Z journal=/var/lib/diag/journal.db seq=812
head=<hash>``. Whoever can rewrite ``journal.db`` cannot take back what was appended elsewhere, so
:func:`check` finds a tail that was cut off (the journal ends before an anchored record) and a chain that was
recomputed (an anchored record's hash changed). The agent appends an anchor every ``anchor_interval`` seconds
when the head moved (:class:`Anchorer`), and exposes the head as ``diag_journal_head_*`` metrics.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diag.journal import Journal, Problem

log = logging.getLogger(__name__)

MARK = "diag-journal-anchor v1"
_LINE = re.compile(MARK + r" time=(\S+) journal=(\S+) seq=([0-9]+) head=([0-9a-f]{64})")


@dataclass(slots=True)
class Anchor:
    time: str
    journal: str
    seq: int
    head: str
    where: str  # FILE:LINE of the anchor

    def __str__(self) -> str:
        return f"the anchor of {self.time} ({self.where})"


def line(journal: Journal) -> str:
    seq, head = journal.head_record()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"{MARK} time={stamp} journal={journal.path} seq={seq} head={head}"


def write(sink: str, text: str) -> None:
    """Append one anchor line to ``sink``: a file path (fsynced) or ``syslog`` (the local syslog/journald)."""
    if sink == "syslog":
        import syslog

        syslog.openlog("diag", 0, syslog.LOG_AUTHPRIV)
        syslog.syslog(syslog.LOG_INFO, text)
        return
    fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def parse(path: Path) -> list[Anchor]:
    """Every anchor line in a file (a sink file, or a syslog export: other lines are skipped)."""
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, text in enumerate(f, 1):
            m = _LINE.search(text)
            if m:
                out.append(Anchor(m.group(1), m.group(2), int(m.group(3)), m.group(4), f"{path}:{n}"))
    return out


def check(journal: Journal, anchors: Iterable[Anchor]) -> list[Problem]:
    """Each anchored record must still be there with the hash the anchor saw."""
    from diag.journal import Problem

    found = list(anchors)
    mine = [a for a in found if a.journal == str(journal.path)]
    problems: list[Problem] = []
    last_seq, _ = journal.head_record()
    for a in mine or found:  # a copy of a journal is checked against the original's anchors
        if a.seq == 0:
            continue
        stored = journal.hash_of(a.seq)
        if stored is None:
            if a.seq > last_seq:
                reason = f"the journal ends at record {last_seq}, but {a} saw record {a.seq}: its tail was removed"
            else:
                reason = f"{a} saw this record, which is missing now"
            problems.append(Problem(a.seq, reason))
        elif stored != a.head:
            problems.append(
                Problem(a.seq, f"its hash differs from {a}: the journal was rewritten (re-chained) after it")
            )
    return problems


class Anchorer:
    """The agent's part: append the head to the sink periodically (when it moved), and expose it as metrics."""

    def __init__(self, journal: Journal, sink: str | None, interval: float) -> None:
        self.journal = journal
        self.sink = sink
        self.interval = interval
        self.last: tuple[int, str] | None = None
        self.last_ts = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="journal-anchor", daemon=True)

    def anchor_once(self) -> None:
        head = self.journal.head_record()
        if self.sink is None or head == self.last:
            return
        try:
            write(self.sink, line(self.journal))
        except OSError as e:
            self.failures += 1
            log.warning("journal anchor %s: cannot append: %s", self.sink, e.strerror or e)
            return
        self.last, self.last_ts = head, time.time()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.anchor_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.anchor_once()  # the last head before the agent stops

    def render(self) -> bytes:
        seq, head = self.journal.head_record()
        return (
            "# HELP diag_journal_head_sequence Sequence number of the newest journal record.\n"
            "# TYPE diag_journal_head_sequence gauge\n"
            f"diag_journal_head_sequence {seq}\n"
            "# HELP diag_journal_head_hash_prefix First 52 bits of the newest record's hash, as an integer.\n"
            "# TYPE diag_journal_head_hash_prefix gauge\n"
            f"diag_journal_head_hash_prefix {int(head[:13], 16)}\n"
            "# HELP diag_journal_anchor_last_timestamp_seconds When the head was last appended to the anchor sink.\n"
            "# TYPE diag_journal_anchor_last_timestamp_seconds gauge\n"
            f"diag_journal_anchor_last_timestamp_seconds {self.last_ts}\n"
            "# HELP diag_journal_anchor_failures_total Anchors that could not be appended to the sink.\n"
            "# TYPE diag_journal_anchor_failures_total counter\n"
            f"diag_journal_anchor_failures_total {self.failures}\n"
        ).encode()
