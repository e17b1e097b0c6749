"""The streaming trigger (issue 10, DESIGN.md §11 layer 2): marks watched between polls.

One `TriggerWatcher` per account. It subscribes to the marks of the symbols the
account's last cycle left triggers for (`account.triggers`, from
`bot.domain.triggers.stream_triggers`), and when a mark crosses one it runs the
account's cycle at once. The cycle takes its own fresh REST snapshot before any write:
the stream only decides *when*, never *what*.

- A crossing while a cycle runs asks for one more right after it (the service's lock
  queues it); a burst of crossings runs one cycle per debounce window.
- A triggered cycle that leaves a mark still past its trigger (the account is paused,
  in dry run, or cannot act) doubles the window, up to `max_backoff`, so a stuck
  emergency does not run a cycle every second; a calm mark resets it.
- A dropped stream alerts once ("protecting by polling only"), reconnects with a
  doubling delay (capped at `max_backoff`) and alerts again when marks flow.
- `stop()` lets a running cycle finish (bounded), then closes the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bot.app.config import StreamSettings
from bot.domain.triggers import MarkTrigger, crossed
from bot.domain.vocabulary import AlertLevel
from bot.exchange.streams import MarkStream, MarkTick, StreamDropped, StreamUnsupported

__all__ = [
    "AlertSink",
    "StreamSettings",
    "TriggerWatcher",
    "TriggeredAccount",
    "WatcherStats",
]

logger = logging.getLogger(__name__)

# The first reconnect waits this long; each failure doubles it up to max_backoff.
FIRST_BACKOFF_SECONDS = 1.0
# How often an account with no triggers (no position) is asked again for some.
IDLE_SECONDS = 1.0
# How long stop() lets a triggered cycle that is running finish.
DRAIN_SECONDS = 10.0


class TriggeredAccount(Protocol):
    """What the watcher needs of an account (AccountService has it)."""

    @property
    def name(self) -> str: ...

    @property
    def triggers(self) -> Mapping[str, MarkTrigger]: ...

    async def run_cycle(self) -> object: ...


class AlertSink(Protocol):
    """The journal's outbox (Journal, MemoryJournal)."""

    async def enqueue_alert(
        self, level: AlertLevel, text: str, at: datetime | None = None
    ) -> int: ...


@dataclass(slots=True)
class WatcherStats:
    """What the watcher did, for logs, metrics and tests."""

    ticks: int = 0
    crossings: int = 0
    triggered_cycles: int = 0
    drops: int = 0
    reconnects: int = 0
    last_reason: str | None = None


class TriggerWatcher:
    """Watches one account's marks and runs its cycle when one crosses a trigger."""

    def __init__(
        self,
        account: TriggeredAccount,
        stream: MarkStream,
        alerts: AlertSink,
        settings: StreamSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        first_backoff_seconds: float = FIRST_BACKOFF_SECONDS,
    ) -> None:
        self.account = account
        self.stream = stream
        self.settings = settings
        self.stats = WatcherStats()
        self._alerts = alerts
        self._monotonic = monotonic
        self._debounce = settings.debounce.total_seconds()
        self._max_backoff = settings.max_backoff.total_seconds()
        self._first_backoff = min(first_backoff_seconds, self._max_backoff)
        self._window = self._debounce
        self._wanted = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_start: float | None = None
        # Symbols whose last mark was past its trigger; empty = calm.
        self._past: set[str] = set()
        # The last streamed mark of each symbol, judged again by the fresh triggers a
        # cycle leaves behind.
        self._marks: dict[str, Decimal] = {}
        # Whether a mark was calm since the last triggered cycle started.
        self._calm_since_cycle = True
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    @property
    def name(self) -> str:
        return self.account.name

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._watch(), name=f"stream:{self.name}"),
            asyncio.create_task(self._cycles(), name=f"triggered:{self.name}"),
        ]

    async def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop watching; a triggered cycle already running gets `drain_seconds`."""
        self._stopping.set()
        self._wanted.set()
        watch, cycles = self._tasks or (None, None)
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if cycles is not None:
            try:
                await asyncio.wait_for(cycles, timeout=drain_seconds)
            except TimeoutError:
                logger.warning("%s: a triggered cycle did not finish in time", self.name)
        try:
            await self.stream.close()
        except Exception:
            logger.exception("%s: closing the mark stream failed", self.name)
        self._tasks = []

    # -- the stream --------------------------------------------------------------------

    async def _watch(self) -> None:
        backoff = self._first_backoff
        dropped = False
        while True:
            symbols = tuple(sorted(self.account.triggers))
            if not symbols:
                await asyncio.sleep(IDLE_SECONDS)
                continue
            try:
                async with contextlib.aclosing(self.stream.watch(symbols)) as ticks:
                    async for tick in ticks:
                        if dropped:
                            dropped = False
                            backoff = self._first_backoff
                            self.stats.reconnects += 1
                            logger.info("%s: mark stream back", self.name)
                            await self._alert(
                                AlertLevel.INFO,
                                f"{self.name}: mark stream back; triggers watched again",
                            )
                        self.connected.set()
                        self._on_tick(tick)
                        if tuple(sorted(self.account.triggers)) != symbols:
                            break  # a position opened or closed: subscribe anew
            except StreamUnsupported as error:
                logger.warning("%s: no mark stream: %s", self.name, error)
                await self._alert(
                    AlertLevel.WARNING,
                    f"{self.name}: no mark stream ({error}); protecting by polling only",
                )
                return
            except (StreamDropped, Exception) as error:
                if not isinstance(error, StreamDropped):
                    logger.exception("%s: the mark stream failed", self.name)
                self.connected.clear()
                self.stats.drops += 1
                if not dropped:
                    dropped = True
                    logger.warning("%s: mark stream dropped: %s", self.name, error)
                    await self._alert(
                        AlertLevel.WARNING,
                        f"{self.name}: mark stream dropped ({error}); protecting by polling "
                        "only; reconnecting",
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _on_tick(self, tick: MarkTick) -> None:
        self.stats.ticks += 1
        self._marks[tick.symbol] = tick.mark
        self._judge(tick.symbol, tick.mark)

    def _judge(self, symbol: str, mark: Decimal) -> None:
        trigger = self.account.triggers.get(symbol)
        reason = crossed(trigger, mark) if trigger is not None else None
        if reason is None:
            self._past.discard(symbol)
            if not self._past:
                self._calm_since_cycle = True
                self._window = self._debounce
            return
        self._wanted.set()
        if symbol in self._past:
            return  # still past: asked again, told once
        self._past.add(symbol)
        self.stats.crossings += 1
        self.stats.last_reason = reason
        logger.info(
            "%s: %s mark %s crossed its trigger (%s): running the cycle",
            self.name, symbol, _plain(mark), reason,
        )  # fmt: skip

    # -- the cycles --------------------------------------------------------------------

    async def _cycles(self) -> None:
        doubled = False
        while True:
            await self._wanted.wait()
            if self._stopping.is_set():
                return
            if self._last_start is not None:
                if not self._calm_since_cycle and not doubled:
                    # The last triggered cycle left a mark past its trigger: it could
                    # not act (paused, dry run, nothing to do). Back off until a calm
                    # mark resets the window.
                    self._window = min(self._window * 2, self._max_backoff)
                    doubled = True
                delay = self._last_start + self._window - self._monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                    continue  # judged again: stopping, or a calm mark reset the window
            self._wanted.clear()
            self._calm_since_cycle = False
            doubled = False
            self._last_start = self._monotonic()
            self.stats.triggered_cycles += 1
            try:
                await self.account.run_cycle()
            except Exception:
                # run_cycle journals exchange trouble itself; anything else must not end
                # the watcher (the poll keeps running either way).
                logger.exception("%s: the triggered cycle failed", self.name)
            if self._stopping.is_set():
                return
            # Crossings seen while the cycle ran were judged by the triggers it replaced:
            # judge the latest marks again by the ones it left. One still past its
            # trigger (a move after the cycle's snapshot, or a cycle that could not
            # act) runs one more cycle, after the window.
            self._wanted.clear()
            for symbol, mark in list(self._marks.items()):
                self._judge(symbol, mark)

    async def _alert(self, level: AlertLevel, text: str) -> None:
        try:
            await self._alerts.enqueue_alert(level, text)
        except Exception:
            logger.exception("%s: cannot queue the stream alert", self.name)


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")
