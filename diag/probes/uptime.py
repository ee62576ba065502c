"""Boot time and uptime from /proc/stat and /proc/uptime; notices a reboot since the previous run.

The agent does not survive a reboot, so "the previous run" is remembered in a small state file
(``<state>/uptime.json``). The kernel's boot_id identifies a boot; btime alone can move by a few
seconds when the clock is stepped, so it is only a fallback, compared with a tolerance.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from diag.errors import NoData
from diag.model import Evidence, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

log = logging.getLogger(__name__)


class UptimeOptions(ProbeOptions, kw_only=True):
    reboot_notice_seconds: float = 3600.0  # keep the "host rebooted" finding this long after boot
    btime_tolerance_seconds: float = 60.0  # a clock step moves btime; only a bigger change is a reboot


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


@register
class UptimeProbe(Probe):
    name = "uptime"
    help = "Boot time and uptime; an info finding when the host rebooted since the previous run."
    Options = UptimeOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        self._state_file = paths.state / "uptime.json"
        self._saved: dict[str, Any] | None = None  # what the state file holds, read once

    def _btime(self) -> float:
        path = self.paths.proc("stat")
        # btime sits near the end of /proc/stat; find() avoids splitting the whole file into lines
        text = read_text(path)
        i = text.find("\nbtime ")
        if i < 0:
            raise NoData(f"{path}: no btime line")
        end = text.find("\n", i + 1)
        try:
            return float(text[i + 7 : end if end >= 0 else None])
        except ValueError:
            raise NoData(f"{path}: unreadable btime line") from None

    def _load_state(self) -> dict[str, Any]:
        if self._saved is None:
            try:
                raw = json.loads(self._state_file.read_text(encoding="utf-8"))
                self._saved = raw if isinstance(raw, dict) else {}
            except FileNotFoundError:
                self._saved = {}
            except (OSError, ValueError) as e:
                log.warning("%s: unreadable, starting afresh: %s", self._state_file, e)
                self._saved = {}
        return self._saved

    def _save_state(self, state: dict[str, Any]) -> None:
        if state == self._saved:
            return  # nothing changed: no write every run
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            tmp.replace(self._state_file)
        except OSError as e:
            # the figures are still right; only the reboot notice after the next reboot is at stake
            log.warning("%s: cannot save: %s", self._state_file, e.strerror)
        self._saved = state

    def collect(self) -> Result:
        assert isinstance(self.options, UptimeOptions)
        o = self.options
        up_path = self.paths.proc("uptime")
        up_text = read_text(up_path)
        try:
            uptime = float(up_text.split()[0])
        except (IndexError, ValueError):
            raise NoData(f"{up_path}:1: unexpected format {up_text[:80]!r}") from None
        btime = self._btime()
        try:
            boot_id = read_text(self.paths.proc("sys", "kernel", "random", "boot_id")).strip()
        except NoData:
            boot_id = ""
        r = Result()
        r.metric("diag_boot_time_seconds", "When the host booted (Unix time).").add(btime)
        r.metric("diag_uptime_seconds", "Seconds since the host booted.").add(uptime)

        prev = self._load_state()
        state: dict[str, Any] = {"boot_id": boot_id, "btime": btime, "previous": prev.get("previous")}
        if prev.get("btime") is not None:
            if boot_id and prev.get("boot_id"):
                rebooted = boot_id != prev["boot_id"]
            else:
                rebooted = abs(btime - float(prev["btime"])) > o.btime_tolerance_seconds
            if rebooted:
                state["previous"] = {"boot_id": prev.get("boot_id", ""), "btime": prev["btime"]}
        last = state["previous"]
        if last and uptime < o.reboot_notice_seconds:
            ev = Evidence(
                "metric",
                "boot time",
                f"previous boot {_fmt_time(float(last['btime']))}, this boot {_fmt_time(btime)}, up {uptime:.0f} s",
                {"previous_btime": last["btime"], "btime": btime, "uptime_seconds": uptime, "boot_id": boot_id},
            )
            r.find(
                "host_rebooted",
                "info",
                f"host rebooted at {_fmt_time(btime)}",
                subject="boot",
                cause="reboot",
                evidence=[ev],
            )
        self._save_state(state)
        return r
