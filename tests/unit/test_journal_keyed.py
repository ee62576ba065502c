"""The keyed journal and its anchors: re-chaining a copy and cutting the tail are found by `diag journal verify`.

The attacker here can write ``journal.db`` (drop the triggers, edit, recompute every hash with diag's own
``Record.digest``) but cannot read the key, which lives outside the data directory, nor take back the anchor
lines already appended to a file elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from diag.errors import DiagError
from diag.journal import Journal, Record, _record
from diag.journal.anchor import line, write


def _diag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diag.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A journal begun unkeyed, then keyed, with an anchor taken after record 6 and two records after it."""
    data, keydir = tmp_path / "data", tmp_path / "etc"
    keydir.mkdir()
    key = keydir / "journal.key"
    assert _diag("journal", "key", "new", str(key)).returncode == 0
    assert (key.stat().st_mode & 0o777) == 0o400
    anchor = tmp_path / "other-mount" / "anchor.log"
    anchor.parent.mkdir()
    j = Journal(data / "journal.db")
    j.append("cli:ops", "check.started", "web-01", "running")
    j.close()
    j = Journal(data / "journal.db", f"file:{key}")
    for who in ("token:ivanova", "token:petrov", "token:sidorov", "token:ivanova"):
        j.append(who, "approval.approved", "web-01", "approved", {"approval": "a1"})
    write(str(anchor), line(j))
    j.append("token:petrov", "check.started", "web-02", "running")
    j.append("token:petrov", "check.finished", "web-02", "exit 0")
    j.close()
    return data, key, anchor


def _rechain(db: Path, edit_seq: int, drop_meta: bool) -> None:
    """What someone with write access but no key does: edit a record and recompute the chain with SHA-256."""
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER journal_no_update")
    if drop_meta:
        con.execute("DROP TABLE journal_meta")
    prev = "0" * 64
    for row in con.execute("SELECT * FROM journal ORDER BY seq").fetchall():
        rec = _record(row)
        if rec.seq == edit_seq:
            rec.actor = "token:mallory-was-never-here"
        rec.prev_hash = prev
        rec.hash = Record.digest(rec)
        con.execute(
            "UPDATE journal SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (rec.actor, rec.prev_hash, rec.hash, rec.seq),
        )
        prev = rec.hash
    con.commit()
    con.close()


def test_the_keyed_journal_verifies_with_key_and_anchor(keyed: tuple[Path, Path, Path]) -> None:
    data, key, anchor = keyed
    r = _diag("journal", "verify", "--data", str(data), "--key", str(key), "--anchor", str(anchor))
    assert r.returncode == 0, r.stderr
    assert "8 records" in r.stdout and "keyed" in r.stdout and "1 anchor(s) match" in r.stdout
    meta = dict(sqlite3.connect(data / "journal.db").execute("SELECT name, value FROM journal_meta").fetchall())
    assert meta["keyed_from"] == "2" and key.read_text().strip() not in json.dumps(meta)  # the reference only


def test_rechaining_a_copied_journal_is_detected_with_the_key_and_the_anchor(
    keyed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, key, anchor = keyed
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    _rechain(copy / "journal.db", edit_seq=3, drop_meta=True)
    # Without key and anchor the forgery passes: this is what the key and the anchor are for.
    plain = _diag("journal", "verify", "--data", str(copy))
    assert plain.returncode == 0, plain.stderr
    r = _diag("journal", "verify", "--data", str(copy), "--key", str(key), "--anchor", str(anchor))
    assert r.returncode == 1
    assert "does not say it is keyed" in r.stderr
    assert "record 6: its hash differs from the anchor" in r.stderr and "re-chained" in r.stderr
    assert "Traceback" not in r.stderr
    # keeping journal_meta does not help: records from 2 on fail the HMAC
    copy2 = tmp_path / "copy2"
    shutil.copytree(data, copy2)
    _rechain(copy2 / "journal.db", edit_seq=3, drop_meta=False)
    r2 = _diag("journal", "verify", "--data", str(copy2), "--key", str(key))
    assert r2.returncode == 1 and "record 3: its content does not match its hash" in r2.stderr


def test_truncating_the_tail_is_detected_with_the_anchor(keyed: tuple[Path, Path, Path]) -> None:
    data, key, anchor = keyed
    con = sqlite3.connect(data / "journal.db")
    con.execute("DROP TRIGGER journal_no_delete")
    con.execute("DELETE FROM journal WHERE seq >= 5")  # the anchor saw record 6
    con.commit()
    con.close()
    assert _diag("journal", "verify", "--data", str(data), "--key", str(key)).returncode == 0  # a valid shorter chain
    r = _diag("journal", "verify", "--data", str(data), "--anchor", str(anchor))
    assert r.returncode == 1
    assert "the journal ends at record 4" in r.stderr and "saw record 6: its tail was removed" in r.stderr


def test_a_keyed_journal_refuses_another_key_and_a_process_without_the_key(
    keyed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, key, _ = keyed
    other = tmp_path / "other.key"
    other.write_text("another-key-nobody-uses-" + os.urandom(8).hex())
    with pytest.raises(DiagError, match="keyed with key"):
        Journal(data / "journal.db", f"file:{other}")
    os.chmod(key, 0o600)
    hidden = tmp_path / "moved.key"
    key.rename(hidden)  # the reference stored in the journal no longer resolves: nobody may append unkeyed
    with pytest.raises(DiagError, match="journal key"):
        Journal(data / "journal.db")
    ro = Journal(data / "journal.db", verify_only=True)  # reading still works
    assert len(ro.query()) == 8
    with pytest.raises(DiagError, match="cannot be read here"):
        ro.append("cli:x", "check.started")
    ro.close()
    r = _diag("journal", "verify", "--data", str(data))
    assert r.returncode == 1 and "give --key" in r.stderr
    assert _diag("journal", "verify", "--data", str(data), "--key", str(hidden)).returncode == 0


def test_a_key_inside_the_data_directory_is_refused(tmp_path: Path) -> None:
    from diag.agent.daemon import load_config
    from diag.errors import ConfigError

    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"hosts: {{}}\nagent:\n  data: {tmp_path}/data\n  journal:\n    key: file:{tmp_path}/data/k\n")
    with pytest.raises(ConfigError, match="inside the data directory"):
        load_config(str(inv))


def test_journal_piped_into_head_ends_quietly(keyed: tuple[Path, Path, Path]) -> None:
    data, _, _ = keyed
    j = Journal(data / "journal.db")
    for i in range(3000):
        j.append("cli:ops", "command.sent", f"host-{i}", "exit 0", {"command": "uptime " * 10})
    j.close()
    r = subprocess.run(
        f"{sys.executable} -m diag.cli journal --data {data} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.stdout.count("\n") == 1 and r.stderr == "", r.stderr


def test_keying_reaches_every_holder_and_a_stale_plain_writer_is_stopped(tmp_path: Path) -> None:
    from diag.journal import open_journal

    data, key = tmp_path / "data", tmp_path / "journal.key"
    key.write_text("a-journal-key-for-this-test-" + os.urandom(8).hex())
    shared = open_journal(data)  # e.g. the API opened it first
    stale = Journal(data / "journal.db")  # another process, opened before keying
    shared.append("cli:ops", "check.started")
    assert open_journal(data, f"file:{key}") is shared and shared.keyed  # keyed in place, not replaced
    rec = shared.append("token:x", "login.failed")
    assert rec.hash == rec.digest(key.read_bytes().strip())
    with pytest.raises(DiagError, match="keyed since it was opened"):
        stale.append("cli:ops", "check.started")  # would be a plain record inside the keyed part
    stale.close()
    n, problems = Journal(data / "journal.db", verify_only=True).verify(key.read_bytes().strip())
    assert n == 3 and problems == []
