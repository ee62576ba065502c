"""Scheduled SNMP polling of the inventory's devices: every host with ``snmp.profiles`` on an interval.

Polls run in a small thread pool (they mostly wait on UDP answers), so a device that does not answer
delays only its own slot. The latest result of each device is kept; :meth:`SnmpPoller.metrics` gives
all of them with a ``target`` label (the agent encodes them for ``/snmp/inventory``), and
:meth:`SnmpPoller.findings` their findings. One 201-interface if_mib poll costs ~0.026 s of CPU here
(docs/snmp.md), so a thousand such devices fit a 60 s interval on one core.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from diag.model import Finding, Gap, Metric, Result

if TYPE_CHECKING:
    from diag.inventory import Host, Inventory
    from diag.network.snmp.profiles import PollState

log = logging.getLogger(__name__)


def merge_by_target(results: Iterable[tuple[str, Result]]) -> list[Metric]:
    """Devices' metrics merged into one family per name, with ``target`` (the device) as the first label."""
    merged: dict[str, Metric] = {}
    for host, result in results:
        for m in result.metrics:
            family = merged.get(m.name)
            if family is None:
                family = merged[m.name] = Metric(m.name, m.help, m.kind, ("target", *m.label_names))
            elif family.label_names[1:] != m.label_names:
                continue  # the same name with other labels from another profile: keep the first
            family.samples.extend(((host, *labels), value) for labels, value in m.samples)
    return list(merged.values())


def poll_device(host: Host, state: PollState) -> Result:
    """Poll one inventory device with its ``snmp.profiles``; never raises (problems become findings)."""
    from diag.errors import DiagError
    from diag.network.snmp import profiles
    from diag.network.snmp.client import target_from_host

    try:
        target = target_from_host(host)
        loaded = [profiles.load(name) for name in host.snmp["profiles"]]
        return profiles.poll(target, loaded, state)
    except DiagError as e:  # a bad profile name or an unset secret: say so for this host only
        result = Result()
        result.find("snmp_poll_failed", "critical", f"{host.name}: {e}", host.name).host = host.name
        result.gaps.append(Gap(f"{host.name} was not polled: {e}", observed=frozenset({"snmp_poll_failed"})))
        return result


class SnmpPoller:
    """Polls the inventory's SNMP devices every ``interval`` seconds in a background thread."""

    def __init__(self, inventory: Inventory, interval: float = 60.0, concurrency: int = 32) -> None:
        self.hosts: list[Host] = [h for h in inventory.hosts.values() if h.snmp.get("profiles")]
        self.interval = interval
        self.concurrency = max(1, concurrency)
        self.results: dict[str, Result] = {}
        self.cycle_seconds = 0.0
        self._states: dict[str, PollState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Called with (host, result) after every scheduled poll of a device (the incident engine listens).
        self.on_result: list[Callable[[Host, Result], None]] = []
        #: Called with the poller after every background cycle (the agent exposes its summary and findings).
        self.on_cycle: list[Callable[[SnmpPoller], None]] = []

    def poll_host(self, host: Host) -> Result:
        """Poll one device now and return its result (also the incident engine's verifying re-check)."""
        from diag.network.snmp import profiles

        result = poll_device(host, self._states.setdefault(host.name, profiles.PollState()))
        for f in result.findings:
            f.host = f.host or host.name
        return result

    def _poll_host(self, host: Host) -> None:
        result = self.poll_host(host)
        with self._lock:
            self.results[host.name] = result
        for cb in self.on_result:
            cb(host, result)

    def poll_once(self) -> dict[str, Result]:
        """Poll every device once (concurrently); returns the results by host name."""
        started = time.monotonic()
        with ThreadPoolExecutor(min(self.concurrency, max(1, len(self.hosts))), "snmp-poll") as pool:
            list(pool.map(self._poll_host, self.hosts))
        self.cycle_seconds = time.monotonic() - started
        with self._lock:
            return dict(self.results)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                for cb in self.on_cycle:
                    cb(self)
            except Exception:  # the loop must outlive any one bad cycle; the traceback goes to the log
                log.exception("SNMP poll cycle failed")
            if self.cycle_seconds > self.interval:
                log.warning(
                    "SNMP poll cycle took %.1f s, longer than the %g s interval", self.cycle_seconds, self.interval
                )
            self._stop.wait(max(0.0, self.interval - self.cycle_seconds))

    def start(self) -> None:
        if self.hosts and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="snmp-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def metrics(self) -> list[Metric]:
        """Every device's metrics, families merged across devices with ``target`` as the first label."""
        with self._lock:
            results = sorted(self.results.items())
        return merge_by_target(results)

    def findings(self) -> list[Finding]:
        with self._lock:
            return [f for r in self.results.values() for f in r.findings]
