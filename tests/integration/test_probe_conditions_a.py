"""Local probes against REAL conditions the tests create: full tmpfs mounts, a remount read-only, a veth without
carrier, a process near its fd limit, a zombie; and ``diag probe --json`` on this host.

The probes run with their default paths (/proc, /sys, /), as the agent does. Everything made here is
named ``dga-...`` and removed in ``finally`` blocks, also when an assertion fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from diag.probes.base import Paths
from diag.probes.fds import FdsOptions, FdsProbe
from diag.probes.filesystem import FilesystemOptions, FilesystemProbe
from diag.probes.netdev import NetDevOptions, NetDevProbe
from diag.probes.processes import ProcessesOptions, ProcessesProbe
from tests.conftest import DIAG

pytestmark = pytest.mark.integration

Mount = Callable[[str, str], Path]
MY_PROBES = ("filesystem", "diskio", "netdev", "netstat", "load", "processes", "fds", "uptime", "vmstat")


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests mount filesystems and create interfaces: run them as root (CI does)")


def wait_for(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Poll ``check()`` until true; the kernel applies link and process state changes asynchronously."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """Factory: mount a tmpfs with the given options under tmp_path; all are unmounted at teardown."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        mp = tmp_path / name
        mp.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, f"dga-{name}", str(mp)], check=True)
        mounted.append(mp)
        return mp

    try:
        yield mount
    finally:
        for mp in reversed(mounted):
            subprocess.run(["umount", "-l", str(mp)], check=False)


def test_full_tmpfs_is_critical_with_df_evidence(tmpfs: Mount) -> None:
    mp = tmpfs("full", "size=8m")
    with open(mp / "blob", "wb") as fh:
        fh.write(b"\0" * (8 * 2**20 - 160 * 1024))  # 98 % of 8 MiB
    probe = FilesystemProbe(FilesystemOptions(), Paths())
    r = probe.collect()
    [f] = [f for f in r.findings if f.subject == str(mp)]
    assert f.check == "filesystem_full" and f.severity == "critical"
    assert "98 % full" in f.summary
    table = f.evidence[0].text
    assert "dga-full" in table and "98%" in table and str(mp) in table and "8.0M" in table
    size = {lv[1]: v for m in r.metrics if m.name == "diag_filesystem_size_bytes" for lv, v in m.samples}
    assert size[str(mp)] == 8 * 2**20

    (mp / "blob").unlink()  # freed: the finding is gone on the next run
    assert not [f for f in probe.collect().findings if f.subject == str(mp)]


def test_tmpfs_out_of_inodes(tmpfs: Mount) -> None:
    mp = tmpfs("inodes", "size=8m,nr_inodes=64")
    made = 0
    with pytest.raises(OSError, match="No space left"):
        for i in range(100):
            (mp / f"f{i}").touch()
            made += 1
    assert made > 50
    r = FilesystemProbe(FilesystemOptions(), Paths()).collect()
    [f] = [f for f in r.findings if f.subject == str(mp)]
    assert f.check == "filesystem_inodes" and f.severity == "critical"
    assert "IUse%" in f.evidence[0].text and "100%" in f.evidence[0].text


def test_remount_read_only_is_critical(tmpfs: Mount) -> None:
    mp = tmpfs("remount", "size=1m")
    probe = FilesystemProbe(FilesystemOptions(), Paths())
    assert not [f for f in probe.collect().findings if f.subject == str(mp)]
    subprocess.run(["mount", "-o", "remount,ro", str(mp)], check=True)  # what the kernel does after an I/O error
    r = probe.collect()
    [f] = [f for f in r.findings if f.subject == str(mp)]
    assert f.check == "filesystem_readonly" and f.severity == "critical"
    assert "previous run" in f.summary and "dga-remount" in f.evidence[0].text
    ro = {lv[1]: v for m in r.metrics if m.name == "diag_filesystem_readonly" for lv, v in m.samples}
    assert ro[str(mp)] == 1


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def test_veth_without_carrier_is_link_down_until_peer_comes_up() -> None:
    a, b = f"dga-a{os.getpid() % 100000}", f"dga-b{os.getpid() % 100000}"
    _ip("link", "add", a, "type", "veth", "peer", "name", b)
    try:
        _ip("link", "set", a, "up")  # b stays down: a has no carrier
        operstate = Path(f"/sys/class/net/{a}/operstate")
        wait_for(lambda: operstate.read_text().strip() != "unknown", f"{a} operstate")
        probe = NetDevProbe(NetDevOptions(), Paths())
        r = probe.collect()
        [f] = [f for f in r.findings if f.subject == a]
        assert f.check == "link_down" and f.severity == "warning"
        assert "carrier=0" in f.evidence[0].text
        up = {lv[0]: v for m in r.metrics if m.name == "diag_network_admin_up" for lv, v in m.samples}
        assert up[a] == 1 and up[b] == 0
        assert not [f for f in r.findings if f.subject == b]  # administratively down is not "link down"

        _ip("link", "set", b, "up")
        wait_for(lambda: operstate.read_text().strip() == "up", f"{a} up")
        r2 = probe.collect()
        assert not [f for f in r2.findings if f.subject in (a, b)]
        oper = {lv[0]: v for m in r2.metrics if m.name == "diag_network_up" for lv, v in m.samples}
        assert oper[a] == 1 and oper[b] == 1
    finally:
        subprocess.run(["ip", "link", "del", a], check=False, capture_output=True)


FD_HOG = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 1000))
with open("/proc/self/comm", "w") as f:
    f.write("dga-fdhog")
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(900)]
print("ready", flush=True)
sys.stdin.read()
"""


def test_process_near_its_fd_limit() -> None:
    child = subprocess.Popen([sys.executable, "-c", FD_HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        r = FdsProbe(FdsOptions(), Paths()).collect()
        [f] = [f for f in r.findings if f.subject == "dga-fdhog"]
        assert f.check == "filefd_process" and f.severity == "warning"
        assert f"(pid {child.pid})" in f.summary and "of its limit 1000" in f.summary
        held = f.evidence[0].data["fds"]
        assert 900 <= held <= 910  # the 900 plus stdin/out/err and what the interpreter keeps open
        assert f.evidence[0].data["kinds"]["file"] >= 900
    finally:
        child.kill()
        child.wait()


def test_zombie_is_counted_in_state_z() -> None:
    before_run = ProcessesProbe(ProcessesOptions(), Paths()).collect()
    before = {lv[0]: v for m in before_run.metrics if m.name == "diag_processes_state" for lv, v in m.samples}
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits at once; not waited for: a zombie
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", "the child to become a zombie")
        r = ProcessesProbe(ProcessesOptions(zombies_warning=0), Paths()).collect()
        states = {lv[0]: v for m in r.metrics if m.name == "diag_processes_state" for lv, v in m.samples}
        assert states["Z"] >= 1 and states["Z"] >= before["Z"]
        [f] = [f for f in r.findings if f.check == "zombie_processes"]
        assert child.pid in f.evidence[0].data["parents"][os.getpid()]  # listed under this test process
    finally:
        child.wait()
    assert stat.exists() is False


def test_diag_probe_json_lists_these_probes(tmp_path: Path) -> None:
    out = subprocess.run(
        [DIAG, "probe", "--json", "--data", str(tmp_path / "data"), *[f"--only={p}" for p in MY_PROBES]],
        cwd=tmp_path,  # no inventory.yaml here: the defaults
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode in (0, 1, 2), out.stderr  # Nagios-like: the worst finding on this host
    doc = json.loads(out.stdout)
    got = {p["probe"]: p for p in doc["probes"]}
    assert sorted(got) == sorted(MY_PROBES)
    for name, p in got.items():
        assert p["success"] and not p["no_data"], (name, p["error"])
        assert p["samples"], name
    assert len(got["netstat"]["samples"]) > 200  # every protocol counter of the kernel
    names = {s["name"] for s in got["filesystem"]["samples"]}
    assert {"diag_filesystem_size_bytes", "diag_filesystem_avail_bytes", "diag_filesystem_files_free"} <= names
