"""The runner over FakeConnection (unit tests only): statuses, exit codes, when/changes, evidence, JSON shape."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from diag import secrets
from diag.errors import AuthError, ConnectError, HostKeyError, Timeout, Unreachable
from diag.remote import playbook as pbmod
from diag.remote.runner import EVIDENCE_CAP, run_check
from diag.remote.ssh import CommandResult
from tests.unit.fake_ssh import FakeConnection, FakePool, host, result

PLAYBOOK = """\
name: t
description: test
vars:
  limit: 90
  who: nobody
steps:
  - id: df
    description: space
    run: df -P
    parse: {type: columns, names: [fs, kib, used, avail, pct, mount], types: {pct: int}}
    checks:
      - check: fs_full
        each: parsed
        if: item.pct >= limit
        severity: critical
        subject: "{{ item.mount }}"
        summary: "{{ item.mount }} is {{ item.pct }}% full"
      - check: fs_busy
        each: parsed
        if: 80 <= item.pct < limit
        severity: warning
        subject: "{{ item.mount }}"
        summary: "{{ item.mount }} is {{ item.pct }}% full"
  - id: detail
    description: only when something is full
    when: any(r.pct >= limit for r in df.parsed)
    run: du -x / --max-depth 1 {{ who }}
  - id: cleanup
    description: deletes old logs (needs approval)
    changes: true
    run: find /var/log -name '*.gz' -delete
  - id: secret
    description: prints a secret by accident
    run: cat /etc/app.conf
    checks:
      - check: leaks
        if: match('password', stdout)
        severity: info
        summary: "config: {{ strip(stdout) }}"
"""

HEADER = "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
DF_FULL = HEADER + "/dev/sda1 100 97 3 97% /\n/dev/sdb1 100 85 15 85% /srv\n"
DF_OK = HEADER + "/dev/sda1 100 10 90 10% /\n"


def pb(tmp_path: Path, text: str = PLAYBOOK) -> pbmod.Playbook:
    f = tmp_path / "t.yaml"
    f.write_text(textwrap.dedent(text))
    return pbmod.load(f)


def responder(df: str, **override: CommandResult) -> Any:
    def answer(command: str, timeout: float | None, sudo: bool) -> CommandResult:
        for key, res in override.items():
            if command.startswith(key):
                return res
        if command == "df -P":
            return result(command, df)
        if command == "cat /etc/app.conf":
            return result(command, "user=app\n")
        return result(command, f"ran: {command}\n")

    return answer


def test_statuses_exit_codes_and_the_json_contract(tmp_path: Path) -> None:
    hosts = [
        host(n, address=f"192.0.2.{i}")
        for i, n in enumerate(["ok1", "full", "down", "auth", "key", "slow", "boom", "lost"], 1)
    ]
    hang = result("du", "partial\n", None, timed_out=True)

    def boom(command: str, timeout: float | None, sudo: bool) -> CommandResult:
        raise RuntimeError("kaboom\nwith a second line")

    def lost(command: str, timeout: float | None, sudo: bool) -> CommandResult:
        if command == "df -P":
            return result(command, DF_FULL)
        raise ConnectError("192.0.2.8:22 (lost): connection lost while running a command")

    pool = FakePool(
        {
            "ok1": FakeConnection(responder(DF_OK)),
            "full": FakeConnection(responder(DF_FULL)),
            "down": Unreachable("192.0.2.3:22 (down): connection refused"),
            "auth": AuthError("192.0.2.4:22 (auth): publickey refused"),
            "key": HostKeyError("192.0.2.5:22 (key): host key differs from known_hosts"),
            "slow": FakeConnection(responder(DF_FULL, du=hang)),
            "boom": FakeConnection(boom),
            "lost": FakeConnection(lost),
        }
    )
    events: list[tuple[str, str]] = []
    report = run_check(hosts, pb(tmp_path), pool, {}, progress=lambda e, h, r: events.append((e, h)))
    by = {r.host: r for r in report.results}
    assert [r.host for r in report.results] == [h.name for h in hosts]
    assert {h: r.status for h, r in by.items()} == {
        "ok1": "ok",
        "full": "findings",
        "down": "unreachable",
        "auth": "auth_failed",
        "key": "hostkey_mismatch",
        "slow": "timeout",
        "boom": "error",
        "lost": "error",
    }
    assert by["down"].error == "192.0.2.3:22 (down): connection refused"
    assert by["slow"].error == "192.0.2.6:22 (slow): step detail: command timed out after 60 s"
    assert by["boom"].error == "192.0.2.7:22 (boom): RuntimeError: kaboom with a second line"
    assert "connection lost" in (by["lost"].error or "")
    assert by["lost"].findings, "findings made before the connection dropped are kept"
    assert report.exit_code() == 3
    assert sorted(events) == sorted([("start", h.name) for h in hosts] + [("done", h.name) for h in hosts])

    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["playbook"] == "t"
    for r in doc["results"]:
        assert {"host", "status", "error", "duration_s", "findings"} <= r.keys()
        assert isinstance(r["duration_s"], float)
        for f in r["findings"]:
            assert {"check", "severity", "summary", "cause", "evidence"} <= f.keys()
            assert f["severity"] in ("info", "warning", "critical")
    full = next(r for r in doc["results"] if r["host"] == "full")
    assert {(f["check"], f["subject"]) for f in full["findings"]} == {("fs_full", "/"), ("fs_busy", "/srv")}
    ev = full["findings"][0]["evidence"][0]
    assert ev["kind"] == "command" and ev["data"]["command"] == "df -P" and ev["data"]["exit_status"] == 0
    assert "97% /" in ev["text"] and ev["data"]["parsed"][0]["pct"] == 97


@pytest.mark.parametrize(
    ("df", "expected"),
    [(DF_OK, 0), ("Filesystem x\n/dev/a 1 1 1 85% /x\n", 1), (DF_FULL, 2)],
)
def test_nagios_exit_codes(tmp_path: Path, df: str, expected: int) -> None:
    report = run_check([host()], pb(tmp_path), FakePool({"web-03": FakeConnection(responder(df))}))
    assert report.exit_code() == expected


def test_when_skips_and_changes_need_approval(tmp_path: Path) -> None:
    book = pb(tmp_path)
    conn = FakeConnection(responder(DF_OK))
    r = run_check([host()], book, FakePool({"web-03": conn})).results[0]
    steps = {s.id: s for s in r.steps}
    assert steps["detail"].status == "skipped" and "when:" in (steps["detail"].reason or "")
    assert steps["cleanup"].status == "needs_approval"
    assert steps["cleanup"].command == "find /var/log -name '*.gz' -delete"
    assert [c[0] for c in conn.calls] == ["df -P", "cat /etc/app.conf"], "a changing step never runs without approval"
    assert r.status == "ok"

    conn = FakeConnection(responder(DF_FULL))
    run_check([host()], book, FakePool({"web-03": conn}), {"who": ";rm -rf /"}, allow_changes=True)
    assert [c[0] for c in conn.calls] == [
        "df -P",
        "du -x / --max-depth 1 ';rm -rf /'",
        "find /var/log -name '*.gz' -delete",
        "cat /etc/app.conf",
    ]


def test_evidence_masks_secrets_and_is_capped(tmp_path: Path) -> None:
    secrets.remember("hunter2-very-secret")
    big = "x" * (EVIDENCE_CAP + 5000)
    conn = FakeConnection(
        responder(
            DF_OK,
            **{"cat /etc/app.conf": result("cat /etc/app.conf", "password=hunter2-very-secret\n" + big, stderr="warn")},
        )
    )
    r = run_check([host()], pb(tmp_path), FakePool({"web-03": conn})).results[0]
    f = next(f for f in r.findings if f.check == "leaks")
    assert "hunter2-very-secret" not in f.summary and "password=***" in f.summary
    ev = f.evidence[0]
    assert "hunter2" not in ev.text and ev.text.startswith("password=***")
    assert len(ev.text) < EVIDENCE_CAP + 100 and ev.data["truncated"] is True
    assert ev.data["stderr"] == "warn"


def test_expression_errors_are_host_errors_not_crashes(tmp_path: Path) -> None:
    text = PLAYBOOK.replace("if: match('password', stdout)", "if: int(stdout) > 1")
    hosts = [host("a", address="192.0.2.1"), host("b", address="192.0.2.2")]
    pool = FakePool({"a": FakeConnection(responder(DF_FULL)), "b": FakeConnection(responder(DF_OK))})
    report = run_check(hosts, pb(tmp_path, text), pool)
    for r in report.results:
        assert r.status == "error"
        prefix = f"192.0.2.{2 if r.host == 'b' else 1}:22 ({r.host}): step secret: check leaks:"
        assert r.error is not None and r.error.startswith(prefix) and "not a number" in r.error
    assert any(f.check == "fs_full" for f in report.results[0].findings)
    assert report.exit_code() == 3


def test_parse_errors_and_missing_variables(tmp_path: Path) -> None:
    text = """\
    name: j
    vars:
      svc: {required: true}
    steps:
      - id: j
        description: json
        run: systemctl show {{ svc }}
        parse: {type: json}
    """
    book = pb(tmp_path, text)
    conn = FakeConnection(lambda c, t, s: result(c, "not json"))
    r = run_check([host()], book, FakePool({"web-03": conn}), {"svc": "x"}).results[0]
    assert r.status == "error" and r.error is not None and "parse (json): output is not JSON" in r.error
    r = run_check([host()], book, FakePool({"web-03": conn})).results[0]
    assert r.status == "error" and "variable 'svc' is required" in (r.error or "")
    r = run_check([host(vars={"svc": "cron"})], book, FakePool({"web-03": conn})).results[0]
    assert conn.calls[-1][0] == "systemctl show cron"


def test_timeouts_sudo_and_applies_to(tmp_path: Path) -> None:
    text = """\
    name: s
    applies_to: {device_types: [linux], tags: [web]}
    steps:
      - id: a
        description: privileged
        run: cat /var/log/secure
        sudo: true
        timeout: 2.5
      - id: b
        description: default timeout from the inventory
        run: uptime
    """
    book = pb(tmp_path, text)
    conn = FakeConnection(lambda c, t, s: result(c, "ok"))
    hosts = [
        host("w", tags=("web",), command_timeout=7.0),
        host("sw", device_type="cisco_ios", tags=("web",)),
        host("db"),
    ]
    report = run_check(hosts, book, FakePool({"w": conn}))
    assert conn.calls == [("cat /var/log/secure", 2.5, True), ("uptime", 7.0, False)]
    assert [r.host for r in report.results] == ["w"]
    assert [s["host"] for s in report.skipped] == ["sw", "db"]
    assert "cisco_ios" in report.skipped[0]["reason"]


def test_concurrency_is_bounded_by_the_pool(tmp_path: Path) -> None:
    import threading
    import time

    running = 0
    peak = 0
    lock = threading.Lock()

    def slow(command: str, timeout: float | None, sudo: bool) -> CommandResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return result(command, DF_OK)

    hosts = [host(f"h{i}", address=f"192.0.2.{i}") for i in range(1, 21)]
    pool = FakePool({h.name: FakeConnection(slow) for h in hosts}, max_concurrency=3)
    report = run_check(hosts, pb(tmp_path), pool)
    assert len(report.results) == 20 and peak <= 3
    assert {r.status for r in report.results} == {"ok"}


def test_timeout_error_class_maps_to_timeout(tmp_path: Path) -> None:
    pool = FakePool({"web-03": Timeout("192.0.2.10:22 (web-03): connect timed out after 5 s")})
    r = run_check([host()], pb(tmp_path), pool).results[0]
    assert r.status == "timeout" and "timed out" in (r.error or "")


def test_a_failing_progress_callback_does_not_lose_results(tmp_path: Path) -> None:
    def broken(event: str, name: str, r: object) -> None:
        raise RuntimeError("display gone")

    report = run_check([host()], pb(tmp_path), FakePool({"web-03": FakeConnection(responder(DF_OK))}), progress=broken)
    assert [r.status for r in report.results] == ["ok"]


def test_later_steps_see_earlier_results(tmp_path: Path) -> None:
    text = """\
    name: v
    steps:
      - id: a
        description: fails
        run: systemctl is-active nginx
      - id: b
        description: runs because a failed
        when: a.ran and not a.ok and a.exit == 3 and strip(a.stdout) == 'inactive'
        run: journalctl -u nginx
      - id: c
        description: skipped because b ran
        when: b.skipped
        run: "true"
      - id: d
        description: sees that c was skipped
        when: c.skipped and not c.ran and c.exit is null
        run: echo d
    """

    def answer(command: str, timeout: float | None, sudo: bool) -> CommandResult:
        return result(command, "inactive\n", 3) if command.startswith("systemctl") else result(command, "ok\n")

    conn = FakeConnection(answer)
    r = run_check([host()], pb(tmp_path, text), FakePool({"web-03": conn})).results[0]
    assert [(s.id, s.status) for s in r.steps] == [("a", "failed"), ("b", "ok"), ("c", "skipped"), ("d", "ok")]
    assert [c[0] for c in conn.calls] == ["systemctl is-active nginx", "journalctl -u nginx", "echo d"]
    assert r.status == "ok" and r.steps[0].reason == "exit status 3"


def test_unknown_key_apart_from_a_changed_one_with_the_whole_message_and_cut_output(tmp_path: Path) -> None:
    """hostkey_unknown is its own status; a host-key message keeps its last line (the ssh-keygen -R remedy);
    output cut at the limit says so in the JSON (truncated, bytes kept of bytes sent) and in the table."""
    import io

    from rich.console import Console

    from diag.cli.render_check import summary
    from diag.errors import HostKeyUnknown

    changed = HostKeyError(
        "192.0.2.5:22 (key): host key CHANGED: server offers ssh-ed25519 SHA256:" + "A" * 43 + " but "
        "/root/.ssh/known_hosts:12 has ssh-ed25519 SHA256:" + "B" * 43 + "; possible man-in-the-middle. If the "
        "change is expected, remove the old entry (ssh-keygen -R 192.0.2.5 -f /root/.ssh/known_hosts)"
    )
    big = CommandResult("df -P", 0, DF_OK[:100], "", 0.01, truncated=True, stdout_bytes=5 << 20)
    hosts = [host("key", address="192.0.2.5"), host("new", address="192.0.2.8"), host("big", address="192.0.2.9")]
    pool = FakePool(
        {
            "key": changed,
            "new": HostKeyUnknown("192.0.2.8:22 (new): unknown host key ssh-ed25519 SHA256:xyz (not in kh)"),
            "big": FakeConnection(responder(DF_OK, **{"df -P": big})),
        }
    )
    report = run_check(hosts, pb(tmp_path), pool)
    by = {r.host: r for r in report.results}
    assert by["key"].status == "hostkey_mismatch" and by["new"].status == "hostkey_unknown"
    assert len(str(changed)) > 300 and by["key"].error == str(changed)
    assert (by["key"].error or "").endswith("(ssh-keygen -R 192.0.2.5 -f /root/.ssh/known_hosts)")
    assert report.exit_code() == 3
    doc = json.loads(json.dumps(report.to_dict()))
    big_doc = next(r for r in doc["results"] if r["host"] == "big")
    step = next(s for s in big_doc["steps"] if s["id"] == "df")
    assert big_doc["truncated"] is True and step["truncated"] is True
    assert step["bytes_sent"] == 5 << 20 and step["bytes_kept"] == len(DF_OK[:100].encode())
    out = io.StringIO()
    summary(report, Console(file=out, width=200))
    text = out.getvalue()
    assert f"big: output of step df cut at the limit: kept {len(DF_OK[:100])} of {5 << 20} bytes" in text
    assert "hostkey_unknown" in text and "ssh-keygen -R 192.0.2.5" in text
