"""systemd units by state, and a critical finding for every failed unit with its ``systemctl status`` as evidence.

Only where systemd runs (``/run/systemd/system`` exists under the rootfs path, as sd_booted(3) checks);
elsewhere (containers, other init systems) the probe has no data. ``systemctl list-units --all
--output=json`` lists the units (one call gives the count of every state, failed ones included); older
systemd without JSON output (before 246) is read from ``--plain --no-legend`` instead.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Result
from diag.probes.base import Probe, ProbeOptions, register, run_command
from diag.secrets import mask

log = logging.getLogger(__name__)

ACTIVE_STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance")


class SystemdOptions(ProbeOptions, kw_only=True):
    status_lines: int = 20  # journal lines in each failed unit's status evidence
    status_cap: int = 4000  # characters of status output kept per unit
    max_status_units: int = 10  # failed units beyond this get a finding without status output
    ignore_units: list[str] = []  # failed units that are known and accepted (exact names)


@dataclass(slots=True, frozen=True)
class Unit:
    name: str
    load: str
    active: str
    sub: str
    description: str


def parse_units_json(text: str) -> list[Unit]:
    """``systemctl list-units --output=json``: a JSON array of {unit, load, active, sub, description}."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of units")
    return [
        Unit(
            str(u.get("unit", "")),
            str(u.get("load", "")),
            str(u.get("active", "")),
            str(u.get("sub", "")),
            str(u.get("description", "")),
        )
        for u in data
        if isinstance(u, dict) and u.get("unit")
    ]


def parse_units_plain(text: str) -> list[Unit]:
    """``systemctl list-units --plain --no-legend``: ``UNIT LOAD ACTIVE SUB DESCRIPTION...`` per line.

    Without ``--plain`` systemd prefixes failed units with a bullet (``●``); it is dropped here too.
    """
    out = []
    for line in text.splitlines():
        parts = line.lstrip("●* ").split(None, 4)
        if len(parts) >= 4:
            out.append(Unit(parts[0], parts[1], parts[2], parts[3], parts[4] if len(parts) > 4 else ""))
    return out


@register
class SystemdProbe(Probe):
    name = "systemd"
    help = "systemd units by state, and failed units with their status."
    Options = SystemdOptions

    def collect(self) -> Result:
        assert isinstance(self.options, SystemdOptions)
        o = self.options
        if not self.paths.root("/run/systemd/system").is_dir():
            raise NoData("systemd is not running here (no /run/systemd/system)")
        units = self._list_units()
        r = Result()
        by_state = r.metric("diag_systemd_units", "Loaded systemd units, by active state.", labels=("state",))
        counts = dict.fromkeys(ACTIVE_STATES, 0)
        for u in units:
            counts[u.active] = counts.get(u.active, 0) + 1
        for state, n in counts.items():
            by_state.add(n, state)
        failed = [u for u in units if u.active == "failed" and u.name not in o.ignore_units]
        failed_m = r.metric("diag_systemd_unit_failed", "A unit that is in the failed state (1).", labels=("unit",))
        deadline = time.monotonic() + o.timeout * 0.8  # status output is a nicety: never worth a timed-out run
        for i, u in enumerate(failed):
            failed_m.add(1.0, u.name)
            ev = [Evidence("text", "unit", f"{u.name}: load={u.load} active={u.active} sub={u.sub} ({u.description})")]
            if i < o.max_status_units and time.monotonic() < deadline:
                ev.insert(0, self._status(u.name))
            r.find(
                "systemd_unit_failed",
                "critical",
                f"systemd unit {u.name} has failed ({u.description or u.sub})",
                subject=u.name,
                cause="service_failed",
                evidence=ev,
            )
        return r

    def _list_units(self) -> list[Unit]:
        timeout = self.options.timeout
        base = ["systemctl", "list-units", "--all", "--no-pager"]
        proc = run_command([*base, "--output=json"], timeout)
        if proc.returncode == 0:
            try:
                return parse_units_json(proc.stdout)
            except ValueError as e:
                log.debug("systemctl JSON output not usable (%s); using the plain listing", e)
        # systemd older than 246 rejects --output=json: the plain listing says the same in columns.
        proc = run_command([*base, "--plain", "--no-legend"], timeout)
        if proc.returncode != 0:
            raise ProbeError(f"systemctl list-units failed ({proc.returncode}): {proc.stderr.strip()[:200]}")
        return parse_units_plain(proc.stdout)

    def _status(self, unit: str) -> Evidence:
        assert isinstance(self.options, SystemdOptions)
        argv = ["systemctl", "status", "--no-pager", "--full", f"--lines={self.options.status_lines}", "--", unit]
        try:
            proc = run_command(argv, self.options.timeout)
        except (NoData, ProbeError) as e:
            return Evidence("command", " ".join(argv), str(e), {"exit_status": None})
        text = mask(proc.stdout + proc.stderr)
        cap = self.options.status_cap
        if len(text) > cap:
            text = text[:cap] + f"\n... [{len(text) - cap} more characters]"
        # systemctl status exits 3 for a unit that is not active: that is the expected answer here.
        return Evidence("command", " ".join(argv), text, {"exit_status": proc.returncode})
