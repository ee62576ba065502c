"""The configuration archive against the SSH lab (real sshd hosts in namespaces, labs/lab.py) through the real CLI.

One flow, in order: fetch files from two hosts and a dead one (status with the reason, exit 3), secrets masked in
the store, an unchanged fetch makes no version, a change on the host makes a second version that ``diag config
diff`` shows (exit 1) with the secrets still masked, ``changes_before`` returns it with its diff excerpt, and a
hostile path reaches ``cat`` as one word. Then the agent's schedule fetches by itself. The dead host is a TCP port
on 127.0.0.1 (20200-20249) where nothing listens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from diag.archive.store import Archive
from tests.conftest import StartAgent, free_port, wait_for
from tests.labs.lab import Lab

pytestmark = pytest.mark.integration

AGENT_PORTS = range(20200, 20240)
DEAD_PORTS = range(20240, 20250)  # nothing listens: a dead host
SECRET1 = "hunter2-" + uuid.uuid4().hex[:8]
SECRET2 = "swordfish-" + uuid.uuid4().hex[:8]


def diag(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diag.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def fetch(cwd: Path, inv: Path, lab: Lab, *targets: str) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
    p = diag(cwd, "config", "fetch", "--json", "-i", str(inv), "--known-hosts", str(lab.known_hosts), *targets)
    assert p.stdout.strip(), p.stderr
    return p.returncode, {(s["target"], s["source"]): s for s in json.loads(p.stdout)}


def write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o644)  # read by the lab user over SSH


def inventory(lab: Lab, tmp: Path, app: Path, db: Path, dead_port: int, interval: float = 3600) -> Path:
    inv = lab.write_inventory(
        tmp / "inventory.yaml", extra_hosts={"dead": {"address": "127.0.0.1", "port": dead_port, "groups": ["lab"]}}
    )
    text = inv.read_text() + (
        "agent:\n"
        "  archive:\n"
        f"    interval: {interval}\n"
        "    files:\n"
        f"      h01: [{app}]\n"
        f"      h02: [{db}, {app.parent / 'missing.conf'}]\n"
        f"      dead: [{app}]\n"
        f"    known_hosts: [{lab.known_hosts}]\n"
        "    mask: ['(?i)^\\s*bind_pw\\s+(?P<s>\\S+)']\n"
    )
    inv.write_text(text)
    return inv


def stored_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (data / "archive").rglob("*") if p.is_file())


def test_fetch_change_diff_and_masking(ssh_lab: Lab, tmp_path: Path) -> None:
    files = ssh_lab.dir / f"archive-{uuid.uuid4().hex[:8]}"
    files.mkdir(mode=0o755)
    app, db = files / "app.conf", files / "db.conf"
    write(app, f"listen = 8080\ndb_password = {SECRET1}\nworkers = 4\n")
    write(db, f"host = db1\nbind_pw {SECRET2}\nurl = postgres://app:{SECRET2}@db1/app\n")
    dead_port = free_port(DEAD_PORTS)
    inv = inventory(ssh_lab, tmp_path, app, db, dead_port)

    rc, st = fetch(tmp_path, inv, ssh_lab, "all")
    assert rc == 3  # the dead host and the missing file
    assert st[("h01", str(app))]["state"] == "new" and st[("h01", str(app))]["version"] == 1
    assert st[("h02", str(db))]["state"] == "new"
    missing = st[("h02", str(files / "missing.conf"))]
    assert missing["state"] == "error" and "No such file or directory" in missing["reason"]
    dead = st[("dead", str(app))]
    assert dead["state"] == "error" and "connection refused" in dead["reason"] and "\n" not in dead["reason"]
    assert not any(h in {t for t, _ in st} for h in ("h03", "h04"))  # nothing configured for them

    data = tmp_path / ".diag"
    raw = stored_bytes(data)
    assert SECRET1.encode() not in raw and SECRET2.encode() not in raw
    shown = diag(tmp_path, "config", "show", f"h02:{db}")
    assert shown.returncode == 0, shown.stderr
    assert (
        "host = db1" in shown.stdout
        and "bind_pw <masked:" in shown.stdout
        and "postgres://app:<masked:" in shown.stdout
    )
    assert SECRET2 not in shown.stdout

    # Unchanged: no new version, the status says so.
    rc, st = fetch(tmp_path, inv, ssh_lab, "h01")
    assert rc == 0 and st[("h01", str(app))]["state"] == "unchanged" and st[("h01", str(app))]["version"] == 1
    same = diag(tmp_path, "config", "diff", "h01")
    assert same.returncode == 0 and same.stdout == ""  # one version: nothing to compare

    # Change the file on the host (port and password): a second version and a diff.
    before_change = time.time()
    write(app, f"listen = 9090\ndb_password = {SECRET1}-new\nworkers = 4\n")
    rc, st = fetch(tmp_path, inv, ssh_lab, "h01")
    assert rc == 0 and st[("h01", str(app))]["state"] == "changed" and st[("h01", str(app))]["version"] == 2
    listing = json.loads(diag(tmp_path, "config", "list", "h01", "--json").stdout)
    assert [v["version"] for v in listing] == [1, 2]

    d = diag(tmp_path, "config", "diff", "h01")
    assert d.returncode == 1, d.stderr
    assert "-listen = 8080" in d.stdout and "+listen = 9090" in d.stdout and " workers = 4" in d.stdout
    assert f"--- h01:{app}@v1" in d.stdout and f"+++ h01:{app}@v2" in d.stdout
    # The password changed: the diff shows that (two different tags) but not the values.
    old_tag = [x for x in d.stdout.splitlines() if x.startswith("-db_password = <masked:")]
    new_tag = [x for x in d.stdout.splitlines() if x.startswith("+db_password = <masked:")]
    assert len(old_tag) == len(new_tag) == 1 and old_tag[0][1:] != new_tag[0][1:]
    assert SECRET1 not in d.stdout and SECRET1.encode() not in stored_bytes(data)
    back = diag(tmp_path, "config", "diff", f"h01:{app}", "--from", "2", "--to", "1")
    assert back.returncode == 1 and "+listen = 8080" in back.stdout
    v1 = diag(tmp_path, "config", "show", "h01", "--version", "1")
    assert v1.returncode == 0 and "listen = 8080" in v1.stdout

    # The incident engine's view: a change in the hour before "now", with its diff excerpt.
    changes = Archive(data / "archive").changes_before("h01", time.time(), 3600)
    assert len(changes) == 1
    c = changes[0]
    assert (c.source, c.version, c.previous, c.added, c.removed) == (str(app), 2, 1, 2, 2)
    assert c.before_fault and c.previous_at <= before_change <= c.noticed_at
    assert "+listen = 9090" in c.diff and SECRET1 not in c.diff
    assert Archive(data / "archive").changes_before("h01", before_change - 7200, 3600) == []

    # Nothing archived / unknown version: exit 3 with one line.
    nothing = diag(tmp_path, "config", "diff", "h03")
    assert nothing.returncode == 3 and "not in the archive" in nothing.stderr
    bad = diag(tmp_path, "config", "show", "h01", "--version", "7")
    assert bad.returncode == 3 and "no version 7" in bad.stderr


def test_a_hostile_path_is_one_word_for_cat(ssh_lab: Lab, tmp_path: Path) -> None:
    marker = ssh_lab.dir / f"pwned-{uuid.uuid4().hex[:8]}"
    hostile = f"/nonexistent; touch {marker}; echo $(touch {marker})"
    inv = ssh_lab.write_inventory(tmp_path / "inventory.yaml")
    rc, st = fetch(tmp_path, inv, ssh_lab, "h03", "--file", hostile)
    assert rc == 3
    assert st[("h03", hostile)]["state"] == "error" and "No such file or directory" in st[("h03", hostile)]["reason"]
    assert not marker.exists()
    up = diag(tmp_path, "config", "fetch", "-i", str(inv), "h03", "--file", "/etc/../etc/passwd")
    assert up.returncode == 2 and "'..'" in up.stderr


def test_the_agent_fetches_on_its_schedule(ssh_lab: Lab, tmp_path: Path, start_agent: StartAgent) -> None:
    files = ssh_lab.dir / f"archive-{uuid.uuid4().hex[:8]}"
    files.mkdir(mode=0o755)
    app, db = files / "app.conf", files / "db.conf"
    write(app, "listen = 8080\n")
    write(db, "host = db1\n")
    inv = inventory(ssh_lab, tmp_path, app, db, free_port(DEAD_PORTS), interval=1)
    agent = start_agent(inv.read_text(), "--log-level", "info", ports=AGENT_PORTS)
    data = Path(agent.args[agent.args.index("--data") + 1])
    archive = Archive(data / "archive")
    wait_for(lambda: archive.versions("h01", str(app)), timeout=60, what="the first scheduled fetch")
    write(app, "listen = 9090\n")
    wait_for(lambda: len(archive.versions("h01", str(app))) == 2, timeout=60, what="a scheduled fetch of the change")
    status = archive.status("dead", str(app))
    assert status is not None and status.state == "error" and "connection refused" in (status.reason or "")
    wait_for(lambda: "archive: dead" in agent.stderr(), timeout=30, what="the failed source in the agent's log")
    version2 = f'diag_archive_version{{source="{app}",target="h01"}} 2.0'
    text = wait_for(lambda: next((t for t in [agent.metrics()] if version2 in t), None), 30, what="the run's metrics")
    assert f'diag_archive_fetch_success{{source="{app}",target="dead"}} 0.0' in text
    assert f'diag_archive_fetch_success{{source="{app}",target="h01"}} 1.0' in text
    assert "diag_archive_runs_total " in text and "diag_archive_last_run_duration_seconds " in text
    assert agent.stop() == 0
