"""Benchmark: load a 10,000-host inventory, against the 1 s goal of issue 2, and against PyYAML.

Times ``diag.inventory.load`` (median of 5, in this process), its two halves (YAML parse through
diag.yamlsrc's fast path, then validation and inheritance), a fresh ``diag inventory validate`` process
(wall time, median of 3, next to a bare ``diag --version`` for the interpreter's start-up), and on the
same text PyYAML's ``yaml.load`` with the C loader and ``yaml.compose`` (the line path diag takes only
to explain an error). Prints everything; asserts nothing.

Usage: .venv/bin/python bench/inventory_load.py [--hosts 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.gen_inventory import generate  # noqa: E402
from diag import inventory, yamlsrc  # noqa: E402

DIAG = os.environ.get("DIAG", str(Path(sys.executable).with_name("diag")))


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def process_time(argv: list[str], runs: int) -> float:
    def run() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return median_time(run, runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=10_000)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="diag-bench-") as d:
        path = Path(d) / "inventory.yaml"
        text = generate(args.hosts)
        path.write_text(text)
        inv = inventory.load(str(path))  # warm the OS cache and check that it is valid
        assert len(inv.hosts) == args.hosts, len(inv.hosts)

        load = median_time(lambda: inventory.load(str(path)), 5)
        parse = median_time(lambda: yamlsrc.load_file(path), 5)
        doc = yamlsrc.load_file(path)
        resolve = median_time(lambda: inventory.parse(doc), 5)
        validate = process_time([DIAG, "inventory", "validate", str(path)], 3)
        startup = process_time([DIAG, "--version"], 3)
        pyyaml = median_time(lambda: yaml.load(text, Loader=yaml.CSafeLoader), 3)
        compose = median_time(lambda: yaml.compose(text, Loader=yaml.CSafeLoader), 3)

    print(f"inventory: {args.hosts} hosts, {len(text) / 1e6:.2f} MB of YAML")
    print(f"  diag.inventory.load (median of 5):          {load * 1e3:8.1f} ms   goal < 1000 ms")
    print(f"    YAML parse (rapidyaml -> JSON -> dicts):   {parse * 1e3:8.1f} ms")
    print(f"    validation and inheritance:                {resolve * 1e3:8.1f} ms")
    print(
        f"  diag inventory validate, fresh process:     {validate * 1e3:8.1f} ms   "
        f"(diag --version: {startup * 1e3:.0f} ms)"
    )
    print(
        f"  PyYAML yaml.load, CSafeLoader:              {pyyaml * 1e3:8.1f} ms   = {pyyaml / parse:.1f}x diag's parse"
    )
    print(f"  PyYAML yaml.compose (diag's line path):     {compose * 1e3:8.1f} ms")
    print(
        f"goal (load < 1 s): {'met' if load < 1 else 'NOT met'}; "
        f"fresh validate < 1 s: {'met' if validate < 1 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
