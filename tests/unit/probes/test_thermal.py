"""thermal: a fixture sysfs tree with thermal zones (trip points) and hwmon chips (labels, max, crit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from diag.errors import NoData
from diag.probes.base import Paths
from diag.probes.thermal import ThermalOptions, ThermalProbe

SYS = Path(__file__).parents[2] / "fixtures" / "sys" / "thermal"


def make(tmp_path: Path, sysfs: Path, **opts: Any) -> ThermalProbe:
    return ThermalProbe(msgspec.convert(opts, ThermalOptions), Paths(sysfs=sysfs, state=tmp_path / "state"))


def test_sensors_and_limits(tmp_path: Path) -> None:
    r = make(tmp_path, SYS).collect()
    temps = {lv: v for m in r.metrics if m.name == "diag_thermal_celsius" for lv, v in m.samples}
    assert temps == {
        ("thermal_zone0", "acpitz", "zone"): 27.8,
        ("thermal_zone1", "x86_pkg_temp", "zone"): 96.0,
        ("hwmon0", "coretemp", "Package id 0"): 62.0,
        ("hwmon0", "coretemp", "Core 0"): 81.0,
        ("hwmon0", "coretemp", "Core 1"): 58.0,  # temp10 sorts after temp2
        ("hwmon1", "nvme", "Composite"): 76.85,
        ("hwmon1", "nvme", "Sensor 1"): 91.85,
        ("hwmon3", "it8728", "temp1"): 45.0,  # an old driver with its files under device/
    }
    crit = {lv: v for m in r.metrics if m.name == "diag_thermal_crit_celsius" for lv, v in m.samples}
    assert crit[("thermal_zone0", "acpitz", "zone")] == 105.0
    maxes = {lv: v for m in r.metrics if m.name == "diag_thermal_max_celsius" for lv, v in m.samples}
    assert maxes[("thermal_zone0", "acpitz", "zone")] == 95.0  # the passive trip point
    assert ("hwmon1", "nvme", "Sensor 1") not in maxes  # 65261.85 °C is "not set"
    assert ("thermal_zone1", "x86_pkg_temp", "zone") not in maxes  # a 0 °C trip point is "not set"


def test_findings(tmp_path: Path) -> None:
    r = make(tmp_path, SYS).collect()
    got = {f.subject: f for f in r.findings}
    assert set(got) == {"thermal_zone1/zone", "hwmon0/Core 0", "hwmon1/Sensor 1"}
    assert got["thermal_zone1/zone"].severity == "critical"  # 96 >= configured 95
    assert got["hwmon0/Core 0"].severity == "warning" and "sensor's high limit 80" in got["hwmon0/Core 0"].summary
    assert got["hwmon1/Sensor 1"].severity == "warning"  # 91.85 >= configured 85
    assert got["hwmon0/Core 0"].evidence[0].text == "81 °C; max 80 °C, crit 100 °C"
    assert all(f.check == "temperature_high" and f.cause == "overheating" for f in r.findings)


def test_thresholds_are_configurable(tmp_path: Path) -> None:
    r = make(tmp_path, SYS, warning_celsius=100, critical_celsius=110, use_sensor_limits=False).collect()
    assert r.findings == []
    r = make(tmp_path, SYS, warning_celsius=50, critical_celsius=60).collect()
    assert {f.subject for f in r.findings if f.severity == "critical"} == {
        "hwmon0/Package id 0",
        "hwmon0/Core 0",
        "hwmon1/Composite",
        "hwmon1/Sensor 1",
        "thermal_zone1/zone",
    }


def test_no_sensors_is_no_data(tmp_path: Path) -> None:
    (tmp_path / "class" / "thermal").mkdir(parents=True)  # like a VM: the class exists, no zones
    with pytest.raises(NoData, match="no thermal zones"):
        make(tmp_path, tmp_path).collect()
