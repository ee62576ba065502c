"""The probe contract: a self-registering class that reads the host and returns metrics and findings.

Like node_exporter's collectors, every probe reads files through swappable roots (``Paths``) so tests
can point it at recorded fixtures, raises :class:`NoData` when what it watches is absent here, and has
its own options (with defaults) validated from the ``agent.probes.<name>`` section of the config.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import msgspec

from diag.errors import NoData, ProbeError
from diag.model import Result
from diag.registry import Registry


class ProbeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options every probe has; a probe's own Options class extends this one."""

    enabled: bool = True
    interval: float = 15.0
    timeout: float = 10.0

    def problems(self) -> list[tuple[str, str]]:
        """(option, message) for every value that cannot be meant; a probe may extend it for its own rules.

        By the names, for every probe at once: a number is never negative (a ``*_celsius`` may be); a
        ``*_percent`` is at most 100; and a ``...warning...`` threshold stays on the same side of its
        ``...critical...`` twin as the defaults have it (memory's available_warning_percent is above its critical
        one, filesystem's warning_percent below), so that a warning comes before the critical finding.
        """
        out: list[tuple[str, str]] = []
        values = msgspec.structs.asdict(self)
        defaults = type(self)()
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or name in ("interval", "timeout"):
                continue  # interval and timeout: the agent section checks them for every probe
            if value != value or (value < 0 and not name.endswith("_celsius")):  # value != value: NaN
                out.append((name, f"{name} must not be negative (got {value:g})"))
            elif name.endswith("_percent") and value > 100:
                out.append((name, f"{name} is a percentage, at most 100 (got {value:g})"))
            if "warning" in name and (twin := name.replace("warning", "critical", 1)) in values:
                crit, wdef, cdef = values[twin], getattr(defaults, name), getattr(defaults, twin)
                if isinstance(crit, int | float) and wdef != cdef and (value > crit) != (wdef > cdef) and value != crit:
                    side = "above" if wdef < cdef else "below"
                    out.append((name, f"{name} {value:g} must not be {side} {twin} {crit:g} (a warning comes first)"))
        return out


@dataclass(slots=True)
class Paths:
    """Where the host's files are: /proc, /sys and / by default, a fixture tree in tests."""

    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    rootfs: Path = Path("/")
    state: Path = field(default_factory=lambda: Path(".diag"))

    def proc(self, *parts: str) -> Path:
        return self.procfs.joinpath(*parts)

    def sys(self, *parts: str) -> Path:
        return self.sysfs.joinpath(*parts)

    def root(self, path: str) -> Path:
        return self.rootfs / path.lstrip("/")


def read_text(path: Path) -> str:
    """Read a kernel file; absent or unreadable becomes NoData (the hardware or feature is not here)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise NoData(f"{path} does not exist") from None
    except OSError as e:
        raise NoData(f"{path}: {e.strerror}") from None


def run_command(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a helper program (systemctl, chronyc, smartctl) with a timeout that kills it.

    A missing program is NoData; a program that hangs is a ProbeError, and it is killed.
    """
    if shutil.which(argv[0]) is None:
        raise NoData(f"{argv[0]} is not installed")
    try:
        # errors="replace": a helper that prints a stray non-UTF-8 byte must not fail the whole probe.
        return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{argv[0]} did not answer within {timeout:g} s") from None


class Probe:
    """Base class. Subclasses set ``name``, ``help``, optionally ``Options``, and implement collect()."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    Options: ClassVar[type[ProbeOptions]] = ProbeOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        self.options = options
        self.paths = paths

    def collect(self) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError


probes: Registry[type[Probe]] = Registry("probe")


def register(cls: type[Probe]) -> type[Probe]:
    """Class decorator: add a probe to the registry under its ``name``."""
    probes.add(cls.name, cls)
    return cls
