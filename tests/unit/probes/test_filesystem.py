"""Filesystem probe on recorded /proc/mounts and /etc/fstab: real statvfs on tmp dirs, recorded figures for limits."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from diag.errors import NoData
from diag.model import Result
from diag.probes.base import Paths
from diag.probes.filesystem import FilesystemOptions, FilesystemProbe, human, parse_mounts

FIX = Path(__file__).parents[2] / "fixtures"
MOUNTS = (FIX / "proc" / "filesystem" / "mounts").read_text()
REAL_MPS = ["/", "/srv", "/var/log", "/data", "/media/usb stick", "/mnt/nfs"]


def make_root(tmp_path: Path) -> Paths:
    """A procfs with the recorded mounts, a rootfs with the recorded fstab and a directory per mountpoint."""
    proc, root = tmp_path / "proc", tmp_path / "root"
    proc.mkdir()
    shutil.copy(FIX / "proc" / "filesystem" / "mounts", proc / "mounts")
    shutil.copytree(FIX / "rootfs" / "filesystem", root)
    for mp in REAL_MPS:
        (root / mp.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return Paths(procfs=proc, sysfs=tmp_path / "sys", rootfs=root, state=tmp_path / "state")


def vfs(blocks: int, bfree: int, bavail: int, files: int, ffree: int, ro: bool = False) -> os.statvfs_result:
    """A statvfs answer as the kernel gives it (4 KiB blocks)."""
    flag = os.ST_RDONLY if ro else 0
    return os.statvfs_result((4096, 4096, blocks, bfree, bavail, files, ffree, ffree, flag, 255))


def samples(r: Result, name: str) -> dict[str, float]:
    return {lv[1]: v for m in r.metrics if m.name == name for lv, v in m.samples}


def test_parse_mounts_unescapes_and_dedupes() -> None:
    mounts = parse_mounts(MOUNTS)
    mps = [m.mountpoint for m in mounts]
    assert "/media/usb stick" in mps
    assert mps.count("/srv") == 1
    assert mps.count("/dev/pts") == 1


def test_real_statvfs_skips_pseudo_filesystems(tmp_path: Path) -> None:
    paths = make_root(tmp_path)
    r = FilesystemProbe(FilesystemOptions(), paths).collect()
    size = samples(r, "diag_filesystem_size_bytes")
    assert sorted(size) == sorted(REAL_MPS)  # proc, sysfs, cgroup, devpts, /dev, /sys, docker overlay are gone
    real = os.statvfs(tmp_path)
    assert size["/data"] == real.f_blocks * real.f_frsize
    assert samples(r, "diag_filesystem_files")["/srv"] == real.f_files
    assert samples(r, "diag_filesystem_device_error") == dict.fromkeys(REAL_MPS, 0.0)
    # /var/log is ro with errors=remount-ro, /data is ro while fstab says rw; the usb stick is ro by fstab
    ro = samples(r, "diag_filesystem_readonly")
    assert ro["/var/log"] == 1 and ro["/data"] == 1 and ro["/"] == 0
    readonly = {f.subject: f for f in r.findings if f.check == "filesystem_readonly"}
    assert sorted(readonly) == ["/data", "/var/log"]
    assert readonly["/var/log"].severity == "critical"
    assert "errors=remount-ro" in readonly["/var/log"].summary
    assert "/etc/fstab" in readonly["/data"].summary
    assert "ro,relatime" in readonly["/data"].evidence[0].text


def test_space_and_inode_thresholds(tmp_path: Path) -> None:
    paths = make_root(tmp_path)
    root = str(paths.rootfs)
    figures = {
        "/": vfs(1000, 400, 350, 1000, 900),  # 63 % (used / (used + avail), like df)
        "/srv": vfs(1000, 100, 50, 1000, 900),  # 900 / 950 = 94.7 % -> warning
        "/var/log": vfs(1000, 60, 10, 1000, 900),  # 940 / 950 = 98.9 % -> critical
        "/data": vfs(1000, 500, 500, 1000, 40),  # inodes 96 % -> critical
        "/media/usb stick": vfs(1000, 500, 500, 1000, 95),  # inodes 90.5 % -> warning
        "/mnt/nfs": vfs(1000, 500, 500, 0, 0),  # no inode counts (like btrfs): no inode finding
    }

    def stat(path: str) -> os.statvfs_result:
        return figures["/" + os.path.relpath(path, root).replace(".", "", 1).lstrip("/")]

    r = FilesystemProbe(FilesystemOptions(), paths, statvfs=stat).collect()
    full = {f.subject: f for f in r.findings if f.check == "filesystem_full"}
    assert {k: f.severity for k, f in full.items()} == {"/srv": "warning", "/var/log": "critical"}
    assert "99 % full" in full["/var/log"].summary
    table = full["/var/log"].evidence[0].text
    assert table.splitlines()[0].startswith("Filesystem") and "99%" in table and "/dev/vdb1" in table
    assert full["/var/log"].evidence[0].data["avail_bytes"] == 10 * 4096
    inodes = {f.subject: f.severity for f in r.findings if f.check == "filesystem_inodes"}
    assert inodes == {"/data": "critical", "/media/usb stick": "warning"}
    assert full["/srv"].fingerprint != full["/var/log"].fingerprint


def test_remount_read_only_since_previous_run(tmp_path: Path) -> None:
    paths = make_root(tmp_path)
    state = {"ro": False}

    def stat(path: str) -> os.statvfs_result:
        return vfs(1000, 500, 500, 1000, 900, ro=state["ro"] and path.endswith("/srv"))

    probe = FilesystemProbe(FilesystemOptions(), paths, statvfs=stat)
    first = probe.collect()
    assert not [f for f in first.findings if f.subject == "/srv"]
    state["ro"] = True  # the kernel flipped it after an I/O error
    second = probe.collect()
    srv = [f for f in second.findings if f.subject == "/srv"]
    assert len(srv) == 1 and srv[0].severity == "critical"
    assert "previous run" in srv[0].summary


def test_hung_mount_is_reported_and_not_restatted(tmp_path: Path) -> None:
    """A stand-in for a dead NFS server: statvfs on /mnt/nfs blocks until the test releases it."""
    paths = make_root(tmp_path)
    release = threading.Event()
    calls: list[str] = []

    def stat(path: str) -> os.statvfs_result:
        calls.append(path)
        if path.endswith("/mnt/nfs"):
            release.wait(30)
        return os.statvfs(path)

    # 2 s, not 0.2: every other mount's statvfs must finish within it in a worker thread, and on a loaded machine a
    # thread may wait longer than 0.2 s for a CPU (a healthy mount would then be reported hung)
    probe = FilesystemProbe(FilesystemOptions(stat_timeout=2.0), paths, statvfs=stat)
    try:
        r = probe.collect()
        hung = [f for f in r.findings if f.check == "filesystem_hung"]
        assert [f.subject for f in hung] == ["/mnt/nfs"]
        err = samples(r, "diag_filesystem_device_error")
        assert err["/mnt/nfs"] == 1 and err["/"] == 0
        assert "/media/usb stick" in samples(r, "diag_filesystem_size_bytes")  # mounts after the hung one still counted
        nfs_calls = sum(c.endswith("/mnt/nfs") for c in calls)
        r2 = probe.collect()  # still hung: reported again without a second blocked thread
        assert sum(c.endswith("/mnt/nfs") for c in calls) == nfs_calls
        assert [f.subject for f in r2.findings if f.check == "filesystem_hung"] == ["/mnt/nfs"]
    finally:
        release.set()


def test_no_real_filesystems_is_no_data(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mounts").write_text("proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n")
    with pytest.raises(NoData):
        FilesystemProbe(FilesystemOptions(), Paths(procfs=proc, rootfs=tmp_path)).collect()


def test_human_sizes_like_df() -> None:
    assert human(512) == "512"
    assert human(8 * 2**20) == "8.0M"
    assert human(252 * 2**30) == "252G"


def test_read_only_by_intent_is_not_a_finding(tmp_path: Path) -> None:
    """/etc/fstab mounts the usb stick "ro": read-only there is what the admin asked for, errors=remount-ro or not."""
    paths = make_root(tmp_path)
    mounts = paths.procfs / "mounts"
    mounts.write_text(mounts.read_text().replace("vfat rw,relatime", "vfat ro,relatime,errors=remount-ro"))
    r = FilesystemProbe(FilesystemOptions(), paths).collect()
    assert samples(r, "diag_filesystem_readonly")["/media/usb stick"] == 1
    assert sorted(f.subject for f in r.findings if f.check == "filesystem_readonly") == ["/data", "/var/log"]
