"""Loading YAML from many threads at once (workers, SNMP pollers) leaves stderr alone and never crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from diag import yamlsrc


def test_concurrent_loads_leave_stderr_where_it_was(tmp_path: Path) -> None:
    files = []
    for i in range(8):
        p = tmp_path / f"f{i}.yaml"
        p.write_text("".join(f"k{j}: {{a: {j}, b: [1, 2, 3]}}\n" for j in range(200)))
        files.append(p)
    before = os.fstat(2)
    for _ in range(10):
        barrier = threading.Barrier(len(files))

        def load(p: Path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            yamlsrc.load_file(p)

        threads = [threading.Thread(target=load, args=(p,)) for p in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = os.fstat(2)
        # Without the lock, two threads swapping fd 2 could leave it on /dev/null for good.
        assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_first_use_of_a_type_from_many_threads_does_not_crash() -> None:
    # msgspec crashed (SIGSEGV) about once in 85 runs when threads converted to a Struct type for the first
    # time together; each run needs a fresh interpreter, so run a few and require every one to exit 0.
    code = (
        "import threading\n"
        "from diag.network.snmp import profiles\n"
        "b = threading.Barrier(8)\n"
        "def go():\n"
        "    b.wait()\n"
        "    profiles.load('system'); profiles.load('if_mib')\n"
        "ts = [threading.Thread(target=go) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
    )
    for _ in range(10):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr[-2000:]
