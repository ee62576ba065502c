"""Fetchers: host files over SSH (``diag.remote.ssh``), running configurations through the network device drivers.

Each fetched text is normalised (volatile lines dropped), masked (``diag.archive.redact``) and stored
(``diag.archive.store``). A target that cannot be fetched gets a status with a one-line reason; it never stops
the others. Host files are read with ``cat -- PATH`` on an exec channel: the path is one quoted shell word
(``diag.remote.quote``), checked to be absolute, and the command changes nothing on the host.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diag.archive.redact import Masker, load_key
from diag.archive.settings import ArchiveSettings
from diag.archive.store import RUNNING_CONFIG, Archive, FetchStatus, check_source
from diag.errors import DiagError
from diag.inventory import Host
from diag.remote import sh_join

if TYPE_CHECKING:
    from diag.remote.ssh import SSHConnection, SSHPool

log = logging.getLogger(__name__)

#: Reads a device's running configuration (the network device drivers' ``running_config``).
DeviceReader = Callable[[Host], str]


class FetchError(DiagError):
    """One source could not be fetched; the message is the one-line reason."""


@dataclass(slots=True)
class Job:
    """What to fetch from one host: files over SSH and/or the device's running configuration."""

    host: Host
    files: list[str] = field(default_factory=list)
    device: bool = False

    @property
    def sources(self) -> list[str]:
        return [*([RUNNING_CONFIG] if self.device else []), *self.files]


def plan(
    hosts: Iterable[Host],
    settings: ArchiveSettings,
    is_device: Callable[[Host], bool],
    extra_files: Iterable[str] = (),
) -> list[Job]:
    """Jobs for ``hosts``: a device's running configuration (when it has a driver and ``devices`` selects it), or
    the files configured for a shell host plus ``extra_files`` (a device's CLI has no files to ``cat``, so a group
    such as ``all`` that holds both gives files only to the shell hosts). Hosts with nothing to fetch get no job."""
    extra = [check_source(p) for p in extra_files]
    jobs = []
    for h in hosts:
        if is_device(h):
            if settings.wants_device(h):
                jobs.append(Job(h, [], True))
            continue
        files = [p for p in [*settings.files_for(h), *extra] if p != RUNNING_CONFIG]
        files = list(dict.fromkeys(files))
        if files:
            jobs.append(Job(h, files))
    return jobs


def normalise(text: str, ignore: list[re.Pattern[str]]) -> str:
    """Drop volatile lines (clock, "last change at"), unify line ends, end with one newline."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = [line.rstrip() for line in lines if not any(p.search(line) for p in ignore)]
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept) + "\n" if kept else ""


def read_file(conn: SSHConnection, path: str) -> str:
    """The text of ``path`` on the connected host (sudo when the host says so). FetchError with the reason."""
    host = conn.host
    r = conn.run(sh_join(["cat", "--", check_source(path)]), sudo=host.sudo)
    if r.timed_out:
        raise FetchError(f"reading {path} timed out after {host.command_timeout:g} s")
    if r.exit_status != 0:
        lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
        raise FetchError(lines[-1] if lines else f"cat {path}: exit status {r.exit_status}")
    if r.truncated:
        raise FetchError(f"{path} is larger than {conn.pool.output_cap} bytes; not archived")
    if "\0" in r.stdout:
        raise FetchError(f"{path} is a binary file; not archived")
    return r.stdout


class Fetcher:
    """Fetches jobs into an archive; ``pool`` opens SSH connections, ``device_reader`` reads running configs."""

    def __init__(
        self,
        archive: Archive,
        settings: ArchiveSettings,
        pool: SSHPool | None,
        device_reader: DeviceReader | None = None,
    ) -> None:
        self.archive = archive
        self.settings = settings
        self.pool = pool
        self.device_reader = device_reader
        self.masker = Masker(load_key(archive.root), settings.mask)

    def store(self, host: Host, source: str, raw: str) -> FetchStatus:
        kind = "device" if source == RUNNING_CONFIG else "host"
        extra: tuple[str, ...] = ()
        if kind == "device":  # the driver was loaded to read the configuration: its platform's secret syntax too
            devices: Any = importlib.import_module("diag.network.devices")
            extra = tuple(getattr(devices.driver_class(host.device_type), "mask_patterns", ()))
        text = self.masker.mask(normalise(raw, self.settings.ignore), kind, extra)
        self.archive.put(host.name, source, text)
        st = self.archive.status(host.name, source)
        assert st is not None  # put() always writes one
        return st

    def fail(self, host: Host, source: str, reason: str) -> FetchStatus:
        reason = self.masker.mask(reason.strip().splitlines()[0] if reason.strip() else "failed", "host")
        log.info("%s %s: %s", host.name, source, reason)
        return self.archive.record_error(host.name, source, reason)

    def run_job(self, job: Job) -> list[FetchStatus]:
        out: list[FetchStatus] = []
        if job.device:
            out.append(self._device(job.host))
        if job.files:
            out.extend(self._files(job.host, job.files))
        return out

    def _device(self, host: Host) -> FetchStatus:
        if self.device_reader is None:
            return self.fail(host, RUNNING_CONFIG, f"no driver reads the running configuration of {host.device_type}")
        try:
            raw = self.device_reader(host)
        except DiagError as e:
            return self.fail(host, RUNNING_CONFIG, str(e))
        except Exception as e:  # a driver library's own exception: one target's failure, not the whole run's
            log.debug("%s: running-config failed", host.name, exc_info=True)
            return self.fail(host, RUNNING_CONFIG, f"{type(e).__name__}: {e}")
        if not raw.strip():
            return self.fail(host, RUNNING_CONFIG, "the device returned an empty running configuration")
        return self.store(host, RUNNING_CONFIG, raw)

    def _files(self, host: Host, files: list[str]) -> list[FetchStatus]:
        if self.pool is None:
            return [self.fail(host, f, "no SSH pool to read host files with") for f in files]
        try:
            conn = self.pool.connect(host)
        except DiagError as e:
            return [self.fail(host, f, str(e)) for f in files]
        out = []
        for path in files:
            try:
                out.append(self.store(host, path, read_file(conn, path)))
            except DiagError as e:
                out.append(self.fail(host, path, str(e)))
        return out

    def run(self, jobs: list[Job]) -> list[FetchStatus]:
        """Run every job, ``settings.concurrency`` hosts at a time; statuses in job order."""
        if not jobs:
            return []
        started = time.monotonic()
        with ThreadPoolExecutor(min(self.settings.concurrency, len(jobs)), "archive-fetch") as ex:
            results = list(ex.map(self.run_job, jobs))
        statuses = [s for r in results for s in r]
        log.info(
            "archive: %d sources of %d targets in %.1f s (%d failed)",
            len(statuses),
            len(jobs),
            time.monotonic() - started,
            sum(1 for s in statuses if not s.ok),
        )
        return statuses


class DeviceSupport:
    """Running configurations through the drivers of ``diag.network.devices`` (netmiko), over the fetch's own SSH
    pool, so host keys, users, keys and jump hosts work as for host files. Without that package (or for a
    ``device_type`` it has no driver for) a host is not a device. :meth:`close` ends the device sessions."""

    def __init__(self, pool: SSHPool | None) -> None:
        self.pool = pool
        try:
            self._devices: Any = importlib.import_module("diag.network.devices")
        except ModuleNotFoundError as e:
            if e.name != "diag.network.devices":
                raise
            self._devices = None
        self._device_pool: Any = None
        self._lock = threading.Lock()

    def is_device(self, host: Host) -> bool:
        return self._devices is not None and bool(self._devices.is_device(host))

    @property
    def reader(self) -> DeviceReader | None:
        return self.read if self._devices is not None and self.pool is not None else None

    def read(self, host: Host) -> str:
        with self._lock:
            if self._device_pool is None:
                pool_mod = importlib.import_module("diag.network.devices.pool")
                self._device_pool = pool_mod.DevicePool(self.pool)
        text: str = self._device_pool.driver(host).running_config()
        return text

    def close(self) -> None:
        if self._device_pool is not None:
            self._device_pool.close_all()  # the drivers say goodbye, then their SSH pool closes
