"""Disk health: md RAID arrays from /proc/mdstat, and SMART health of each disk when smartmontools is installed.

md: every array's state, member disks (active, failed, spare, missing), and resync/recovery progress; a
degraded array is critical, a rebuild or resync in progress a warning (the array has no redundancy
to spare until it ends), a scheduled ``check`` only information. SMART: ``smartctl --scan-open`` finds
the disks and ``smartctl -j -i -H -A`` reads each (``-n standby`` keeps sleeping disks asleep): overall
health, temperature, reallocated and pending sectors (ATA), wear and media errors (NVMe). Failed health
is critical; pending sectors, and reallocated sectors or media errors that rose since the previous run,
are warnings. With neither md arrays nor smartctl here the probe has no data.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Gap, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register, run_command

log = logging.getLogger(__name__)

EVIDENCE_CAP = 4000  # characters of smartctl output kept as evidence

_ARRAY = re.compile(
    r"^(md\S*) : (\S+)(?: \((?:read-only|auto-read-only)\))?(?: (\S+))?((?: \S+\[\d+\](?:\([A-Z]\))*)*)"
)
_MEMBER = re.compile(r"(\S+)\[(\d+)\]((?:\([A-Z]\))*)")
_STATUS = re.compile(r"\[(\d+)/(\d+)\] \[([U_]+)\]")
_BLOCKS = re.compile(r"^\s+(\d+) blocks")
_SYNC = re.compile(r"(resync|recovery|reshape|check|repair)\s*=\s*([\d.]+)%(?:.*?finish=([\d.]+)min)?")
_SYNC_WAIT = re.compile(r"(resync|recovery|reshape|check|repair)\s*=\s*(DELAYED|PENDING)")


class DiskhealthOptions(ProbeOptions, kw_only=True):
    interval: float = 60.0  # SMART figures change slowly; reading them wakes controllers up
    timeout: float = 30.0  # smartctl on a few disks in a row
    mdstat: bool = True
    smart: bool = True  # when smartctl is installed
    devices: list[str] = []  # SMART devices to read ("/dev/sda" or "/dev/sda -d sat"); empty: smartctl --scan-open
    wear_warning_percent: float = 90.0  # NVMe percentage_used


@dataclass(slots=True)
class MdArray:
    name: str
    state: str  # active, inactive
    level: str  # raid1, raid5, ... ("" when inactive)
    members: dict[str, str] = field(default_factory=dict)  # disk -> active, failed, spare, replacement
    required: int | None = None  # [n/m]: n
    working: int | None = None  # [n/m]: m
    status: str = ""  # [UU_]
    blocks: int = 0  # 1 KiB blocks
    action: str = ""  # resync, recovery, reshape, check, repair
    progress: float | None = None  # 0..1
    finish_min: float | None = None
    text: str = ""  # the array's stanza, for evidence

    @property
    def degraded(self) -> int:
        if self.required is not None and self.working is not None:
            return max(0, self.required - self.working)
        return 0

    @property
    def failed(self) -> int:
        return sum(1 for v in self.members.values() if v == "failed")


def parse_mdstat(text: str) -> list[MdArray]:
    """Parse /proc/mdstat; arrays in the order listed."""
    arrays: list[MdArray] = []
    cur: MdArray | None = None
    for line in text.splitlines():
        m = _ARRAY.match(line)
        if m:
            name, state, level, members = m.group(1), m.group(2), m.group(3) or "", m.group(4) or ""
            if state == "inactive" and level and "[" in level:  # "md127 : inactive sdb[0](S)": no level
                members, level = f" {level}{members}", ""
            cur = MdArray(name, state, level, text=line)
            for disk, _, flags in _MEMBER.findall(members):
                cur.members[disk] = (
                    "failed"
                    if "(F)" in flags
                    else "spare"
                    if "(S)" in flags
                    else "replacement"
                    if "(R)" in flags
                    else "active"
                )
            arrays.append(cur)
            continue
        if cur is None:
            continue
        if not line.strip():
            cur = None
            continue
        cur.text += "\n" + line
        b = _BLOCKS.match(line)
        if b:
            cur.blocks = int(b.group(1))
        s = _STATUS.search(line)
        if s:
            cur.required, cur.working, cur.status = int(s.group(1)), int(s.group(2)), s.group(3)
        y = _SYNC.search(line)
        if y:
            cur.action, cur.progress = y.group(1), float(y.group(2)) / 100
            cur.finish_min = float(y.group(3)) if y.group(3) else None
        else:
            w = _SYNC_WAIT.search(line)
            if w:
                cur.action, cur.progress = w.group(1), 0.0
    return arrays


# --- SMART -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SmartDisk:
    device: str  # sda, nvme0
    protocol: str  # ATA, NVMe, SCSI
    model: str = ""
    serial: str = ""
    passed: bool | None = None
    temperature: float | None = None
    power_on_hours: float | None = None
    reallocated: float | None = None
    pending: float | None = None
    offline_uncorrectable: float | None = None
    percentage_used: float | None = None
    available_spare: float | None = None
    available_spare_threshold: float | None = None
    media_errors: float | None = None
    critical_warning: int | None = None
    failing_attributes: list[str] = field(default_factory=list)


def parse_scan_open(text: str) -> list[list[str]]:
    """``smartctl --scan-open``: ``/dev/sda -d sat # /dev/sda [SAT], ATA device`` -> [["/dev/sda", "-d", "sat"]]."""
    out = []
    for line in text.splitlines():
        spec = line.split("#", 1)[0].split()
        if spec and spec[0].startswith("/dev/"):
            out.append(spec)
    return out


def parse_smartctl(doc: dict[str, Any]) -> SmartDisk:
    """The figures diag uses from ``smartctl -j -i -H -A`` (smartctl 7.x JSON)."""
    dev = doc.get("device", {})
    name = str(dev.get("name", "?")).removeprefix("/dev/")
    d = SmartDisk(name, str(dev.get("protocol", "")), str(doc.get("model_name", "")), str(doc.get("serial_number", "")))
    status = doc.get("smart_status")
    if isinstance(status, dict) and "passed" in status:
        d.passed = bool(status["passed"])
    temp = doc.get("temperature", {})
    if isinstance(temp, dict) and isinstance(temp.get("current"), int | float):
        d.temperature = float(temp["current"])
    pot = doc.get("power_on_time", {})
    if isinstance(pot, dict) and isinstance(pot.get("hours"), int | float):
        d.power_on_hours = float(pot["hours"])
    for attr in doc.get("ata_smart_attributes", {}).get("table", []):
        raw = attr.get("raw", {}).get("value")
        aid = attr.get("id")
        if aid == 5:
            d.reallocated = float(raw)
        elif aid == 197:
            d.pending = float(raw)
        elif aid == 198:
            d.offline_uncorrectable = float(raw)
        if attr.get("when_failed") in ("now", "past"):
            d.failing_attributes.append(f"{attr.get('name', aid)} ({attr['when_failed']})")
    nvme = doc.get("nvme_smart_health_information_log")
    if isinstance(nvme, dict):
        d.percentage_used = _num(nvme.get("percentage_used"))
        d.available_spare = _num(nvme.get("available_spare"))
        d.available_spare_threshold = _num(nvme.get("available_spare_threshold"))
        d.media_errors = _num(nvme.get("media_errors"))
        cw = nvme.get("critical_warning")
        d.critical_warning = int(cw) if isinstance(cw, int) else None
        if d.temperature is None:
            d.temperature = _num(nvme.get("temperature"))
    return d


def render_smart(doc: dict[str, Any]) -> str:
    """The JSON as an engineer reads smartctl's text: health line, then the ATA attribute table or NVMe log."""
    dev = doc.get("device", {})
    lines = [
        f"device: {dev.get('name', '?')} ({doc.get('model_name', '?')}, serial {doc.get('serial_number', '?')}, "
        f"{dev.get('protocol', '?')})"
    ]
    status = doc.get("smart_status", {})
    if isinstance(status, dict) and "passed" in status:
        lines.append(f"SMART overall-health self-assessment test result: {'PASSED' if status['passed'] else 'FAILED!'}")
    table = doc.get("ata_smart_attributes", {}).get("table", [])
    if table:
        lines.append("ID# ATTRIBUTE_NAME           VALUE WORST THRESH WHEN_FAILED RAW_VALUE")
        for a in table:
            raw = a.get("raw", {}).get("string", a.get("raw", {}).get("value", ""))
            lines.append(
                f"{a.get('id', 0):>3} {a.get('name', '?'):<24} {a.get('value', 0):>5} {a.get('worst', 0):>5} "
                f"{a.get('thresh', 0):>6} {a.get('when_failed') or '-':<11} {raw}"
            )
    nvme = doc.get("nvme_smart_health_information_log")
    if isinstance(nvme, dict):
        lines.append("SMART/Health Information (NVMe Log 0x02)")
        lines += [f"  {k}: {v}" for k, v in nvme.items()]
    return "\n".join(lines)


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


_MD_CHECKS = frozenset({"md_degraded", "md_inactive", "md_resync"})
_SMART_CHECKS = frozenset(
    {
        "smart_failed", "smart_nvme_critical_warning", "smart_pending_sectors", "smart_reallocated_rising",
        "smart_media_errors_rising", "smart_worn_out", "smart_spare_low",
    }
)  # fmt: skip


@register
class DiskhealthProbe(Probe):
    name = "diskhealth"
    help = "md RAID state and resync progress; SMART health, sectors and wear where smartmontools is installed."
    Options = DiskhealthOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        # Last figures per disk: reallocated sectors and media errors that *rise* are the warning sign.
        self._last: dict[str, tuple[float | None, float | None]] = {}

    def collect(self) -> Result:
        assert isinstance(self.options, DiskhealthOptions)
        r = Result()
        have_md = self.options.mdstat and self._md(r)
        have_smart = self.options.smart and self._smart(r)
        if not have_md and not have_smart:
            raise NoData("no md RAID arrays and no SMART data (smartctl missing or no disks) here")
        # one half read and the other not: the other's incidents were not looked at (they hold, not clear)
        if self.options.smart and not have_smart:
            r.gaps.append(Gap("SMART not read (smartctl missing or no disks found)", _SMART_CHECKS))
        if self.options.mdstat and not have_md:
            r.gaps.append(Gap("md RAID not read (no /proc/mdstat or no arrays)", _MD_CHECKS))
        return r

    # --- md ----------------------------------------------------------------------------------------------

    def _md(self, r: Result) -> bool:
        try:
            text = read_text(self.paths.proc("mdstat"))
        except NoData:
            return False  # the md driver is not loaded
        arrays = parse_mdstat(text)
        if not arrays:
            return False
        state = r.metric("diag_md_state", "The array's state (1 for the current one).", labels=("device", "state"))
        disks = r.metric("diag_md_disks", "Member disks of the array, by role.", labels=("device", "state"))
        required = r.metric("diag_md_disks_required", "Disks the array needs to be complete.", labels=("device",))
        degraded = r.metric("diag_md_degraded_disks", "Disks the array is missing.", labels=("device",))
        size = r.metric("diag_md_size_bytes", "Size of the array.", labels=("device",))
        sync = r.metric(
            "diag_md_sync_completed_ratio",
            "Progress of a resync, recovery, reshape or check in progress.",
            labels=("device", "action"),
        )
        for a in arrays:
            current = a.action if a.action in ("resync", "recovery", "reshape", "check", "repair") else a.state
            for st in ("active", "inactive", "resync", "recovery", "reshape", "check", "repair"):
                state.add(1.0 if st == current else 0.0, a.name, st)
            for role in ("active", "failed", "spare", "replacement"):
                disks.add(sum(1 for v in a.members.values() if v == role), a.name, role)
            if a.required is not None:
                required.add(a.required, a.name)
                degraded.add(a.degraded, a.name)
            size.add(a.blocks * 1024, a.name)
            if a.action and a.progress is not None:
                sync.add(a.progress, a.name, a.action)
            self._judge_md(r, a)
        return True

    def _judge_md(self, r: Result, a: MdArray) -> None:
        ev = [Evidence("file", "/proc/mdstat", a.text)]
        failed = [d for d, v in a.members.items() if v == "failed"]
        if a.degraded or failed:
            what = f"{a.degraded} of {a.required} disk(s) missing" if a.degraded else ""
            if failed:
                what += ("; " if what else "") + f"failed: {', '.join(failed)}"
            r.find(
                "md_degraded",
                "critical",
                f"RAID array {a.name} ({a.level}) is degraded: {what} [{a.status}]",
                subject=a.name,
                cause="raid_degraded",
                evidence=ev,
            )
        if a.state == "inactive":
            r.find(
                "md_inactive",
                "critical",
                f"RAID array {a.name} is inactive (not assembled)",
                subject=a.name,
                cause="raid_degraded",
                evidence=ev,
            )
        if a.action and a.progress is not None:
            eta = f", about {a.finish_min:.0f} min left" if a.finish_min is not None else ""
            r.find(
                "md_resync",
                "info" if a.action == "check" else "warning",
                f"RAID array {a.name}: {a.action} at {a.progress * 100:.1f} %{eta}",
                subject=a.name,
                cause="raid_resync",
                evidence=ev,
            )

    # --- SMART -------------------------------------------------------------------------------------------

    def _smart(self, r: Result) -> bool:
        assert isinstance(self.options, DiskhealthOptions)
        timeout = self.options.timeout
        try:
            if self.options.devices:
                specs = [d.split() for d in self.options.devices]
            else:
                specs = parse_scan_open(run_command(["smartctl", "--scan-open"], timeout).stdout)
        except NoData:
            return False  # smartmontools not installed
        if not specs:
            return False
        healthy = r.metric(
            "diag_smart_healthy", "SMART overall health self-assessment passed (1) or failed (0).", labels=("device",)
        )
        info = r.metric(
            "diag_smart_device",
            "A disk SMART can read: its model and serial (always 1).",
            labels=("device", "model", "serial"),
        )
        temp = r.metric("diag_smart_temperature_celsius", "Temperature the disk reports.", labels=("device",))
        hours = r.metric("diag_smart_power_on_seconds", "Time the disk has been powered on.", labels=("device",))
        realloc = r.metric(
            "diag_smart_reallocated_sectors", "Sectors the disk has remapped (ATA attribute 5).", labels=("device",)
        )
        pending = r.metric(
            "diag_smart_pending_sectors",
            "Unreadable sectors waiting to be remapped (ATA attribute 197).",
            labels=("device",),
        )
        offline = r.metric(
            "diag_smart_offline_uncorrectable_sectors",
            "Sectors the offline scan could not read (ATA 198).",
            labels=("device",),
        )
        used = r.metric(
            "diag_smart_nvme_used_ratio",
            "Share of the NVMe disk's rated endurance used (can exceed 1).",
            labels=("device",),
        )
        spare = r.metric(
            "diag_smart_nvme_available_spare_ratio", "Share of the NVMe spare capacity left.", labels=("device",)
        )
        media = r.metric(
            "diag_smart_nvme_media_errors_total",
            "Unrecovered data integrity errors on the NVMe disk.",
            "counter",
            ("device",),
        )
        cwarn = r.metric(
            "diag_smart_nvme_critical_warning",
            "The NVMe critical warning bits (0 when all is well).",
            labels=("device",),
        )
        errors = r.metric(
            "diag_smart_read_error", "Whether smartctl could not read the device (1).", labels=("device",)
        )
        # The disks are read one after another within the probe's timeout; a disk that would overrun it
        # is left for the next run rather than making the whole run time out.
        deadline = time.monotonic() + timeout * 0.9
        for spec in specs:
            dev = spec[0]
            argv = ["smartctl", "-j", "-i", "-H", "-A", "-n", "standby", *spec[1:], dev]
            left = deadline - time.monotonic()
            # a disk not read this run was not looked at: its incidents hold (not "healthy again")
            unread = frozenset({dev.removeprefix("/dev/")})
            if left <= 0:
                log.warning("diskhealth: no time left for %s in this run", dev)
                errors.add(1.0, dev.removeprefix("/dev/"))
                r.gaps.append(Gap(f"{dev}: no time left in this run", subjects=unread))
                continue
            try:
                proc = run_command(argv, left)
            except ProbeError as e:
                log.warning("diskhealth: %s: %s", dev, e)
                errors.add(1.0, dev.removeprefix("/dev/"))
                r.gaps.append(Gap(f"{dev}: {e}", subjects=unread))
                continue
            try:
                doc = json.loads(proc.stdout)
            except ValueError:
                doc = None
            # smartctl's exit status is a bit mask: bit 1 means the device could not be opened (or, with
            # -n standby, that it sleeps); bit 0 a command line error. Health bits 3..7 still come with data.
            if not isinstance(doc, dict) or proc.returncode & 0b11:
                msgs = (
                    [m.get("string", "") for m in (doc or {}).get("smartctl", {}).get("messages", [])]
                    if isinstance(doc, dict)
                    else []
                )
                if any("STANDBY" in m.upper() for m in msgs):
                    r.gaps.append(Gap(f"{dev} is in standby (not woken to read it)", subjects=unread))
                    continue  # asleep: read it when it is awake anyway
                log.warning(
                    "diskhealth: smartctl %s failed (exit %d): %s",
                    dev,
                    proc.returncode,
                    "; ".join(msgs) or proc.stderr.strip()[:200],
                )
                errors.add(1.0, dev.removeprefix("/dev/"))
                r.gaps.append(Gap(f"{dev}: smartctl failed (exit {proc.returncode})", subjects=unread))
                continue
            d = parse_smartctl(doc)
            errors.add(0.0, d.device)
            info.add(1.0, d.device, d.model, d.serial)
            if d.passed is not None:
                healthy.add(1.0 if d.passed else 0.0, d.device)
            for metric, value in (
                (temp, d.temperature),
                (realloc, d.reallocated),
                (pending, d.pending),
                (offline, d.offline_uncorrectable),
                (media, d.media_errors),
            ):
                if value is not None:
                    metric.add(value, d.device)
            if d.power_on_hours is not None:
                hours.add(d.power_on_hours * 3600, d.device)
            if d.percentage_used is not None:
                used.add(d.percentage_used / 100, d.device)
            if d.available_spare is not None:
                spare.add(d.available_spare / 100, d.device)
            if d.critical_warning is not None:
                cwarn.add(d.critical_warning, d.device)
            self._judge_smart(r, d, argv, render_smart(doc))
        return True

    def _judge_smart(self, r: Result, d: SmartDisk, argv: list[str], output: str) -> None:
        assert isinstance(self.options, DiskhealthOptions)
        text = output if len(output) <= EVIDENCE_CAP else output[:EVIDENCE_CAP] + "\n... [truncated]"
        name = f"{d.device} ({d.model or d.protocol})"

        def ev(values: dict[str, Any]) -> list[Evidence]:
            return [Evidence("command", " ".join(argv), text, {"values": values})]

        if d.passed is False:
            r.find(
                "smart_failed",
                "critical",
                f"disk {name} fails its SMART health self-assessment"
                + (f": {', '.join(d.failing_attributes)}" if d.failing_attributes else ""),
                subject=d.device,
                cause="disk_failing",
                evidence=ev({"passed": False, "failing_attributes": d.failing_attributes}),
            )
        if d.critical_warning:
            r.find(
                "smart_nvme_critical_warning",
                "critical",
                f"NVMe disk {name} raises critical warning 0x{d.critical_warning:02x}",
                subject=d.device,
                cause="disk_failing",
                evidence=ev({"critical_warning": d.critical_warning}),
            )
        if d.pending:
            r.find(
                "smart_pending_sectors",
                "warning",
                f"disk {name} has {d.pending:.0f} unreadable sector(s) pending reallocation",
                subject=d.device,
                cause="disk_failing",
                evidence=ev({"pending": d.pending, "reallocated": d.reallocated}),
            )
        before = self._last.get(d.device)
        self._last[d.device] = (d.reallocated, d.media_errors)
        if before is None:  # the first read (also after a restart): nothing to compare with yet
            rising = frozenset({"smart_reallocated_rising", "smart_media_errors_rising"})
            r.gaps.append(Gap(f"disk {name}: no earlier read to compare with", rising, frozenset({d.device})))
        else:
            if d.reallocated is not None and before[0] is not None and d.reallocated > before[0]:
                r.find(
                    "smart_reallocated_rising",
                    "warning",
                    f"disk {name} reallocated {d.reallocated - before[0]:.0f} more sector(s) "
                    f"({before[0]:.0f} -> {d.reallocated:.0f})",
                    subject=d.device,
                    cause="disk_failing",
                    evidence=ev({"reallocated": d.reallocated, "previous": before[0]}),
                )
            if d.media_errors is not None and before[1] is not None and d.media_errors > before[1]:
                r.find(
                    "smart_media_errors_rising",
                    "warning",
                    f"NVMe disk {name} logged {d.media_errors - before[1]:.0f} new media error(s)",
                    subject=d.device,
                    cause="disk_failing",
                    evidence=ev({"media_errors": d.media_errors, "previous": before[1]}),
                )
        if d.percentage_used is not None and d.percentage_used >= self.options.wear_warning_percent:
            r.find(
                "smart_worn_out",
                "warning",
                f"NVMe disk {name} has used {d.percentage_used:.0f} % of its rated endurance",
                subject=d.device,
                cause="disk_worn_out",
                evidence=ev({"percentage_used": d.percentage_used}),
            )
        if (
            d.available_spare is not None
            and d.available_spare_threshold is not None
            and d.available_spare < d.available_spare_threshold
        ):
            r.find(
                "smart_spare_low",
                "critical",
                f"NVMe disk {name} has {d.available_spare:.0f} % spare left "
                f"(threshold {d.available_spare_threshold:.0f} %)",
                subject=d.device,
                cause="disk_worn_out",
                evidence=ev({"available_spare": d.available_spare}),
            )
