"""`diag check` against the SSH lab: real sshd hosts in network namespaces (tests/labs/lab.py), the real CLI.

Covers the ok path, every failure status on one host while the others finish (exit 3), linux-baseline
finding a real full tmpfs with the df output as evidence, facts kept with history, and hostile variables
that reach the host as plain strings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.labs.lab import LAB_USER, Lab

pytestmark = pytest.mark.integration


def diag(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diag.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def check_json(cwd: Path, lab: Lab, *args: str, inventory: Path | None = None) -> tuple[int, dict[str, Any]]:
    p = diag(
        cwd, "check", "--json", "-i", str(inventory or lab.inventory), "--known-hosts", str(lab.known_hosts), *args
    )
    assert p.stdout.strip(), f"no JSON on stdout; stderr: {p.stderr}"
    return p.returncode, json.loads(p.stdout)


def results(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in doc["results"]}


def test_facts_on_the_lab_are_ok_and_kept_with_history(ssh_lab: Lab, tmp_path: Path) -> None:
    rc, doc = check_json(tmp_path, ssh_lab, "-p", "facts", "lab")
    assert doc["playbook"] == "facts"
    by = results(doc)
    assert set(by) == {"h01", "h02", "h03", "h04"}
    for r in by.values():
        assert r["status"] == "ok" and r["error"] is None and r["findings"] == []
        steps = {s["id"]: s for s in r["steps"]}
        assert steps["os"]["parsed"]["ID"] == "debian"
        assert len(steps["packages"]["parsed"]) > 100
    assert rc == 0
    rc, _ = check_json(tmp_path, ssh_lab, "-p", "facts", "h01")
    assert rc == 0
    assert len(list((tmp_path / ".diag" / "facts" / "h01").glob("*.json"))) == 2
    show = diag(tmp_path, "facts", "show", "h01", "--json")
    assert show.returncode == 0, show.stderr
    facts = json.loads(show.stdout)
    assert facts["summary"]["os"].startswith("Debian GNU/Linux 12") and len(facts["history"]) == 2
    listing = diag(tmp_path, "facts", "list")
    assert listing.returncode == 0 and "h04" in listing.stdout


HANG = """\
name: hang-test
description: a quick command everywhere, and a command that hangs on hosts whose inventory sets hang
vars:
  hang: false
steps:
  - id: uname
    description: quick
    run: uname -s
    checks:
      - check: not_linux
        if: strip(stdout) != 'Linux'
        severity: warning
        summary: "not Linux: {{ stdout }}"
  - id: sleeper
    description: hangs until killed at its timeout
    when: hang
    run: sleep 600
    timeout: 2
"""


def test_every_failure_status_on_one_host_while_the_others_finish(make_lab: Callable[..., Lab], tmp_path: Path) -> None:
    lab = make_lab(6, no_sshd=(1,))  # h02 has no sshd
    lab.rotate_host_key("h04")  # known_hosts keeps h04's old key
    pb = tmp_path / "hang.yaml"
    pb.write_text(HANG)
    lines = ["defaults:", f"  user: {LAB_USER}", f"  ssh_key: {lab.client_key}", "  connect_timeout: 5", "hosts:"]
    for h in lab.hosts.values():
        lines += [f"  {h.name}:", f"    address: {h.address}"]
        if h.name == "h03":
            lines.append(f"    ssh_key: {lab.bad_key}")
        if h.name == "h05":
            lines.append("    vars: {hang: true}")
    inv = tmp_path / "inventory.yaml"
    inv.write_text("\n".join(lines) + "\n")

    rc, doc = check_json(tmp_path, lab, "-p", str(pb), "all", inventory=inv)
    by = results(doc)
    assert {h: r["status"] for h, r in by.items()} == {
        "h01": "ok",
        "h02": "unreachable",
        "h03": "auth_failed",
        "h04": "hostkey_mismatch",
        "h05": "timeout",
        "h06": "ok",
    }
    assert rc == 3
    assert lab.host("h02").address in by["h02"]["error"]
    assert by["h03"]["error"] and "h03" in by["h03"]["error"]
    assert by["h04"]["error"] and lab.host("h04").address in by["h04"]["error"]
    h05 = lab.host("h05")
    assert by["h05"]["error"] == f"{h05.address}:22 (h05): step sleeper: command timed out after 2 s"
    h05_steps = {s["id"]: s for s in by["h05"]["steps"]}
    assert h05_steps["uname"]["status"] == "ok" and h05_steps["sleeper"]["status"] == "timeout"
    for name in ("h01", "h06"):
        assert by[name]["error"] is None
        assert [s["status"] for s in by[name]["steps"]] == ["ok", "skipped"]


def test_linux_baseline_finds_a_real_full_filesystem(make_lab: Callable[..., Lab], tmp_path: Path) -> None:
    lab = make_lab(2)
    mnt = lab.mount_tmpfs("h02", "4M")
    lab.fill("h02", mnt)
    # an address from /etc/hosts: the DNS check stays on the host (no query may leave the test machine)
    rc, doc = check_json(tmp_path, lab, "-p", "linux-baseline", "--var", "dns_name=127.0.0.1", "lab")
    by = results(doc)
    assert not any(x["check"] == "dns_failed" for r in by.values() for x in r["findings"])
    assert by["h02"]["status"] == "findings", by["h02"]["error"]
    full = [f for f in by["h02"]["findings"] if f["check"] == "fs_full" and f["subject"] == str(mnt)]
    assert len(full) == 1, by["h02"]["findings"]
    f = full[0]
    assert f["severity"] == "critical" and f["cause"] == "disk_full"
    assert f"filesystem {mnt} (dgs-tmpfs) is 100% full" in f["summary"]
    ev = f["evidence"][0]
    assert ev["kind"] == "command" and "df -Pk" in ev["data"]["command"] and ev["data"]["exit_status"] == 0
    df_line = next(line for line in ev["text"].splitlines() if line.endswith(f" {mnt}"))
    assert df_line.split()[0] == "dgs-tmpfs" and df_line.split()[4] == "100%"
    # the tmpfs is private to h02's mount namespace: h01 does not see it, so no finding there
    assert not any(x["subject"] == str(mnt) for x in by["h01"]["findings"])
    assert rc == 2  # worst is critical, and every host could be checked

    # the readable summary shows the same finding with the df lines that prove it
    p = diag(
        tmp_path,
        "check",
        "-i",
        str(lab.inventory),
        "--known-hosts",
        str(lab.known_hosts),
        "-p",
        "disk-full",
        "--var",
        f"path={mnt}",
        "h02",
    )
    assert p.returncode == 2, p.stderr
    assert "CRITICAL" in p.stdout and "100% full" in p.stdout
    assert "dgs-tmpfs" in p.stdout and "Filesystem" in p.stdout


PAYLOADS = [
    ";touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    "x' ; touch {m} ; '",
    '" && touch {m} && "',
    "| touch {m}",
    "\n touch {m}",
]


def test_hostile_variables_reach_the_host_as_plain_strings(ssh_lab: Lab, tmp_path: Path) -> None:
    marker = Path(f"/tmp/diag-pwned-{uuid.uuid4().hex}")
    pb = tmp_path / "echo.yaml"
    pb.write_text(
        textwrap.dedent(
            """\
            name: echo-test
            description: prints its variable back, one line per argument
            vars:
              payload: ""
            steps:
              - id: echo
                description: echo
                run: printf '[%s]\\n' {{ payload }}
            """
        )
    )
    try:
        for template in PAYLOADS:
            payload = template.format(m=marker)
            rc, doc = check_json(tmp_path, ssh_lab, "-p", str(pb), "--var", f"payload={payload}", "h01")
            r = results(doc)["h01"]
            assert rc == 0 and r["status"] == "ok", r
            # one argument, byte for byte: the shell saw a quoted word, not code
            step = r["steps"][0]
            assert step["exit_status"] == 0
        rc, doc = check_json(
            tmp_path, ssh_lab, "-p", "service-down", "--var", f"service=nginx;touch {marker}", "--var", "port=1", "h02"
        )
        r = results(doc)["h02"]
        assert r["status"] == "findings" and {f["check"] for f in r["findings"]} == {
            "process_missing",
            "port_not_listening",
        }
        assert any(f"nginx;touch {marker}" in f["summary"] for f in r["findings"])
        assert not marker.exists(), "a variable was executed on the lab host"
    finally:
        marker.unlink(missing_ok=True)


def test_echoed_payload_is_byte_exact(ssh_lab: Lab, tmp_path: Path) -> None:
    pb = tmp_path / "echo.yaml"
    pb.write_text(
        "name: echo2\ndescription: echo\nvars: {payload: ''}\nsteps:\n"
        "  - id: echo\n    description: echo\n    run: printf '[%s]' {{ payload }}\n"
        "    checks:\n      - {check: echoed, if: 'true', severity: info, summary: '{{ stdout }}'}\n"
    )
    payload = "a b;rm -rf /;$(id) `id` 'q' \"d\" \\ * ~"
    rc, doc = check_json(tmp_path, ssh_lab, "-p", str(pb), "--var", f"payload={payload}", "h03")
    f = results(doc)["h03"]["findings"][0]
    assert f["summary"] == f"[{payload}]"
    assert f["evidence"][0]["text"] == f"[{payload}]"
    assert rc == 0


def test_huge_output_is_capped_in_the_evidence(ssh_lab: Lab, tmp_path: Path) -> None:
    pb = tmp_path / "big.yaml"
    pb.write_text(
        "name: big\ndescription: prints 100 MB\nsteps:\n"
        "  - id: flood\n    description: flood\n    run: head -c 100000000 /dev/zero | tr '\\0' x; echo; echo done\n"
        "    checks:\n      - {check: flood_seen, if: len(stdout) > 0, severity: info, summary: '{{ len(stdout) }}'}\n"
    )
    rc, doc = check_json(tmp_path, ssh_lab, "-p", str(pb), "h04")
    r = results(doc)["h04"]
    assert r["status"] == "findings" and rc == 0
    ev = r["findings"][0]["evidence"][0]
    assert ev["data"]["truncated"] is True
    assert len(ev["text"]) < 64 * 1024
    assert int(r["findings"][0]["summary"]) < 64 * 1024


def test_sshd_killed_in_the_middle_of_a_run(make_lab: Callable[..., Lab], tmp_path: Path) -> None:
    lab = make_lab(2)
    pb = tmp_path / "slow.yaml"
    pb.write_text(
        "name: slow\ndescription: a quick step, then a slow one\nsteps:\n"
        "  - id: quick\n    description: quick\n    run: uname -s\n"
        "  - id: slow\n    description: slow\n    run: sleep 8; echo finished\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diag.cli",
            "check",
            "--json",
            "-i",
            str(lab.inventory),
            "--known-hosts",
            str(lab.known_hosts),
            "-p",
            str(pb),
            "lab",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # wait until h02 is inside the slow step (its sleep runs), then kill its sshd and every session
        deadline = time.monotonic() + 60
        while not any("sleep 8" in c for c in lab.processes("h02")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the slow step never started on h02"
            time.sleep(0.05)
        lab.kill_sshd("h02")
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    by = results(json.loads(out))
    assert by["h01"]["status"] == "ok" and [s["status"] for s in by["h01"]["steps"]] == ["ok", "ok"]
    assert by["h02"]["status"] in ("error", "unreachable"), by["h02"]
    assert by["h02"]["error"] and lab.host("h02").address in by["h02"]["error"]
    assert [(s["id"], s["status"]) for s in by["h02"]["steps"]] == [("quick", "ok"), ("slow", "error")]
    assert proc.returncode == 3
