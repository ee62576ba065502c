"""Temperatures of thermal zones and hwmon sensors, judged against configured limits and the sensors' own.

Thermal zones (/sys/class/thermal/thermal_zone*/temp, with trip points) and hwmon chips
(/sys/class/hwmon/hwmon*/temp*_input with _label, _max, _crit) both report millidegrees Celsius.
Virtual machines and containers usually have neither: that is "no data", not an error. A sensor
whose file cannot be read (some return EIO or ENODATA while the device sleeps) is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from diag.errors import NoData
from diag.model import Evidence, Result
from diag.probes.base import Probe, ProbeOptions, register

_TEMP_INPUT = re.compile(r"temp(\d+)_input$")
_TRIP_TYPE = re.compile(r"trip_point_(\d+)_type$")


class ThermalOptions(ProbeOptions, kw_only=True):
    warning_celsius: float = 85.0  # any sensor at or above this is a warning...
    critical_celsius: float = 95.0  # ...and at or above this critical
    use_sensor_limits: bool = True  # also judge against the sensor's own max (warning) and crit (critical)


@dataclass(slots=True)
class Sensor:
    device: str  # thermal_zone0, hwmon2
    chip: str  # zone type (x86_pkg_temp) or hwmon chip name (coretemp, nvme)
    sensor: str  # label (Package id 0, Composite) or tempN / zone
    celsius: float
    max: float | None = None
    crit: float | None = None

    @property
    def subject(self) -> str:
        return f"{self.device}/{self.sensor}"


def _millideg(path: Path) -> float | None:
    """A millidegree file as degrees; None when it is missing or unreadable right now."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def _text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _limit(v: float | None) -> float | None:
    # Several chips report 0 or absurd limits (e.g. 255 °C, -273 °C) for "not set": ignore those.
    return v if v is not None and 0 < v < 200 else None


def _index(p: Path) -> int:
    m = _TEMP_INPUT.match(p.name)
    return int(m.group(1)) if m else 0


def read_zones(base: Path) -> list[Sensor]:
    out = []
    for zone in sorted(base.glob("thermal_zone*")):
        temp = _millideg(zone / "temp")
        if temp is None:
            continue
        kind = _text(zone / "type") or zone.name
        hot: list[float] = []
        crit: list[float] = []
        for f in zone.glob("trip_point_*_type"):
            m = _TRIP_TYPE.match(f.name)
            t = _millideg(zone / f"trip_point_{m.group(1)}_temp") if m else None
            trip = _text(f)
            if t is None or _limit(t) is None:
                continue
            if trip == "critical":
                crit.append(t)
            elif trip in ("hot", "passive"):  # passive: the kernel starts throttling here
                hot.append(t)
        out.append(Sensor(zone.name, kind, "zone", temp, min(hot, default=None), min(crit, default=None)))
    return out


def read_hwmon(base: Path) -> list[Sensor]:
    out = []
    for chip in sorted(base.glob("hwmon*")):
        # Older drivers keep their files in hwmonN/device/ rather than hwmonN/.
        d = chip if any(chip.glob("temp*_input")) else chip / "device"
        name = _text(chip / "name") or _text(d / "name") or chip.name
        for inp in sorted(d.glob("temp*_input"), key=_index):
            temp = _millideg(inp)
            if temp is None:
                continue
            prefix = inp.name.removesuffix("_input")
            label = _text(d / f"{prefix}_label") or prefix
            out.append(
                Sensor(
                    chip.name,
                    name,
                    label,
                    temp,
                    _limit(_millideg(d / f"{prefix}_max")),
                    _limit(_millideg(d / f"{prefix}_crit")),
                )
            )
    return out


@register
class ThermalProbe(Probe):
    name = "thermal"
    help = "Temperatures of thermal zones and hwmon sensors, with their limits."
    Options = ThermalOptions

    def collect(self) -> Result:
        sensors = read_zones(self.paths.sys("class", "thermal")) + read_hwmon(self.paths.sys("class", "hwmon"))
        if not sensors:
            raise NoData("no thermal zones or hwmon temperature sensors here")
        r = Result()
        labels = ("device", "chip", "sensor")
        temp = r.metric("diag_thermal_celsius", "Temperature a sensor reports.", labels=labels)
        maxm = r.metric("diag_thermal_max_celsius", "The sensor's own high limit (hot or max).", labels=labels)
        critm = r.metric("diag_thermal_crit_celsius", "The sensor's own critical limit.", labels=labels)
        for s in sensors:
            temp.add(s.celsius, s.device, s.chip, s.sensor)
            if s.max is not None:
                maxm.add(s.max, s.device, s.chip, s.sensor)
            if s.crit is not None:
                critm.add(s.crit, s.device, s.chip, s.sensor)
            self._judge(r, s)
        return r

    def _judge(self, r: Result, s: Sensor) -> None:
        assert isinstance(self.options, ThermalOptions)
        o = self.options
        severity = None
        why = ""
        if s.celsius >= o.critical_celsius:
            severity, why = "critical", f"at or above the critical limit {o.critical_celsius:g} °C"
        elif o.use_sensor_limits and s.crit is not None and s.celsius >= s.crit:
            severity, why = "critical", f"at or above the sensor's critical limit {s.crit:g} °C"
        elif s.celsius >= o.warning_celsius:
            severity, why = "warning", f"at or above the warning limit {o.warning_celsius:g} °C"
        elif o.use_sensor_limits and s.max is not None and s.celsius >= s.max:
            severity, why = "warning", f"at or above the sensor's high limit {s.max:g} °C"
        if severity is None:
            return
        limits = (
            ", ".join(f"{k} {v:g} °C" for k, v in (("max", s.max), ("crit", s.crit)) if v is not None)
            or "no limits reported"
        )
        r.find(
            "temperature_high",
            "critical" if severity == "critical" else "warning",
            f"{s.chip} {s.sensor} is {s.celsius:g} °C, {why}",
            subject=s.subject,
            cause="overheating",
            evidence=[Evidence("metric", f"{s.device} ({s.chip}) {s.sensor}", f"{s.celsius:g} °C; {limits}")],
        )
