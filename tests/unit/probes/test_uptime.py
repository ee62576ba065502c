"""Uptime probe on two recorded boots: the reboot between them is noticed once the state file exists."""

from __future__ import annotations

from pathlib import Path

from diag.probes.base import Paths
from diag.probes.uptime import UptimeOptions, UptimeProbe

FIX = Path(__file__).parents[2] / "fixtures" / "proc" / "uptime"


def test_reboot_between_two_agent_lifetimes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = UptimeProbe(UptimeOptions(), Paths(procfs=FIX / "boot1", state=state)).collect()
    got = {m.name: m.samples[0][1] for m in first.metrics}
    assert got == {"diag_boot_time_seconds": 1795394362.0, "diag_uptime_seconds": 3630.46}
    assert not first.findings  # nothing known about earlier boots
    assert (state / "uptime.json").exists()

    # a new agent process after the reboot (fresh probe object, same state directory)
    second = UptimeProbe(UptimeOptions(), Paths(procfs=FIX / "boot2", state=state)).collect()
    [f] = second.findings
    assert f.check == "host_rebooted" and f.severity == "info"
    assert "2026-11-23" in f.evidence[0].text and f.evidence[0].data["previous_btime"] == 1795394362.0

    # still the same boot on the next run: the notice stays while uptime is under an hour...
    assert len(UptimeProbe(UptimeOptions(), Paths(procfs=FIX / "boot2", state=state)).collect().findings) == 1
    # ...and not with a shorter notice window
    quiet = UptimeProbe(UptimeOptions(reboot_notice_seconds=60), Paths(procfs=FIX / "boot2", state=state))
    assert not quiet.collect().findings


def test_same_boot_is_not_a_reboot(tmp_path: Path) -> None:
    paths = Paths(procfs=FIX / "boot1", state=tmp_path)
    UptimeProbe(UptimeOptions(), paths).collect()
    assert not UptimeProbe(UptimeOptions(), paths).collect().findings
