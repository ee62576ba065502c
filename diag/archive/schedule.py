"""The agent's archive schedule: every ``agent.archive.interval`` seconds, ``diag config fetch all`` in a child process.

Why a child process and not a thread: fetching over SSH needs paramiko (and netmiko for devices), which adds
~14 MiB to the process that imports them (measured in docs/config-archive.md) against the agent's 40 MiB RSS
goal; a child that exits after each run gives that memory back, and a hung fetch can be killed as a whole
(its own process group) at ``agent.archive.timeout``. Runs once an hour by default, so the ~0.5 s start-up
of the child costs nothing that matters. The child writes to the same store the CLI uses; this module only
starts it, waits, and logs the outcome (one line per failed source).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


class ArchiveSchedule:
    """Runs the fetch now and then every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, inventory_file: str, data: Path, interval: float, timeout: float) -> None:
        self.inventory_file = inventory_file
        self.data = data
        self.interval = interval
        self.timeout = timeout
        self.runs = 0
        self.last_failed = 0
        self.last_duration_s = 0.0
        self.failed_runs = 0
        self.last_run_at = 0.0
        self.sources: dict[tuple[str, str], tuple[bool, int]] = {}  # (target, source) -> (ok, latest version)
        self._text = b""
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "diag.cli",
            "config",
            "fetch",
            "--json",
            "--inventory",
            self.inventory_file,
            "--data",
            str(self.data),
            "all",
        ]

    def run_once(self) -> int | None:
        """One fetch run; returns the child's exit status (None when it was stopped or timed out)."""
        if self._stop.is_set():
            return None
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills SSH helpers too
            )
        except OSError as e:
            log.error("archive: cannot start the fetch: %s", e)
            return None
        try:
            out, err = self._proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            log.error("archive: the fetch run took longer than %g s; stopped", self.timeout)
            self._kill()
            self.failed_runs += 1
            self._render()
            return None
        finally:
            self.last_duration_s = time.monotonic() - started
        if self._stop.is_set():
            return None  # stopped with the agent: its output is cut short, not a result
        rc = self._proc.returncode
        self.runs += 1
        self.last_run_at = time.time()
        self._report(rc, out, err)
        self._render()
        return rc

    def _report(self, rc: int, out: bytes, err: bytes) -> None:
        try:
            statuses = json.loads(out) if out.strip() else []
        except ValueError:
            statuses = None
        if not isinstance(statuses, list):
            # Not the JSON of a run (an invalid inventory, say): the child's own one-line errors say why.
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            log.error("archive: fetch exited %d: %s", rc, " | ".join(tail) or "no output")
            self.last_failed = -1
            self.failed_runs += 1
            return
        for s in statuses:
            if isinstance(s, dict) and isinstance(s.get("target"), str) and isinstance(s.get("source"), str):
                self.sources[(s["target"], s["source"])] = (s.get("state") != "error", int(s.get("version") or 0))
        failed = [s for s in statuses if isinstance(s, dict) and s.get("state") == "error"]
        changed = sum(1 for s in statuses if isinstance(s, dict) and s.get("state") in ("new", "changed"))
        self.last_failed = len(failed)
        log.info(
            "archive: %d sources fetched in %.1f s, %d new or changed, %d failed",
            len(statuses),
            self.last_duration_s,
            changed,
            len(failed),
        )
        for s in failed:
            log.warning("archive: %s %s: %s", s.get("target"), s.get("source"), s.get("reason"))

    def _render(self) -> None:
        """The ``diag_archive_*`` families as exposition text, made once per run (scrapes only read it)."""
        from diag.exporters.exposition import encode_metrics
        from diag.model import Metric

        runs = Metric("diag_archive_runs", "Scheduled configuration fetch runs that finished.", "counter")
        failed = Metric(
            "diag_archive_run_failures", "Scheduled fetch runs that timed out or could not run at all.", "counter"
        )
        last = Metric("diag_archive_last_run_timestamp_seconds", "When the last scheduled fetch run ended (Unix time).")
        duration = Metric("diag_archive_last_run_duration_seconds", "How long the last scheduled fetch run took.")
        ok = Metric(
            "diag_archive_fetch_success",
            "Whether the last fetch of this configuration source succeeded (1) or failed (0).",
            label_names=("target", "source"),
        )
        version = Metric(
            "diag_archive_version",
            "The latest stored version of this configuration source.",
            label_names=("target", "source"),
        )
        runs.add(self.runs)
        failed.add(self.failed_runs)
        if self.last_run_at:
            last.add(self.last_run_at)
        duration.add(self.last_duration_s)
        for (target, source), (good, v) in sorted(self.sources.items()):
            ok.add(1 if good else 0, target, source)
            if v:
                version.add(v, target, source)
        self._text = encode_metrics([runs, failed, last, duration, ok, version])

    def render(self) -> bytes:
        """For the agent's ``/metrics`` (``Exposition.extra``)."""
        return self._text

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group is the child's own (start_new_session)
            proc.wait(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="archive-schedule", daemon=True)
            self._thread.start()
            log.info("archive: fetching configurations every %g s", self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._kill()
        if self._thread is not None:
            self._thread.join(15)
