"""diskhealth: /proc/mdstat recordings (healthy, degraded, resyncing) and smartctl JSON (one SATA, one NVMe disk).

There are no disks SMART can read on the test machines, so SMART runs against a stand-in ``smartctl``
script on PATH that prints the recorded outputs (smartctl 7.3's JSON); the probe still runs it as a
real child process.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest

from diag.errors import NoData
from diag.model import Result
from diag.probes.base import Paths
from diag.probes.diskhealth import (
    DiskhealthOptions,
    DiskhealthProbe,
    parse_mdstat,
    parse_scan_open,
    parse_smartctl,
)

FIX = Path(__file__).parents[2] / "fixtures"
MD = FIX / "proc" / "diskhealth"
CMD = FIX / "cmd" / "diskhealth"


def samples(r: Result, name: str) -> dict[tuple[str, ...], float]:
    return {lv: v for m in r.metrics if m.name == name for lv, v in m.samples}


def make(tmp_path: Path, procfs: Path, **opts: Any) -> DiskhealthProbe:
    return DiskhealthProbe(msgspec.convert(opts, DiskhealthOptions), Paths(procfs=procfs, state=tmp_path / "state"))


def test_parse_healthy() -> None:
    arrays = {a.name: a for a in parse_mdstat((MD / "healthy" / "mdstat").read_text())}
    assert list(arrays) == ["md0", "md1", "md2", "md3"]
    md2 = arrays["md2"]
    assert (md2.level, md2.required, md2.working, md2.status) == ("raid5", 3, 3, "UUU")
    assert md2.members == {"sdf1": "active", "sde1": "active", "sdd1": "active", "sdc1": "spare"}
    assert md2.blocks == 3906762752 and md2.degraded == 0
    assert arrays["md3"].level == "raid0" and arrays["md3"].required is None


def test_parse_degraded() -> None:
    arrays = {a.name: a for a in parse_mdstat((MD / "degraded" / "mdstat").read_text())}
    assert arrays["md0"].degraded == 1 and arrays["md0"].members == {"sda1": "active"}
    assert arrays["md1"].members["sdb2"] == "failed" and arrays["md1"].degraded == 1
    assert arrays["md127"].state == "inactive" and arrays["md127"].members == {"sdc": "spare"}


def test_parse_resync() -> None:
    arrays = {a.name: a for a in parse_mdstat((MD / "resync" / "mdstat").read_text())}
    assert (arrays["md0"].action, arrays["md0"].progress, arrays["md0"].finish_min) == ("resync", 0.271, 0.6)
    assert arrays["md2"].action == "recovery" and arrays["md2"].degraded == 1
    assert arrays["md3"].action == "check"
    assert (arrays["md4"].action, arrays["md4"].progress) == ("resync", 0.0)  # resync=DELAYED


def test_md_healthy_has_no_findings(tmp_path: Path) -> None:
    r = make(tmp_path, MD / "healthy", smart=False).collect()
    assert r.findings == []
    assert samples(r, "diag_md_disks")[("md2", "spare")] == 1
    assert samples(r, "diag_md_state")[("md1", "active")] == 1
    assert samples(r, "diag_md_size_bytes")[("md0",)] == 523264 * 1024


def test_md_degraded_is_critical(tmp_path: Path) -> None:
    r = make(tmp_path, MD / "degraded", smart=False).collect()
    got = {(f.check, f.subject): f for f in r.findings}
    assert set(got) == {("md_degraded", "md0"), ("md_degraded", "md1"), ("md_inactive", "md127")}
    f = got[("md_degraded", "md1")]
    assert f.severity == "critical" and "failed: sdb2" in f.summary and "[U_]" in f.evidence[0].text
    assert samples(r, "diag_md_degraded_disks")[("md0",)] == 1


def test_md_resync_is_a_warning_and_check_is_info(tmp_path: Path) -> None:
    r = make(tmp_path, MD / "resync", smart=False).collect()
    sev = {(f.check, f.subject): f.severity for f in r.findings}
    assert sev[("md_resync", "md0")] == "warning"
    assert sev[("md_resync", "md2")] == "warning" and sev[("md_degraded", "md2")] == "critical"
    assert sev[("md_resync", "md3")] == "info"
    assert samples(r, "diag_md_sync_completed_ratio")[("md2", "recovery")] == pytest.approx(0.085)


def test_nothing_here_is_no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no smartctl
    with pytest.raises(NoData):
        make(tmp_path, tmp_path).collect()


def test_parse_scan_open() -> None:
    assert parse_scan_open((CMD / "scan-open.txt").read_text()) == [
        ["/dev/sda", "-d", "sat"],
        ["/dev/nvme0", "-d", "nvme"],
    ]


def test_parse_smartctl_sata_and_nvme() -> None:
    sata = parse_smartctl(json.loads((CMD / "smartctl-sata.json").read_text()))
    assert (sata.device, sata.protocol, sata.model, sata.passed) == ("sda", "ATA", "ST4000VN008-2DR166", True)
    assert (sata.reallocated, sata.pending, sata.offline_uncorrectable, sata.temperature) == (8, 2, 2, 35)
    assert sata.power_on_hours == 33761 and sata.percentage_used is None
    nvme = parse_smartctl(json.loads((CMD / "smartctl-nvme.json").read_text()))
    assert (nvme.device, nvme.protocol, nvme.passed, nvme.temperature) == ("nvme0", "NVMe", True, 41)
    assert (nvme.percentage_used, nvme.media_errors, nvme.critical_warning, nvme.available_spare) == (3, 0, 0, 100)


STAND_IN = """#!/bin/sh
# stand-in for smartctl: prints recorded outputs (see the test module's docstring)
case "$*" in
  --scan-open) cat {cmd}/scan-open.txt ;;
  *nvme0) cat {state}/nvme.json ;;
  *sda) cat {state}/sata.json; exit {sata_exit} ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def smartctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding what the stand-in prints for each disk; tests edit the JSON between runs."""
    outdir = tmp_path / "smart"
    outdir.mkdir()
    (outdir / "sata.json").write_text((CMD / "smartctl-sata.json").read_text())
    (outdir / "nvme.json").write_text((CMD / "smartctl-nvme.json").read_text())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "smartctl"
    exe.write_text(STAND_IN.format(cmd=CMD, state=outdir, sata_exit=0))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    return outdir


def edit(path: Path, fn: Any) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_smart_metrics_and_pending_sectors(tmp_path: Path, smartctl: Path) -> None:
    r = make(tmp_path, tmp_path).collect()  # no mdstat in tmp_path: SMART only
    assert samples(r, "diag_smart_healthy") == {("sda",): 1.0, ("nvme0",): 1.0}
    assert samples(r, "diag_smart_reallocated_sectors") == {("sda",): 8.0}
    assert samples(r, "diag_smart_nvme_used_ratio") == {("nvme0",): 0.03}
    assert samples(r, "diag_smart_power_on_seconds")[("nvme0",)] == 7321 * 3600
    assert ("sda", "ST4000VN008-2DR166", "ZDHTEST01") in samples(r, "diag_smart_device")
    assert [(f.check, f.subject, f.severity) for f in r.findings] == [("smart_pending_sectors", "sda", "warning")]
    ev = r.findings[0].evidence[0]
    assert (
        ev.title.startswith("smartctl -j -i -H -A") and "197 Current_Pending_Sector" in ev.text and "PASSED" in ev.text
    )


def test_smart_failed_health_and_rising_counters(tmp_path: Path, smartctl: Path) -> None:
    probe = make(tmp_path, tmp_path)
    probe.collect()

    def failing(doc: dict[str, Any]) -> None:
        doc["smart_status"]["passed"] = False
        for a in doc["ata_smart_attributes"]["table"]:
            if a["id"] == 5:
                a["raw"]["value"] = 24
                a["when_failed"] = "now"

    def worn(doc: dict[str, Any]) -> None:
        log = doc["nvme_smart_health_information_log"]
        log.update(media_errors=3, percentage_used=97, available_spare=5, critical_warning=1)

    edit(smartctl / "sata.json", failing)
    edit(smartctl / "nvme.json", worn)
    r = probe.collect()
    got = {(f.check, f.subject): f for f in r.findings}
    assert got[("smart_failed", "sda")].severity == "critical"
    assert "Reallocated_Sector_Ct (now)" in got[("smart_failed", "sda")].summary
    assert "8 -> 24" in got[("smart_reallocated_rising", "sda")].summary
    assert got[("smart_media_errors_rising", "nvme0")].severity == "warning"
    assert got[("smart_worn_out", "nvme0")].severity == "warning"
    assert got[("smart_spare_low", "nvme0")].severity == "critical"
    assert got[("smart_nvme_critical_warning", "nvme0")].severity == "critical"
    assert samples(r, "diag_smart_healthy")[("sda",)] == 0.0


def test_smart_unreadable_device_is_counted_not_fatal(tmp_path: Path, smartctl: Path) -> None:
    (smartctl / "sata.json").write_text(
        '{"smartctl": {"messages": [{"string": "Permission denied"}], "exit_status": 2}}'
    )
    exe = tmp_path / "bin" / "smartctl"
    exe.write_text(exe.read_text().replace("sata.json; exit 0", "sata.json; exit 2"))
    r = make(tmp_path, tmp_path).collect()
    assert samples(r, "diag_smart_read_error") == {("sda",): 1.0, ("nvme0",): 0.0}
    assert ("nvme0",) in samples(r, "diag_smart_healthy")
