"""APScheduler 3 wiring: one interval job per account, plus housekeeping jobs.

Cycles start immediately (staggered by a small jitter between accounts), never overlap
(`max_instances=1`), collapse missed runs into one (`coalesce`), and give up on a run
that is later than one interval (`misfire_grace_time`). APScheduler 3's shutdown
cancels running coroutine jobs, so `drain` pauses first and waits for running cycles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, time, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.service import AccountService
from bot.clock import utc_now

logger = logging.getLogger(__name__)


class CycleScheduler:
    def __init__(
        self,
        services: Sequence[AccountService],
        jitter: timedelta = timedelta(seconds=0.5),
    ) -> None:
        self.services = list(services)
        self.jitter = jitter
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: set[asyncio.Task[object]] = set()

    def _tracked(self, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        """Wrap a job so `drain` can wait for it instead of letting shutdown cancel it."""

        async def run() -> object:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                return await job()
            finally:
                self._running.discard(task)

        return run

    def start(self) -> None:
        for index, service in enumerate(self.services):
            if self._scheduler.get_job(f"cycle:{service.name}") is None:  # not `add`ed
                self._add_cycle(service, self.jitter * index)
        self._scheduler.start()

    def add(self, service: AccountService, delay: timedelta = timedelta(0)) -> None:
        """Start cycling an account this process now drives (a lease won), first in `delay`."""
        self.services.append(service)
        self._add_cycle(service, delay)

    def remove(self, name: str) -> AccountService | None:
        """Stop scheduling an account's cycles (a lease lost or handed back); a cycle
        already running carries on (`AccountService.retire` waits for it)."""
        for service in self.services:
            if service.name == name:
                self.services.remove(service)
                job = self._scheduler.get_job(f"cycle:{name}")
                if job is not None:
                    job.remove()
                return service
        return None

    def _add_cycle(self, service: AccountService, delay: timedelta) -> None:
        interval = service.runtime.interval
        self._scheduler.add_job(
            self._tracked(service.run_cycle),
            trigger=IntervalTrigger(seconds=interval.total_seconds(), timezone=UTC),
            id=f"cycle:{service.name}",
            name=f"cycle {service.name}",
            next_run_time=utc_now() + delay,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval.total_seconds())),
        )

    def every(self, name: str, interval: timedelta, job: Callable[[], Awaitable[object]]) -> None:
        """A housekeeping job (alert outbox, retention) that starts right away."""
        self._scheduler.add_job(
            self._tracked(job),
            trigger=IntervalTrigger(seconds=interval.total_seconds(), timezone=UTC),
            id=name,
            name=name,
            next_run_time=utc_now(),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval.total_seconds())),
        )

    def daily(self, name: str, at: time, job: Callable[[], Awaitable[object]]) -> None:
        """A job once a day at `at` (UTC)."""
        self._scheduler.add_job(
            self._tracked(job),
            trigger=CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=UTC),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )

    async def drain(self, grace_seconds: float) -> bool:
        """Stop scheduling, let running cycles finish (bounded); True when all finished."""
        if self._scheduler.running:
            self._scheduler.pause()
        # A job submitted just before the pause is a task that has not started yet: let it
        # start and register, or shutdown would cancel it in the middle of a cycle.
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self._running and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._running), timeout=remaining)
        finished = not self._running
        if not finished:
            logger.warning("%d job(s) still running after %.0fs", len(self._running), grace_seconds)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        return finished
