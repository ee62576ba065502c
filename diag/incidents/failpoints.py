"""Failpoints: named pauses in the delivery path, so a crash test can SIGKILL diag at an exact point.

The technique of etcd's gofail and TiKV's fail-rs, reduced to what the outbox test needs. Off unless the
environment has ``DIAG_FAILPOINTS=1``: then :func:`failpoint` prints ``failpoint NAME`` on stdout and blocks
until a line arrives on stdin. The test reads the name, and either answers (go on) or kills the process
while it stands exactly there (e.g. after the ticket was created and before that was committed).
When off, a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys

_ENABLED = os.environ.get("DIAG_FAILPOINTS") == "1"


def failpoint(name: str) -> None:
    if not _ENABLED:
        return
    sys.stdout.write(f"failpoint {name}\n")
    sys.stdout.flush()
    if not sys.stdin.readline():  # the test closed stdin: run on without stopping
        globals()["_ENABLED"] = False
