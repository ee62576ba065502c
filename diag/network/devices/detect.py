"""Which platform is this device? netmiko's SSH autodetection, over diag's own verified SSH connection.

``diag inventory detect HOST`` logs into an inventory host exactly as ``diag check`` would (host key checked against
known_hosts or the TOFU store, never auto-added; credentials by reference; jump hosts) and runs netmiko's
:class:`netmiko.SSHDetect` on that session: ``show version``, ``display version``... and their patterns
(``Cisco IOS Software``, ``JUNOS ... Software``, ``Huawei Versatile Routing Platform``). netmiko knows neither MikroTik
RouterOS nor Eltex MES, so two patterns of diag's own are tried after its list. The answer is the inventory
``device_type`` of diag's driver for the detected netmiko type (``huawei`` -> ``huawei_vrp``, ``cisco_xe`` ->
``cisco_ios``), or the netmiko type with a note that diag has no driver for it.

netmiko reads each probe command's answer with a fixed 1 s pause and a 6 s quiet period; here a probe reads until
the prompt comes back instead (the same answer, measured 0.2-0.4 s a probe against the emulator instead of ~7 s).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netmiko import BaseConnection
from netmiko.exceptions import NetmikoBaseException, ReadTimeout
from netmiko.ssh_autodetect import SSH_MAPPER_BASE, SSHDetect

from diag.errors import ConnectError, Timeout
from diag.inventory import Host
from diag.network.devices.base import open_session, where_device
from diag.network.devices.registry import device_types, driver_class

#: netmiko autodetect names whose driver in diag has another inventory name.
_ALIASES = {"cisco_xe": "cisco_ios", "huawei": "huawei_vrp", "h3c_comware": "hp_comware", "eltex_esr": "eltex"}
#: Platforms netmiko's autodetection does not know, tried after its own list (same form as SSH_MAPPER_BASE).
_EXTRA: list[tuple[str, dict[str, Any]]] = [
    # RouterOS `system resource print`:  "platform: MikroTik", "board-name: CCR2004-16G-2S+"
    ("mikrotik_routeros", {"cmd": "system resource print", "search_patterns": [r"platform: MikroTik"],
                           "priority": 99, "dispatch": "_autodetect_std"}),
    # Eltex MES `show version`:  "Active-image: flash://system/images/mes3300-4019-R1.ros" / "SW version 4.0.19"
    ("eltex", {"cmd": "show version", "search_patterns": [r"(?i)\beltex\b", r"\bmes\d{4}"], "priority": 99,
               "dispatch": "_autodetect_std"}),
]  # fmt: skip


@dataclass
class Detection:
    host: str
    where: str
    device_type: str | None  # diag's inventory device_type, when diag has a driver for it
    netmiko_type: str | None  # what netmiko's autodetection answered
    scores: dict[str, int] = field(default_factory=dict)

    def advice(self) -> str:
        """One line: what to write in the inventory."""
        if self.device_type:
            return f"{self.host}: device_type: {self.device_type}"
        if self.netmiko_type:
            return (
                f"{self.host}: netmiko detects {self.netmiko_type}, which diag has no driver for "
                f"(drivers: {', '.join(device_types())})"
            )
        return f"{self.host}: platform not recognised (no autodetect pattern matched the device's answers)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "device_type": self.device_type,
            "netmiko_type": self.netmiko_type,
            "scores": self.scores,
            "inventory": {"device_type": self.device_type} if self.device_type else None,
        }


class _Prober:
    """The session hooks of a device whose platform is not known yet: wait for any prompt, change nothing."""

    logout_command = "exit"

    def prepare_session(self, session: BaseConnection) -> None:
        session._test_channel_read(pattern=r"[>#\]%$]")


class _Detect(SSHDetect):
    """SSHDetect on a session diag opened; probes read until the prompt instead of waiting 7 s each."""

    def __init__(self, session: BaseConnection, timeout: float) -> None:  # SSHDetect's own opens a connection
        self.connection = session
        self.initial_buffer = ""
        self.potential_matches: dict[str, int] = {}
        self._results_cache: dict[str, str] = {}
        self.timeout = timeout
        # The prompt as the device prints it now: the end of every answer (a "%" or ">" inside an answer, or at
        # the end of one read, is not the end of it).
        self.prompt = re.escape(session.find_prompt().strip())

    def _send_command(self, cmd: str = "") -> str:
        self.connection.write_channel(cmd + "\n")
        # This command's echo, then the prompt alone on the last line: a prompt left over from before (find_prompt
        # may press Enter twice) cannot end the read early and shift every later answer by one.
        end = rf"{re.escape(cmd)}[\s\S]*\n\s*{self.prompt}\s*$"
        try:
            out = self.connection.read_until_pattern(pattern=end, read_timeout=self.timeout)
        except ReadTimeout:
            return ""
        return str(self.connection.strip_backspaces(out))

    def run(self) -> tuple[str | None, dict[str, int]]:
        for device_type, spec in [*SSH_MAPPER_BASE, *_EXTRA]:
            spec = dict(spec)
            method = getattr(self, str(spec.pop("dispatch")))
            accuracy = method(**spec)
            if accuracy:
                self.potential_matches[device_type] = accuracy
                if accuracy >= 99:
                    break
        if not self.potential_matches:
            return None, {}
        best = max(self.potential_matches.items(), key=lambda kv: kv[1])[0]
        return best.removesuffix("_2").removesuffix("_85"), dict(self.potential_matches)


def detect(host: Host, known_hosts: Path | Iterable[Path] | None = None, data: Path | None = None) -> Detection:
    """Log into ``host`` with diag's verified SSH and find its platform; ConnectError subclasses when it cannot."""
    from diag.remote.ssh import SSHPool

    pool = SSHPool(
        known_hosts=known_hosts,
        tofu_store=(data / "known_hosts.tofu") if data is not None else None,
        max_concurrency=1,
    )
    where = where_device(host)
    try:
        conn = pool.connect(host)
        try:
            session = open_session(_Prober(), "autodetect", host, conn.transport)
        except ReadTimeout:
            raise Timeout(f"{where}: no CLI prompt within {host.connect_timeout:g} s after login") from None
        except (NetmikoBaseException, OSError, EOFError) as e:
            raise ConnectError(f"{where}: cannot start the CLI session: {' '.join(str(e).split())[:200]}") from None
        try:
            netmiko_type, scores = _Detect(session, host.command_timeout).run()
        finally:
            with contextlib.suppress(Exception):
                session.disconnect()
    finally:
        pool.close_all()
    device_type = None
    if netmiko_type:
        name = _ALIASES.get(netmiko_type, netmiko_type)
        if name in device_types():
            device_type = name
        else:  # a driver registered under another name for the same netmiko class
            device_type = next((n for n in device_types() if driver_class(n).netmiko_device_type == name), None)
    return Detection(host.name, where, device_type, netmiko_type, scores)


__all__ = ["Detection", "detect"]
