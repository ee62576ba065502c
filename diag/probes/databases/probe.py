"""The part the ``postgres`` and ``mysql`` probes share: instances collected one after another, then backups.

The collector module of the engine (and with it the driver) is imported on the first run, so configuring no
database costs the agent nothing.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Literal

from diag.errors import NoData, ProbeError
from diag.model import Result
from diag.probes.base import Paths, Probe, ProbeOptions
from diag.probes.databases.backups import BackupWatcher
from diag.probes.databases.common import Families, StartTimes
from diag.probes.databases.options import DatabaseOptions


class DatabaseProbe(Probe):
    """Subclasses set ``engine`` and ``collector`` (``module:Class`` of the per-instance collector)."""

    engine: ClassVar[Literal["postgres", "mysql"]]
    collector: ClassVar[str]

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        assert isinstance(options, DatabaseOptions)
        self._instances: list[Any] | None = None
        self.starts = StartTimes(paths.state / f"{self.engine}.json")
        self.backups = BackupWatcher(self.engine, options, paths)

    def collect(self) -> Result:
        opts = self.options
        assert isinstance(opts, DatabaseOptions)
        if not opts.instances and not opts.backups:
            raise NoData(f"no {self.engine} instances or backup jobs configured (agent.probes.{self.name})")
        if self._instances is None:
            module, _, cls = self.collector.partition(":")
            try:
                factory = getattr(importlib.import_module(module), cls)
            except ImportError as e:  # the driver is an optional dependency
                raise ProbeError(f"{self.engine}: {e}; install the driver: pip install 'diag[databases]'") from None
            self._instances = [factory(i, opts) for i in opts.instances]
        r = Result()
        fam = Families(r)
        for inst in self._instances:
            inst.collect(fam, r, self.starts)
        self.backups.collect(fam, r)
        for f in r.findings:
            f.labels.setdefault("engine", self.engine)
        return r

    def close(self) -> None:
        for inst in self._instances or []:
            inst.close()
