"""systemd probe: parsers on recorded systemctl output, and the whole probe against a stand-in systemctl.

There is no systemd on the test machines (containers), so the live path is exercised with a stand-in
``systemctl`` script on PATH that prints the recorded outputs (systemd 252's formats) for the commands
the probe runs; the probe still runs it as a real child process through run_command.
"""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest

from diag.errors import NoData
from diag.probes.base import Paths
from diag.probes.systemd import SystemdOptions, SystemdProbe, parse_units_json, parse_units_plain

FIX = Path(__file__).parents[2] / "fixtures" / "cmd" / "systemd"

STAND_IN = f"""#!/bin/sh
# stand-in for systemctl: prints recorded outputs (see the test module's docstring)
case "$*" in
  *--output=json*)
    [ -n "$FAKE_NO_JSON" ] && {{ echo "Unknown output 'json'." >&2; exit 1; }}
    cat {FIX}/list-units.json ;;
  *--plain*) cat {FIX}/list-units-plain.txt ;;
  *status*nginx.service) cat {FIX}/status-nginx.service.txt; exit 3 ;;
  *status*) echo "x unit - failed"; exit 3 ;;
  *) exit 1 ;;
esac
"""


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "systemctl"
    exe.write_text(STAND_IN)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    return exe


def booted_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "run" / "systemd" / "system").mkdir(parents=True)
    return root


def make(tmp_path: Path, root: Path, **opts: object) -> SystemdProbe:
    return SystemdProbe(msgspec.convert(opts, SystemdOptions), Paths(rootfs=root, state=tmp_path / "state"))


def test_parse_json_and_plain_agree() -> None:
    j = parse_units_json((FIX / "list-units.json").read_text())
    p = parse_units_plain((FIX / "list-units-plain.txt").read_text())
    assert len(j) == 15
    assert j == p
    failed = [u.name for u in j if u.active == "failed"]
    assert failed == ["nginx.service", "postgresql@15-main.service"]
    assert j[0].description == "Arbitrary Executable File Formats File System Automount Point"


def test_plain_with_bullets() -> None:
    units = parse_units_plain(
        "● nginx.service loaded failed failed A web server\n  cron.service loaded active running Cron\n"
    )
    assert [(u.name, u.active) for u in units] == [("nginx.service", "failed"), ("cron.service", "active")]


def test_no_systemd_is_no_data(tmp_path: Path) -> None:
    with pytest.raises(NoData, match="systemd is not running"):
        make(tmp_path, tmp_path).collect()


def test_failed_units_with_status_evidence(tmp_path: Path, systemctl: Path) -> None:
    r = make(tmp_path, booted_root(tmp_path)).collect()
    states = {lv[0]: v for lv, v in next(m for m in r.metrics if m.name == "diag_systemd_units").samples}
    assert states["failed"] == 2 and states["active"] == 9 and states["inactive"] == 3 and states["activating"] == 1
    by_unit = {f.subject: f for f in r.findings}
    assert set(by_unit) == {"nginx.service", "postgresql@15-main.service"}
    f = by_unit["nginx.service"]
    assert f.severity == "critical" and f.check == "systemd_unit_failed" and f.cause == "service_failed"
    status = f.evidence[0]
    assert status.title.startswith("systemctl status") and status.data["exit_status"] == 3
    assert "Address already in use" in status.text


def test_plain_fallback_and_caps(tmp_path: Path, systemctl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NO_JSON", "1")
    r = make(tmp_path, booted_root(tmp_path), status_cap=100, max_status_units=1, ignore_units=[]).collect()
    assert len(r.findings) == 2
    nginx = next(f for f in r.findings if f.subject == "nginx.service")
    assert len(nginx.evidence[0].text) < 150 and "more characters" in nginx.evidence[0].text
    pg = next(f for f in r.findings if f.subject != "nginx.service")
    assert all(e.kind != "command" for e in pg.evidence)  # beyond max_status_units: no status call


def test_ignored_units(tmp_path: Path, systemctl: Path) -> None:
    r = make(tmp_path, booted_root(tmp_path), ignore_units=["postgresql@15-main.service"]).collect()
    assert [f.subject for f in r.findings] == ["nginx.service"]
