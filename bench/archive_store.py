"""Which versioned store for the configuration archive: diag's plain content-addressed store, a git repository
driven by the git CLI, or one driven by dulwich (pure-Python git). Same workload, same machine, same run.

Workload: TARGETS devices with a ~300-line running config each, ROUNDS fetch rounds; in every round each target is
stored (unchanged content must make no version) and CHANGED_PCT of them have one changed line. Then for every
target: list its versions and diff the last two. Printed: seconds for the rounds and for the reads, disk use,
the cost of importing each store (RSS, seconds, in a fresh interpreter), and ratios against the plain store.

    .venv/bin/python bench/archive_store.py [TARGETS] [ROUNDS]      # dulwich is measured when it is installed
"""

from __future__ import annotations

import difflib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TARGETS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
CHANGED_PCT = 10


def config(target: int, edits: int) -> str:
    rnd = random.Random(target)
    lines = [f"hostname sw-{target}", "!"]
    for i in range(48):
        lines += [f"interface Ethernet{i}", f" description port {i} to {rnd.randrange(1000)}", " no shutdown", "!"]
    lines += [f"router bgp {65000 + target}", *[f" neighbor 10.0.{i}.1 remote-as {65100 + i}" for i in range(80)]]
    lines += [f"ip route 10.9.{e}.0/24 10.0.0.1" for e in range(edits)]  # each change adds one route
    return "\n".join(lines) + "\n"


class Plain:
    name = "plain (diag)"

    def __init__(self, root: Path) -> None:
        from diag.archive.store import Archive

        self.a = Archive(root)

    def put(self, target: str, text: str) -> None:
        self.a.put(target, "running-config", text)

    def last_diff(self, target: str) -> list[str]:
        vs = self.a.versions(target, "running-config")
        return self.a.diff(vs[-2], vs[-1]) if len(vs) > 1 else []


class GitCLI:
    name = "git CLI"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.git("init", "-q")
        self.git("config", "user.email", "diag@localhost")
        self.git("config", "user.name", "diag")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True, text=True).stdout

    def put(self, target: str, text: str) -> None:
        path = self.root / target
        if path.exists() and path.read_text() == text:
            return
        path.write_text(text)
        self.git("add", "--", target)
        self.git("commit", "-q", "-m", f"{target} running-config")

    def last_diff(self, target: str) -> list[str]:
        revs = self.git("log", "-n", "2", "--format=%H", "--", target).split()
        return self.git("diff", revs[1], revs[0], "--", target).splitlines() if len(revs) > 1 else []


class Dulwich:
    name = "dulwich"

    def __init__(self, root: Path) -> None:
        from dulwich import porcelain
        from dulwich.repo import Repo

        self.porcelain = porcelain
        root.mkdir(parents=True)
        self.root = root
        self.repo = Repo.init(str(root))

    def put(self, target: str, text: str) -> None:
        path = self.root / target
        if path.exists() and path.read_text() == text:
            return
        path.write_text(text)
        self.porcelain.add(self.repo, [str(path)])
        self.porcelain.commit(self.repo, message=f"{target} running-config".encode(), author=b"diag <diag@localhost>")

    def last_diff(self, target: str) -> list[str]:
        walker = self.repo.get_walker(paths=[target.encode()], max_entries=2)
        blobs = []
        for entry in walker:
            tree = self.repo[entry.commit.tree]
            _, sha = tree.lookup_path(self.repo.__getitem__, target.encode())
            blobs.append(self.repo[sha].data.decode())
        if len(blobs) < 2:
            return []
        return list(difflib.unified_diff(blobs[1].splitlines(), blobs[0].splitlines(), lineterm=""))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def import_cost(stmt: str) -> tuple[float, float]:
    code = (
        "import time,resource;t=time.perf_counter();"
        f"{stmt};"
        "print(time.perf_counter()-t, int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]))"
    )
    base = subprocess.run([sys.executable, "-c", code.replace(stmt, "pass")], capture_output=True, text=True)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    t, rss = out.stdout.split()
    return float(t), (int(rss) - int(base.stdout.split()[1])) / 1024


def run(make: Callable[[Path], object], root: Path) -> dict[str, float]:
    store = make(root)
    edits = dict.fromkeys(range(TARGETS), 0)
    t0 = time.perf_counter()
    for r in range(ROUNDS):
        rnd = random.Random(r)
        for t in rnd.sample(range(TARGETS), TARGETS * CHANGED_PCT // 100) if r else []:
            edits[t] += 1
        for t in range(TARGETS):
            store.put(f"sw-{t}", config(t, edits[t]))  # type: ignore[attr-defined]
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    diffs = sum(
        1
        for t in range(TARGETS)
        for line in store.last_diff(f"sw-{t}")  # type: ignore[attr-defined]
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )
    read_s = time.perf_counter() - t0
    return {"write_s": write_s, "read_s": read_s, "disk_kib": du(root) / 1024, "diff_lines": diffs}


def main() -> None:
    stores: list[tuple[str, Callable[[Path], object], str]] = [
        (Plain.name, Plain, "import diag.archive.store"),
        (GitCLI.name, GitCLI, "import subprocess"),
    ]
    try:
        import dulwich  # noqa: F401

        stores.append((Dulwich.name, Dulwich, "import dulwich.porcelain, dulwich.repo"))
    except ImportError:
        print("dulwich is not installed: measuring plain and git CLI only")
    print(f"{TARGETS} targets x {ROUNDS} rounds, {CHANGED_PCT}% of targets changed per round")
    results = {}
    for name, make, stmt in stores:
        tmp = Path(tempfile.mkdtemp(prefix="dga-bench-"))
        try:
            results[name] = run(make, tmp / "store")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        results[name]["import_s"], results[name]["import_mib"] = import_cost(stmt)
    base = results[Plain.name]
    print(f"{'store':14} {'rounds s':>9} {'ratio':>6} {'list+diff s':>12} {'ratio':>6} {'disk KiB':>9} "
          f"{'import s':>9} {'import MiB':>11}")
    for name, r in results.items():
        assert r["diff_lines"] == base["diff_lines"], f"{name} found other diffs"
        print(
            f"{name:14} {r['write_s']:9.2f} {r['write_s'] / base['write_s']:6.1f} {r['read_s']:12.2f} "
            f"{r['read_s'] / base['read_s']:6.1f} {r['disk_kib']:9.0f} {r['import_s']:9.3f} {r['import_mib']:11.1f}"
        )
    print(f"(git CLI: {os.cpu_count()} cores; the git binary is not counted in the import column)")


if __name__ == "__main__":
    main()
