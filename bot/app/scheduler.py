"""APScheduler 3 wiring: one interval job per account, plus housekeeping jobs.

Cycles start immediately (staggered by a small jitter between accounts), never overlap
(`max_instances=1`), collapse missed runs into one (`coalesce`), and give up on a run
that is later than one interval (`misfire_grace_time`). APScheduler 3's shutdown
cancels running coroutine jobs, so `drain` pauses first and waits for running cycles.

After its first run, every account cycles on a grid of `CYCLE_SLOT`s shared by all
accounts (`SlottedInterval`): accounts whose first cycles were spread over an interval
(a lease hand-out) then cycle in groups, one group per slot, and their journal rows
share transactions (`bot.store.cycle_writes`). Spread out, each cycle's rows had a
transaction each: with 2,500 accounts per process that was most of its CPU.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, time, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.service import AccountService
from bot.clock import utc_now

logger = logging.getLogger(__name__)

# The grid cycles share: at most this far apart (a divisor of the account's interval).
CYCLE_SLOT = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class SlottedInterval(IntervalTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """Every `interval`, each run after the first on a boundary of the slot grid (slots
    of `interval / ceil(interval / slot)`, counted from the epoch, so every job with that
    interval shares them): at most one slot later than the interval asks, never sooner."""

    def __init__(self, interval: timedelta, slot: timedelta = CYCLE_SLOT) -> None:
        super().__init__(seconds=interval.total_seconds(), timezone=UTC)
        steps = max(1, math.ceil(interval / slot))
        self.slot_micros = max(1, (interval // _MICROSECOND) // steps)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        due: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        if due is None:
            return None
        micros = (due - _EPOCH) // _MICROSECOND
        return _EPOCH + _MICROSECOND * (-(-micros // self.slot_micros) * self.slot_micros)


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
            trigger=SlottedInterval(interval),
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
