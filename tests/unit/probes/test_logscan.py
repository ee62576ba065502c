"""Log scanner: offsets across runs and restarts, rotation, the read budget, evidence, and the journal's JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from diag import secrets
from diag.errors import NoData
from diag.model import Result
from diag.probes.base import Paths
from diag.probes.logscan import (
    LINE_CAP,
    LogscanOptions,
    LogscanProbe,
    _message,
    _stream_journal,
    parse_journal_json,
    split_alternatives,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "logscan"
OOM = (FIXTURES / "oom-kern.log").read_text()
MIXED = (FIXTURES / "mixed-kern.log").read_text()


def make(tmp_path: Path, **opts: Any) -> LogscanProbe:
    opts.setdefault("files", ["/var/log/kern.log"])
    opts.setdefault("journal", False)
    options = msgspec.convert(opts, LogscanOptions)
    return LogscanProbe(options, Paths(rootfs=tmp_path / "root", state=tmp_path / "state"))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    p = tmp_path / "root" / "var" / "log" / "kern.log"
    p.parent.mkdir(parents=True)
    p.write_text("Nov 23 01:00:00 web-03 kernel: old line: Out of memory: Killed process 1 (old)\n")
    return p


def append(p: Path, text: str) -> None:
    with p.open("a") as f:
        f.write(text)


def matches(r: Result, pattern: str, source: str = "/var/log/kern.log") -> float:
    m = next(m for m in r.metrics if m.name == "diag_log_matches_total")
    return dict(((lv[0], lv[1]), v) for lv, v in m.samples).get((pattern, source), 0.0)


def finding(r: Result, check: str) -> Any:
    return next((f for f in r.findings if f.check == check), None)


def test_first_run_starts_at_end_then_reports_new_oom_lines(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path)
    first = probe.collect()
    assert first.findings == []  # the old OOM line is history, not news
    assert matches(first, "oom_kill") == 0
    append(log, OOM)
    second = probe.collect()
    f = finding(second, "log_oom_kill")
    assert f is not None and f.severity == "critical" and f.cause == "memory_exhausted"
    assert f.subject == "oom_kill"
    # three lines of the OOM report match: "invoked oom-killer", "oom-kill:", "Out of memory: Killed process"
    assert matches(second, "oom_kill") == 3
    text = f.evidence[0].text
    assert "python3 invoked oom-killer" in text and "Killed process 48213 (python3)" in text
    assert "old line" not in text
    assert "Hardware name" not in text  # only matching lines are evidence


def test_from_start_reads_existing_history(tmp_path: Path, log: Path) -> None:
    r = make(tmp_path, from_start=True).collect()
    assert matches(r, "oom_kill") == 1
    assert "old line" in finding(r, "log_oom_kill").evidence[0].text


def test_restart_keeps_offsets_and_counters(tmp_path: Path, log: Path) -> None:
    make(tmp_path).collect()
    append(log, OOM)
    assert matches(make(tmp_path).collect(), "oom_kill") == 3  # a new instance: reads only what is new
    again = make(tmp_path).collect()  # and another: nothing new
    assert again.findings == []
    assert matches(again, "oom_kill") == 3  # the counter survives restarts
    state = json.loads((tmp_path / "state" / "logscan.json").read_text())
    assert state["files"]["/var/log/kern.log"]["offset"] == log.stat().st_size


def test_every_default_pattern(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path)
    probe.collect()
    append(log, MIXED)
    r = probe.collect()
    got = {f.check: f for f in r.findings}
    assert set(got) == {"log_io_error", "log_segfault", "log_fs_error", "log_auth_failure", "log_hung_task"}
    assert matches(r, "io_error") == 2
    assert matches(r, "fs_error") == 2  # the EXT4 error and the read-only remount
    assert matches(r, "auth_failure") == 3
    assert got["log_io_error"].severity == "critical" and got["log_segfault"].severity == "warning"
    assert "CRON" not in "".join(f.evidence[0].text for f in r.findings)


def test_rotation_counts_every_line_exactly_once(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path)
    probe.collect()
    append(log, "a1 segfault at 1\n")
    probe.collect()
    append(log, "a2 segfault at 2\n")  # written before rotation, not read yet
    log.rename(log.with_name("kern.log.1"))
    log.write_text("b1 segfault at 3\n")
    append(log.with_name("kern.log.1"), "a3 segfault at 4\n")  # the old writer still had the file open
    r = probe.collect()
    assert matches(r, "segfault") == 4
    lines = finding(r, "log_segfault").evidence[0].text.splitlines()
    assert [ln.split()[0] for ln in lines] == ["a2", "a3", "b1"]
    append(log, "b2 segfault at 5\n")
    r = make(tmp_path).collect()  # after a restart too
    assert matches(r, "segfault") == 5
    assert finding(r, "log_segfault").evidence[0].text.split()[0] == "b2"


def test_rotated_file_renamed_again_is_found_by_inode(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path)
    probe.collect()
    append(log, "x1 segfault at 1\n")
    log.rename(log.with_name("kern.log-20251123"))  # dateext naming
    log.write_text("")
    r = probe.collect()
    assert matches(r, "segfault") == 1


def test_copytruncate_reads_from_start(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path)
    append(log, "padding line that makes the file longer than what comes after truncation\n")
    probe.collect()
    with log.open("w") as f:  # same inode, shorter: logrotate's copytruncate
        f.write("t1 segfault at 9\n")
    assert matches(probe.collect(), "segfault") == 1


def test_budget_limits_a_run_and_the_rest_comes_next_run(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path, max_bytes=4096)
    probe.collect()
    lines = [f"{i:05d} segfault at {i} padding padding padding\n" for i in range(400)]  # ~18 KiB
    append(log, "".join(lines))
    r = probe.collect()
    first = matches(r, "segfault")
    assert 0 < first < 400
    backlog = next(m for m in r.metrics if m.name == "diag_log_backlog_bytes").samples[0][1]
    assert backlog > 0
    total = first
    for _ in range(10):
        r = probe.collect()
        total = matches(r, "segfault")
    assert total == 400  # nothing lost, nothing twice
    read = next(m for m in r.metrics if m.name == "diag_log_bytes_read_total").samples
    assert read[0][1] == sum(len(x) for x in lines)


def test_a_line_longer_than_the_budget_does_not_block(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path, max_bytes=4096)
    probe.collect()
    append(log, "segfault at " + "x" * 10000 + "\nsegfault at end\n")
    total = 0.0
    for _ in range(5):
        total = matches(probe.collect(), "segfault")
    assert total >= 2


def test_binary_junk_secrets_and_long_lines(tmp_path: Path, log: Path) -> None:
    secrets.remember("S3cretPassw0rd")
    probe = make(tmp_path)
    probe.collect()
    with log.open("ab") as f:
        f.write(b"\xff\xfe\x00junk Failed password S3cretPassw0rd \xc3\x28\n")
        f.write(b"Invalid user " + b"y" * 5000 + b"\n")
    r = probe.collect()
    text = finding(r, "log_auth_failure").evidence[0].text
    assert "S3cretPassw0rd" not in text and "***" in text
    assert "\ufffd" in text  # undecodable bytes replaced, not a crash
    long_line = text.splitlines()[1]
    assert len(long_line) < LINE_CAP + 50 and "more characters" in long_line


def test_evidence_keeps_the_last_20_lines(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path)
    probe.collect()
    append(log, "".join(f"n{i} segfault at {i}\n" for i in range(50)))
    f = finding(probe.collect(), "log_segfault")
    lines = f.evidence[0].text.splitlines()
    assert len(lines) == 20 and lines[0].startswith("n30") and lines[-1].startswith("n49")
    assert f.evidence[0].data["matches"] == 50


def test_custom_pattern_overrides_default_and_adds(tmp_path: Path, log: Path) -> None:
    probe = make(
        tmp_path,
        patterns=[
            {"name": "segfault", "regex": "segfault at", "severity": "critical"},
            {"name": "nfs_down", "regex": r"nfs: server \S+ not responding", "cause": "nfs_down"},
        ],
    )
    probe.collect()
    append(log, "segfault at 0\nkernel: nfs: server files1 not responding, still trying\n")
    r = probe.collect()
    assert finding(r, "log_segfault").severity == "critical"
    assert finding(r, "log_nfs_down").cause == "nfs_down"


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"patterns": [{"name": "x", "regex": "("}]}, "invalid regex"),
        ({"patterns": [{"name": "bad name", "regex": "x"}]}, "letters, digits"),
        ({"patterns": [{"name": "x", "regex": "x", "severity": "fatal"}]}, "Invalid enum value"),
        ({"max_bytes": 10}, "max_bytes"),
    ],
)
def test_bad_options_are_refused(opts: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(opts, LogscanOptions)


def test_no_sources_is_no_data(tmp_path: Path) -> None:
    with pytest.raises(NoData, match="none of the log files"):
        make(tmp_path, files=["/var/log/does-not-exist"]).collect()


def test_corrupt_state_starts_over_from_the_end(tmp_path: Path, log: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "logscan.json").write_text("{not json")
    r = make(tmp_path).collect()
    assert r.findings == []
    assert json.loads((tmp_path / "state" / "logscan.json").read_text())["version"] == 1


def test_file_that_appears_after_the_first_run_is_read_from_its_start(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path, files=["/var/log/kern.log", "/var/log/messages"])
    probe.collect()
    (log.parent / "messages").write_text("m1 segfault at 1\n")
    r = probe.collect()
    assert matches(r, "segfault", "/var/log/messages") == 1


def test_unreadable_file_is_reported_not_fatal(tmp_path: Path, log: Path) -> None:
    if os.geteuid() == 0:
        # root reads everything; make the "file" a directory so that opening it fails
        other = log.parent / "messages"
        other.mkdir()
    else:  # pragma: no cover - CI runs as root
        other = log.parent / "messages"
        other.write_text("")
        other.chmod(0)
    probe = make(tmp_path, files=["/var/log/kern.log", "/var/log/messages"], from_start=True)
    r = probe.collect()
    up = {lv[0]: v for lv, v in next(m for m in r.metrics if m.name == "diag_log_source_up").samples}
    assert up == {"/var/log/kern.log": 1.0, "/var/log/messages": 0.0}
    assert finding(r, "log_oom_kill") is not None


# --- journal ---------------------------------------------------------------------------------------------


def test_journal_json_messages() -> None:
    entries = parse_journal_json((FIXTURES / "journal.json").read_bytes() + b"garbage\n")
    assert len(entries) == 3
    assert _message(entries[0]) == "systemd[1]: Started session-4.scope - Session 4 of User alice."
    assert _message(entries[1]).startswith("kernel: Out of memory: Killed process 48213")
    binary = _message(entries[2])  # MESSAGE as a byte array with invalid UTF-8
    assert binary.startswith("sshd[3321]: Failed password for root") and "\ufffd" in binary


def test_stream_journal_reads_entries_and_remembers_the_last_cursor() -> None:
    # A real child process streams the recorded journalctl output (cat stands in for journalctl).
    msgs, cursor, nread, ok = _stream_journal(["cat", str(FIXTURES / "journal.json")], 1 << 20, 10)
    assert ok and len(msgs) == 3 and nread == (FIXTURES / "journal.json").stat().st_size
    assert cursor is not None and ";i=1a2d;" in cursor
    # with a small budget it stops early and the cursor is that of the last entry read
    msgs, cursor, nread, ok = _stream_journal(["cat", str(FIXTURES / "journal.json")], 100, 10)
    assert len(msgs) == 1 and cursor is not None and ";i=1a2b;" in cursor


def test_stream_journal_kills_a_hung_journalctl() -> None:
    msgs, cursor, _, _ = _stream_journal([sys.executable, "-c", "import time; time.sleep(60)"], 1000, 0.5)
    assert msgs == [] and cursor is None


@pytest.mark.parametrize(
    ("regex", "parts"),
    [
        ("a|b(c|d)", ["a", "b(c|d)"]),
        (r"x\|y|z", [r"x\|y", "z"]),
        ("[|]a|b", ["[|]a", "b"]),
        ("[]|]x|y", ["[]|]x", "y"]),
        ("(?i)a|b", ["(?i)a|b"]),  # a global flag applies to every part: kept whole
        (r"(a)\1|b", [r"(a)\1|b"]),  # a back reference needs its group: kept whole
        ("segfault at", ["segfault at"]),
    ],
)
def test_split_alternatives(regex: str, parts: list[str]) -> None:
    assert split_alternatives(regex) == parts


def test_split_patterns_count_a_line_once(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path)
    probe.collect()
    append(log, "kernel: blk_update_request: I/O error, dev sdb\nkernel: Buffer I/O error on dev sdb1\n")
    r = probe.collect()
    assert matches(r, "io_error") == 2  # the first line matches two of the three parts: counted once
    assert finding(r, "log_io_error").evidence[0].text.splitlines()[0].startswith("kernel: blk_update_request")


def test_a_cursor_journalctl_refuses_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # stand-in journalctl (no journal on the test machines): fails like a real one given a bad cursor
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "journalctl"
    exe.write_text('#!/bin/sh\necho "Failed to seek to cursor: Invalid argument" >&2\nexit 1\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    jdir = tmp_path / "j"
    jdir.mkdir()
    (jdir / "system.journal").write_bytes(b"")
    probe = make(tmp_path, files=[], journal=True, journal_directory=str(jdir))
    probe.state = {"version": 1, "journal": {"cursor": "s=bogus"}}
    r = probe.collect()
    up = next(m for m in r.metrics if m.name == "diag_log_source_up").samples
    assert up == [(("journal",), 0.0)]
    assert "cursor" not in probe.state["journal"]


def test_two_rotations_under_a_small_budget_lose_nothing(tmp_path: Path, log: Path) -> None:
    probe = make(tmp_path, max_bytes=4096)
    probe.collect()
    n = 0

    def write(p: Path, count: int) -> None:
        nonlocal n
        append(p, "".join(f"{n + i:05d} segfault at {i} {'p' * 40}\n" for i in range(count)))
        n += count

    write(log, 100)  # ~6.5 KiB: more than one run's budget
    probe.collect()
    log.rename(log.with_name("kern.log.1"))
    write(log, 100)
    log.with_name("kern.log.1").rename(log.with_name("kern.log.2"))  # rotated again before it was finished
    log.rename(log.with_name("kern.log.1"))
    write(log, 100)
    total = 0.0
    for _ in range(12):
        total = matches(probe.collect(), "segfault")
    assert total == n == 300
