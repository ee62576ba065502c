"""Nine vendor platforms through their drivers, against EMULATED devices (fakenos, tests/labs/fakenoslab.py).

fakenos is an emulator, not a device: prompts, ``enable``, paging commands and canned outputs in each platform's
format behind a real SSH server (host key, password login). The real peer for the driver machinery stays FRR
(test_frr_devices.py). One emulator process serves all nine devices and every ``diag check`` runs a playbook on
all nine at once: first clean, then with each platform's faults (tests/labs/vendor_faults.py) put into the
devices' outputs, where each fault must make its finding. The archive fetches all nine, masks every secret,
and ``diag config diff`` shows a change made on each device. A playbook for another platform is refused (exit 3);
a wrong password and an unknown host key are refused before any command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.labs.fakenoslab import PAGING, FakenosLab
from tests.labs.vendor_faults import CONFIG_CHANGE, EXPECTED_SPEEDS, FAULTS, NEIGHBOR, PLATFORMS, SECRETS

DIAG = [sys.executable, "-m", "diag.cli"]
PLAYBOOKS = ("network-interfaces", "network-neighbors", "network-routes", "network-health", "network-logs")


def name(platform: str) -> str:
    return f"dev-{platform.replace('_', '-')}"


@pytest.fixture(scope="module")
def lab() -> Iterator[FakenosLab]:
    with FakenosLab({name(p): p for p in PLATFORMS}) as lab:
        yield lab


@pytest.fixture(scope="module")
def inv(lab: FakenosLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inv") / "inventory.yaml"
    host_vars = {
        name(p): {"expected_neighbors": [NEIGHBOR[p][1]], "expected_speeds": EXPECTED_SPEEDS.get(p, {})}
        for p in PLATFORMS
    }
    return lab.inventory(path, host_vars=host_vars)


def diag(*args: str, known_hosts: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIAG_KNOWN_HOSTS": str(known_hosts)}
    r = subprocess.run([*DIAG, *args], capture_output=True, text=True, env=env, timeout=timeout,
                       stdin=subprocess.DEVNULL)  # fmt: skip
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    return r


def check(lab: FakenosLab, inv: Path, *args: str, known_hosts: Path | None = None) -> tuple[int, dict[str, Any]]:
    r = diag("check", "-i", str(inv), "--json", *args, known_hosts=known_hosts or lab.known_hosts)
    return r.returncode, json.loads(r.stdout)


def found(doc: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    return {r["host"]: {(f["check"], f.get("subject") or "") for f in r["findings"]} for r in doc["results"]}


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_on_every_platform_clean_then_each_fault(lab: FakenosLab, inv: Path, playbook: str) -> None:
    paged = {p: len(lab.received(name(p))) for p in PLATFORMS}
    rc, clean = check(lab, inv, "-p", playbook, "emulated")
    assert clean["skipped"] == []
    for p in PLATFORMS:  # each login turned paging off with its platform's command (MikroTik: none exists)
        assert len(lab.received(name(p))) == paged[p] + (1 if p in PAGING else 0), p
    for r in clean["results"]:
        # logged in, paged, every command read to its prompt and parsed: no host error, no step error
        assert r["status"] in ("ok", "findings"), (playbook, r["host"], r["error"])
        assert all(s["status"] in ("ok", "skipped", "failed") for s in r["steps"]), (playbook, r["host"], r["steps"])
    faults = [(p, f) for p in PLATFORMS for f in FAULTS[p] if f.playbook == playbook]
    try:
        for p, f in faults:
            lab.replace(name(p), f.command, f.old, f.new, f.count)
        rc, faulty = check(lab, inv, "-p", playbook, "emulated")
    finally:
        for p in PLATFORMS:
            lab.reset(name(p))
    before, after = found(clean), found(faulty)
    for p, f in faults:
        new = {x for x in after[name(p)] - before[name(p)] if x[0] == f.check}
        assert new, (
            p,
            f,
            sorted(before[name(p)]),
            sorted(after[name(p)]),
            [r for r in faulty["results"] if r["host"] == name(p)],
        )
        if f.subject:
            assert (f.check, f.subject) in after[name(p)], (p, f, sorted(after[name(p)]))
    assert {p for p, _ in faults} == set(PLATFORMS)  # every platform had a fault for this playbook
    assert rc in (1, 2)


def test_archive_masks_and_diffs_a_change_on_every_platform(lab: FakenosLab, inv: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ("config", "fetch", "-i", str(inv), "--data", str(data), "--known-hosts", str(lab.known_hosts), "--json")
    r = diag(*args, "emulated", known_hosts=lab.known_hosts)
    assert r.returncode == 0, r.stdout + r.stderr
    stored = "".join(f.read_text(errors="replace") for f in (data / "archive" / "objects").rglob("*") if f.is_file())
    for secret in SECRETS:
        assert secret not in stored, secret
    assert stored.count("<masked:") >= 5 * len(PLATFORMS)
    # volatile lines (timestamps, byte counts) are not archived, on any platform
    for volatile in ("Last configuration change", "## Last commit", "by RouterOS", "!Time:", "Current configuration :",
                     "!Last configuration was updated", "Mon Nov 23 09:13:01.123 UTC"):  # fmt: skip
        assert volatile not in stored, volatile
    try:
        for p, (cmd, old, new) in CONFIG_CHANGE.items():
            lab.replace(name(p), cmd, old, new)
        r = diag(*args, "emulated", known_hosts=lab.known_hosts)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        for p in PLATFORMS:
            lab.reset(name(p))
    for p, (_cmd, old, new) in CONFIG_CHANGE.items():
        d = diag("config", "diff", "-i", str(inv), "--data", str(data), f"{name(p)}:running-config",
                 known_hosts=lab.known_hosts)  # fmt: skip
        assert d.returncode == 1, (p, d.stdout, d.stderr)
        changed = [ln for ln in d.stdout.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
        assert changed == [f"-{old}", f"+{new}"], (p, d.stdout)


def test_a_playbook_for_another_platform_is_refused(lab: FakenosLab, inv: Path, tmp_path: Path) -> None:
    pb = tmp_path / "ios-only.yaml"
    pb.write_text(
        "name: ios-only\ndescription: written for IOS\napplies_to: {device_types: [cisco_ios]}\n"
        "steps:\n  - id: i\n    description: interfaces\n    get: interfaces\n"
    )
    others = [name(p) for p in PLATFORMS if p != "cisco_ios"]
    r = diag("check", "-i", str(inv), "-p", str(pb), *others, known_hosts=lab.known_hosts)
    assert r.returncode == 3, r.stdout
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    for p in PLATFORMS[1:]:
        assert f"{name(p)}: refused: playbook ios-only is for device types cisco_ios, not {p}" in lines, r.stdout
    assert "no findings" not in r.stdout
    rc, doc = check(lab, inv, "-p", str(pb), name("juniper_junos"))
    assert rc == 3 and doc["exit_status"] == 3 and doc["results"] == []


def test_wrong_password_and_unknown_host_key_on_every_platform(lab: FakenosLab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = lab.inventory(tmp_path / "inv.yaml")
    rc, doc = check(lab, inv, "-p", "network-routes", "emulated", known_hosts=empty)
    assert rc == 3 and len(doc["results"]) == len(PLATFORMS)
    for r in doc["results"]:
        port = lab.devices[r["host"]].port
        assert r["status"] == "hostkey_unknown" and "unknown" in r["error"], r  # refused, nothing auto-added
        assert r["error"].startswith(f"127.0.0.1:{port} ({r['host']}, "), r["error"]
    assert empty.read_text() == ""
    bad = tmp_path / "bad_password"
    bad.write_text("not-the-password\n")
    inv = lab.inventory(tmp_path / "inv2.yaml", password=f"file:{bad}")
    r = diag("check", "-i", str(inv), "--json", "-p", "network-routes", "emulated", known_hosts=lab.known_hosts)
    doc = json.loads(r.stdout)
    assert r.returncode == 3 and {x["status"] for x in doc["results"]} == {"auth_failed"}, doc
    assert "not-the-password" not in r.stdout + r.stderr


def test_inventory_detect_finds_every_platform_and_verifies_host_keys(lab: FakenosLab, tmp_path: Path) -> None:
    inv = lab.inventory(tmp_path / "inv.yaml")  # every device written as cisco_ios-agnostic: detect ignores it
    r = diag("inventory", "detect", "-i", str(inv), "--known-hosts", str(lab.known_hosts), "--json", "emulated",
             known_hosts=lab.known_hosts)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    got = {row["host"]: row["device_type"] for row in json.loads(r.stdout)}
    assert got == {name(p): p for p in PLATFORMS}
    r = diag("inventory", "detect", "-i", str(inv), "--known-hosts", str(lab.known_hosts), name("huawei_vrp"),
             known_hosts=lab.known_hosts)  # fmt: skip
    assert r.stdout.strip() == f"{name('huawei_vrp')}: device_type: huawei_vrp"
    empty = tmp_path / "empty"
    empty.write_text("")
    r = diag("inventory", "detect", "-i", str(inv), "--known-hosts", str(empty), name("cisco_ios"), known_hosts=empty)
    assert r.returncode == 3 and "hostkey_unknown" in r.stderr, r.stderr
    assert empty.read_text() == ""  # nothing auto-added
