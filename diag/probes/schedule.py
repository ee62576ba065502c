"""Runs every enabled probe on its interval, with jitter, on APScheduler's background scheduler."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from diag.probes.runner import ProbeRunner

log = logging.getLogger(__name__)


class ProbeScheduler:
    """One interval job per probe. ``max_instances=1`` + ``coalesce`` keep a slow probe from piling up."""

    def __init__(self, runner: ProbeRunner) -> None:
        self.runner = runner
        workers = max(2, min(len(runner.probes), runner.config.probe_workers))
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )

    def start(self) -> None:
        now = datetime.now().astimezone()
        for name, probe in self.runner.probes.items():
            interval = probe.options.interval
            # Spread first runs over a second so probes do not all read /proc in the same instant.
            first = now + timedelta(seconds=random.uniform(0, min(1.0, interval / 10)))
            self.scheduler.add_job(
                self.runner.run,
                IntervalTrigger(seconds=interval, jitter=min(interval * 0.1, 5.0)),
                args=[name],
                id=f"probe:{name}",
                name=f"probe {name}",
                next_run_time=first,
            )
        self.scheduler.start()
        log.info("scheduled %d probes", len(self.runner.probes))

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
