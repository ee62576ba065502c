"""The configuration archive against a real CLI device: FRRouting's r1 (labs/frrlab.py), reached over SSH by a user
whose shell is vtysh, read through the netmiko driver of diag/network/devices, through the real ``diag config`` CLI.

An interface shut down in FRR appears in the running-config diff as ``+ shutdown`` under ``interface eth2``; an OSPF
key configured on the router is masked in the store and in the diff; the dead device of the lab's inventory (a port
where nothing listens) is a status with its reason. The test restores the router before it ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag.archive.store import RUNNING_CONFIG, Archive
from tests.labs.frrlab import FrrLab

pytestmark = pytest.mark.integration
KEY = "k" + uuid.uuid4().hex[:7]  # an OSPF authentication key (at most 8 characters)


@pytest.fixture(scope="module")
def frr() -> Iterator[FrrLab]:
    lab = FrrLab()
    try:
        lab.start()
        lab.write_inventory(extra="agent:\n  archive:\n    devices: [routers]\n")
        yield lab
    finally:
        lab.close()


def diag(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diag.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def fetch(frr: FrrLab, cwd: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    p = diag(cwd, "config", "fetch", "--json", "-i", str(frr.inventory), "--known-hosts", str(frr.known_hosts), "all")
    assert p.stdout.strip(), p.stderr
    return p.returncode, {s["target"]: s for s in json.loads(p.stdout)}


def test_an_interface_shut_in_frr_is_in_the_running_config_diff(frr: FrrLab, tmp_path: Path) -> None:
    frr.vtysh("r1", "configure terminal", "interface eth2", f"ip ospf authentication-key {KEY}")
    try:
        rc, st = fetch(frr, tmp_path)
        assert rc == 3  # the dead device
        assert (st["r1"]["source"], st["r1"]["state"], st["r1"]["version"]) == (RUNNING_CONFIG, "new", 1)
        assert st["dead"]["state"] == "error" and "connection refused" in st["dead"]["reason"]
        shown = diag(tmp_path, "config", "show", "r1")
        assert shown.returncode == 0 and "hostname r1" in shown.stdout and "router bgp 65001" in shown.stdout
        assert " ip ospf authentication-key <masked:" in shown.stdout and KEY not in shown.stdout
        assert "Building configuration" not in shown.stdout

        rc, st = fetch(frr, tmp_path)
        assert st["r1"]["state"] == "unchanged" and st["r1"]["version"] == 1

        frr.vtysh("r1", "configure terminal", "interface eth2", "shutdown")
        rc, st = fetch(frr, tmp_path)
        assert (st["r1"]["state"], st["r1"]["version"]) == ("changed", 2)
        d = diag(tmp_path, "config", "diff", "r1")
        assert d.returncode == 1, d.stderr
        lines = d.stdout.splitlines()
        assert "+ shutdown" in lines and " interface eth2" in lines
        assert [x for x in lines if x.startswith(("+", "-")) and not x.startswith(("+++", "---"))] == ["+ shutdown"]
        assert lines.index(" interface eth2") < lines.index("+ shutdown")
        data = tmp_path / ".diag" / "archive"
        assert KEY.encode() not in b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
        (change,) = Archive(data).changes_before("r1", st["r1"]["at"] + 1, 600)
        assert change.before_fault and "+ shutdown" in change.diff
    finally:
        frr.vtysh("r1", "configure terminal", "interface eth2", "no shutdown", "no ip ospf authentication-key")
