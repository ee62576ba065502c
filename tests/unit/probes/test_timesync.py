"""timesync: the real adjtimex(2) call, chronyc/timedatectl parsers on recorded output, and the judgement."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest

from diag.model import Result
from diag.probes import timesync
from diag.probes.base import Paths
from diag.probes.timesync import (
    STA_NANO,
    STA_UNSYNC,
    TimesyncOptions,
    TimesyncProbe,
    Timex,
    parse_chrony_tracking,
    parse_timedatectl,
    read_timex,
)

FIX = Path(__file__).parents[2] / "fixtures" / "cmd" / "timesync"


def test_adjtimex_reads_the_kernel_clock() -> None:
    tx = read_timex()
    assert 0 <= tx.state <= 5
    assert 0 < tx.tick_s < 0.1  # USER_HZ ticks: 10000 us on every Linux
    assert tx.maxerror_s >= 0 and 0.99 < tx.freq_ratio < 1.01
    assert tx.synchronised == (not tx.status & STA_UNSYNC and tx.maxerror_s < 16)


def test_parse_chrony() -> None:
    c = parse_chrony_tracking((FIX / "chronyc-tracking.csv").read_text())
    assert (c.reference, c.stratum, c.leap) == ("192.168.1.1", 3, "Normal")
    assert c.offset_s == pytest.approx(0.000012345) and c.root_dispersion_s == pytest.approx(0.000456789)
    assert parse_chrony_tracking((FIX / "chronyc-tracking-unsync.csv").read_text()).leap == "Not synchronised"
    with pytest.raises(ValueError, match="14 comma-separated"):
        parse_chrony_tracking("506 Cannot talk to daemon\n")


def test_parse_timedatectl() -> None:
    d = parse_timedatectl((FIX / "timedatectl-show.txt").read_text())
    assert d["NTP"] == "yes" and d["NTPSynchronized"] == "no" and d["Timezone"] == "Etc/UTC"


def synced(offset: float = 0.0) -> Timex:
    return Timex(0, offset, 1.0, 0.01, 0.001, STA_NANO | 0x1, 37, 0.01)


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty PATH directory; tests put stand-ins for chronyc/timedatectl there (recorded outputs)."""
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}:/bin")
    return d


def stand_in(bindir: Path, name: str, fixture: str, code: int = 0) -> None:
    exe = bindir / name
    exe.write_text(f"#!/bin/sh\ncat {FIX / fixture}\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def run(tmp_path: Path, tx: Timex, monkeypatch: pytest.MonkeyPatch, systemd: bool = False, **opts: object) -> Result:
    monkeypatch.setattr(timesync, "read_timex", lambda: tx)
    root = tmp_path / "root"
    if systemd:
        (root / "run" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    return TimesyncProbe(msgspec.convert(opts, TimesyncOptions), Paths(rootfs=root, state=tmp_path)).collect()


def test_kernel_synced_no_findings(tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run(tmp_path, synced(0.002), monkeypatch)
    assert r.findings == []
    values = {m.name: m.samples[0][1] for m in r.metrics}
    assert values["diag_timesync_synchronized"] == 1.0 and values["diag_timesync_offset_seconds"] == 0.002


def test_unsync_status_and_maxerror(tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tx = synced()
    tx.status |= STA_UNSYNC
    r = run(tmp_path, tx, monkeypatch)
    [f] = r.findings
    assert (f.check, f.severity, f.cause) == ("clock_unsynchronised", "warning", "time_unsynchronised")
    assert "STA_UNSYNC set" in f.evidence[0].text
    tx = synced()
    tx.maxerror_s = 16.0
    assert [f.check for f in run(tmp_path, tx, monkeypatch).findings] == ["clock_unsynchronised"]


def test_chrony_offset_thresholds(tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(bindir, "chronyc", "chronyc-tracking-offset.csv")
    r = run(tmp_path, synced(), monkeypatch)
    [f] = r.findings
    assert f.check == "clock_offset" and f.severity == "critical" and "1.735 s off" in f.summary
    assert any(e.title == "chronyc -c tracking" for e in f.evidence)
    r = run(tmp_path, synced(), monkeypatch, offset_warning_seconds=2, offset_critical_seconds=5)
    assert r.findings == []
    r = run(tmp_path, synced(), monkeypatch, offset_warning_seconds=1, offset_critical_seconds=5)
    assert [f.severity for f in r.findings] == ["warning"]


def test_chrony_not_synchronised(tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(bindir, "chronyc", "chronyc-tracking-unsync.csv")
    r = run(tmp_path, synced(), monkeypatch)
    assert [f.check for f in r.findings] == ["clock_unsynchronised"]
    leap = next(m for m in r.metrics if m.name == "diag_timesync_ntp_leap_status")
    assert leap.samples == [(("chrony",), 3.0)]


def test_timedatectl_without_chrony(tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(bindir, "timedatectl", "timedatectl-show.txt")
    assert run(tmp_path, synced(), monkeypatch).findings == []  # no systemd: timedatectl is not asked
    r = run(tmp_path, synced(), monkeypatch, systemd=True)
    [f] = r.findings
    assert f.check == "clock_unsynchronised" and any(e.title == "timedatectl show" for e in f.evidence)


def test_options_are_checked() -> None:
    with pytest.raises(msgspec.ValidationError, match="offset_warning_seconds"):
        msgspec.convert({"offset_warning_seconds": 2, "offset_critical_seconds": 1}, TimesyncOptions)
