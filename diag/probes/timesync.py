"""Clock synchronisation: the kernel's view from adjtimex(2), and chrony's or timedatectl's when they are here.

adjtimex(2) with no mode bits only reads (no privilege needed), as node_exporter's timex collector does:
offset, frequency adjustment, maximum and estimated error, and the status bits. The clock counts as
synchronised when STA_UNSYNC is clear and the maximum error is below 16 s (the test systemd-timedated
makes). ``chronyc -c tracking`` adds the measured offset from NTP time,
the stratum and the leap status; without chrony ``timedatectl show`` says whether NTP is on and synced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from dataclasses import dataclass

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Result
from diag.probes.base import Probe, ProbeOptions, register, run_command

log = logging.getLogger(__name__)

STA_PLL = 0x0001
STA_UNSYNC = 0x0040
STA_NANO = 0x2000
TIME_ERROR = 5
MAXERROR_SYNC_LIMIT_S = 16.0  # the kernel's NTP_PHASE_LIMIT: beyond it the clock is not synchronised
LEAP = {"Normal": 0, "Insert second": 1, "Delete second": 2, "Not synchronised": 3}


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h> (glibc, 64-bit and 32-bit alike: fields are int and long)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(slots=True)
class Timex:
    """What adjtimex(2) reports, in base units."""

    state: int  # TIME_OK .. TIME_ERROR
    offset_s: float
    freq_ratio: float  # 1 + adjustment
    maxerror_s: float
    esterror_s: float
    status: int
    tai_s: int
    tick_s: float

    @property
    def synchronised(self) -> bool:
        return not self.status & STA_UNSYNC and self.maxerror_s < MAXERROR_SYNC_LIMIT_S


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # find_library runs ldconfig as a child process: once per agent, not once per run
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def read_timex() -> Timex:
    """Call adjtimex(2) read-only; NoData where there is no such call (not Linux, no libc)."""
    libc = _libc()
    if libc is None:
        raise NoData("no C library to call adjtimex(2)")
    if not hasattr(libc, "adjtimex"):
        raise NoData("adjtimex(2) is not available on this system")
    tx = _Timex()  # modes = 0: read only
    state = libc.adjtimex(ctypes.byref(tx))
    if state < 0:
        err = ctypes.get_errno()
        raise ProbeError(f"adjtimex(2) failed: errno {err}")
    div = 1e9 if tx.status & STA_NANO else 1e6
    return Timex(
        state=state,
        offset_s=tx.offset / div,
        freq_ratio=1 + tx.freq / 65536 / 1e6,  # freq is in ppm with a 16-bit fraction
        maxerror_s=tx.maxerror / 1e6,
        esterror_s=tx.esterror / 1e6,
        status=tx.status,
        tai_s=tx.tai,
        tick_s=tx.tick / 1e6,
    )


@dataclass(slots=True)
class Chrony:
    reference: str
    stratum: int
    offset_s: float  # system time minus NTP time as chronyc -c prints it ("System time")
    last_offset_s: float
    rms_offset_s: float
    freq_ppm: float
    root_delay_s: float
    root_dispersion_s: float
    leap: str


def parse_chrony_tracking(text: str) -> Chrony:
    """``chronyc -c tracking``: one CSV line of 14 fields (reference id, name, stratum, ref time, ...)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    f = line.split(",")
    if len(f) < 14:
        raise ValueError(f"expected 14 comma-separated fields, got {len(f)}: {line[:120]!r}")
    return Chrony(
        reference=f[1] or f[0],
        stratum=int(f[2]),
        offset_s=float(f[4]),
        last_offset_s=float(f[5]),
        rms_offset_s=float(f[6]),
        freq_ppm=float(f[7]),
        root_delay_s=float(f[10]),
        root_dispersion_s=float(f[11]),
        leap=f[13].strip(),
    )


def parse_timedatectl(text: str) -> dict[str, str]:
    """``timedatectl show``: KEY=VALUE lines (NTP=yes, NTPSynchronized=no, Timezone=UTC, ...)."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


class TimesyncOptions(ProbeOptions, kw_only=True):
    offset_warning_seconds: float = 0.1
    offset_critical_seconds: float = 1.0
    unsynchronised_severity: str = "warning"  # "warning", "critical" or "info"

    def __post_init__(self) -> None:
        if self.unsynchronised_severity not in ("info", "warning", "critical"):
            raise ValueError("unsynchronised_severity must be info, warning or critical")
        if not 0 < self.offset_warning_seconds <= self.offset_critical_seconds:
            raise ValueError("need 0 < offset_warning_seconds <= offset_critical_seconds")


@register
class TimesyncProbe(Probe):
    name = "timesync"
    help = "Clock synchronisation: kernel offset, error and sync state; chrony tracking where installed."
    Options = TimesyncOptions

    def collect(self) -> Result:
        assert isinstance(self.options, TimesyncOptions)
        o = self.options
        r = Result()
        evidence: list[Evidence] = []
        try:
            tx: Timex | None = read_timex()
        except NoData as e:
            log.debug("timesync: %s", e)
            tx = None
        if tx is not None:
            r.metric("diag_timesync_offset_seconds", "Time offset the kernel is still correcting.").add(tx.offset_s)
            r.metric("diag_timesync_frequency_adjustment_ratio", "Kernel clock frequency adjustment (1 = none).").add(
                tx.freq_ratio
            )
            r.metric("diag_timesync_maxerror_seconds", "Kernel's maximum error estimate of the clock.").add(
                tx.maxerror_s
            )
            r.metric("diag_timesync_esterror_seconds", "Kernel's estimated error of the clock.").add(tx.esterror_s)
            r.metric("diag_timesync_status_flags", "Kernel clock status bits (STA_*), as a number.").add(tx.status)
            r.metric("diag_timesync_tai_offset_seconds", "Offset between TAI and UTC the kernel knows.").add(tx.tai_s)
            evidence.append(
                Evidence(
                    "metric",
                    "adjtimex(2)",
                    f"state {tx.state}, status 0x{tx.status:04x} "
                    f"(STA_UNSYNC {'set' if tx.status & STA_UNSYNC else 'clear'}), "
                    f"offset {tx.offset_s:.6f} s, maxerror {tx.maxerror_s:.3f} s, esterror {tx.esterror_s:.6f} s",
                )
            )
        synced = tx.synchronised if tx is not None else None
        offset = tx.offset_s if tx is not None else None

        chrony = self._chrony(r, evidence)
        if chrony is not None:
            offset = chrony.offset_s
            synced = chrony.leap != "Not synchronised" and (synced is None or synced)
        else:
            td = self._timedatectl(evidence)
            if td.get("NTPSynchronized") in ("yes", "no"):
                ntp_synced = td["NTPSynchronized"] == "yes"
                synced = ntp_synced if synced is None else synced and ntp_synced
        if tx is None and chrony is None and synced is None:
            raise NoData("neither adjtimex(2), chronyc nor timedatectl could tell the clock state here")
        if synced is not None:
            r.metric("diag_timesync_synchronized", "Whether the clock is synchronised (1) or not (0).").add(
                1.0 if synced else 0.0
            )
            if not synced:
                sev = o.unsynchronised_severity
                r.find(
                    "clock_unsynchronised",
                    "critical" if sev == "critical" else "info" if sev == "info" else "warning",
                    "the system clock is not synchronised (no working NTP)",
                    subject="clock",
                    cause="time_unsynchronised",
                    evidence=evidence,
                )
        if offset is not None:
            a = abs(offset)
            if a >= o.offset_warning_seconds:
                crit = a >= o.offset_critical_seconds
                r.find(
                    "clock_offset",
                    "critical" if crit else "warning",
                    f"the system clock is {a:.3f} s off "
                    f"(limit {o.offset_critical_seconds if crit else o.offset_warning_seconds:g} s)",
                    subject="clock",
                    cause="time_offset",
                    evidence=evidence,
                )
        return r

    def _chrony(self, r: Result, evidence: list[Evidence]) -> Chrony | None:
        argv = ["chronyc", "-c", "tracking"]
        try:
            proc = run_command(argv, self.options.timeout)
        except NoData:
            return None
        if proc.returncode != 0:
            # chronyd not running: chronyc says so; the kernel's view still stands.
            evidence.append(Evidence("command", " ".join(argv), (proc.stdout + proc.stderr).strip()[:1000]))
            return None
        try:
            c = parse_chrony_tracking(proc.stdout)
        except ValueError as e:
            raise ProbeError(f"chronyc -c tracking: {e}") from None
        src = ("source",)
        r.metric("diag_timesync_ntp_offset_seconds", "Offset of the system clock from NTP time.", labels=src).add(
            c.offset_s, "chrony"
        )
        r.metric("diag_timesync_ntp_stratum", "NTP stratum of the clock.", labels=src).add(c.stratum, "chrony")
        r.metric("diag_timesync_ntp_root_dispersion_seconds", "Root dispersion of the NTP source.", labels=src).add(
            c.root_dispersion_s, "chrony"
        )
        r.metric(
            "diag_timesync_ntp_leap_status",
            "NTP leap status: 0 normal, 1 insert second, 2 delete second, 3 not synchronised.",
            labels=src,
        ).add(LEAP.get(c.leap, 3), "chrony")
        evidence.append(Evidence("command", " ".join(argv), proc.stdout.strip()))
        return c

    def _timedatectl(self, evidence: list[Evidence]) -> dict[str, str]:
        if not self.paths.root("/run/systemd/system").is_dir():
            return {}  # timedatectl asks systemd-timedated over D-Bus: without systemd it can only fail
        argv = ["timedatectl", "show"]
        try:
            proc = run_command(argv, self.options.timeout)
        except (NoData, ProbeError):
            return {}
        if proc.returncode != 0:
            return {}  # no systemd/D-Bus here (containers): nothing more to learn
        evidence.append(Evidence("command", " ".join(argv), proc.stdout.strip()))
        return parse_timedatectl(proc.stdout)
