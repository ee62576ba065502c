"""The agent's line-1 watcher: polls the desks of ``agent.line1`` on a thread of its own (docs/line1.md).

The same use case as ``diag line1 watch`` (:func:`diag.services.triage.from_settings`); it is built on the
thread, so a desk that is down at start only delays line-1 automation, and a poll that fails is logged and tried
again after the interval, never taking the agent down. Imported only when the section is configured.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Line1Watcher:
    def __init__(self, settings: Any, inventory: Any, data: Path) -> None:
        self.settings = settings
        self.inventory = inventory
        self.data = Path(data)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="diag-line1", daemon=True)
        self.polls = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from diag.errors import DiagError
        from diag.services.triage import from_settings

        try:
            line1 = from_settings(self.settings, self.inventory, self.data)
        except DiagError as e:  # a KB entry naming a missing standard change: said once, the agent runs on
            log.error("line1: not started: %s", e)
            return
        try:
            while not self._stop.is_set():
                try:
                    for o in line1.poll_once():
                        log.info("line1: %s: %s (%s, %s)", o.key, o.state, o.classification, o.line)
                except Exception:  # one bad poll must not end line-1 automation for the agent's lifetime
                    log.exception("line1: poll failed; trying again in %.0f s", line1.interval)
                self.polls += 1
                self._stop.wait(line1.interval)
        finally:
            line1.close()
