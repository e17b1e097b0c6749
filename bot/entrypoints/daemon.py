"""The daemon: the composition root that wires config, journal, exchanges and scheduler.

Everything shares one asyncio loop. SIGTERM/SIGINT stop scheduling, let the running
cycle finish (bounded), flush what alerts can be flushed, close the exchanges and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version

from bot.app.alerts import AlertChannel, LogChannel, flush_outbox
from bot.app.config import LevbotConfig
from bot.app.control import Controls, account_statuses, daily_summary
from bot.app.metrics import LevbotMetrics, pages
from bot.app.metrics_server import MetricsServer
from bot.app.scheduler import CycleScheduler
from bot.app.service import AccountService
from bot.app.triggers import TriggerWatcher
from bot.clock import utc_now
from bot.domain.vocabulary import AlertLevel
from bot.entrypoints.bootstrap import build_exchange, build_runtime, shared_markets
from bot.entrypoints.systemd_notify import SystemdNotifier
from bot.exchange.port import Exchange
from bot.exchange.streams import MarkStream
from bot.store.journal import Journal
from bot.telegram.channel import TelegramChannel
from bot.telegram.runner import TelegramRunner

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # seconds a running cycle gets to finish at shutdown
OUTBOX_EVERY = timedelta(seconds=2)
RETENTION_EVERY = timedelta(hours=6)


@dataclass(slots=True)
class Daemon:
    config: LevbotConfig
    clock: Callable[[], datetime] = utc_now
    services: list[AccountService] = field(default_factory=list)
    journal: Journal | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    channel: AlertChannel = field(default_factory=LogChannel)
    telegram: TelegramRunner | None = None
    # systemd's Type=notify (READY, WATCHDOG, STOPPING); does nothing outside systemd.
    notifier: SystemdNotifier = field(default_factory=SystemdNotifier)
    # Prometheus /metrics and /healthz, when the config has a [metrics] table.
    metrics: LevbotMetrics | None = None
    metrics_server: MetricsServer | None = None
    # The streaming trigger: one mark watcher per account with [accounts.stream] enabled.
    watchers: list[TriggerWatcher] = field(default_factory=list)

    async def run(self) -> int:
        """Run until `stop` is set (by a signal or a caller); returns the exit code."""
        # Signals first: a SIGTERM during start-up then means "stop once started".
        self._install_signal_handlers()
        try:
            journal = self.journal = await Journal.open(
                self.config.database.url, secrets=self.config.secrets()
            )
        except BaseException:
            self._remove_signal_handlers()
            raise
        run_id = await journal.start_run(os.getpid(), version("levbot"))
        scheduler: CycleScheduler | None = None
        reason = "stopped"
        try:
            if self.config.metrics is not None:
                self.metrics = LevbotMetrics()
            # One load of each venue's markets and tiers for all its accounts (issue 12 §3).
            markets = shared_markets(self.config)
            for account in self.config.accounts:
                exchange = build_exchange(
                    account, self.config, self.clock, observer=self.metrics, markets=markets
                )
                runtime = build_runtime(account, exchange)
                cycles = journal if self.metrics is None else self.metrics.journal(journal)
                self.services.append(AccountService(runtime, cycles, self.clock, run_id))
            names = ", ".join(s.name for s in self.services)
            await journal.enqueue_alert(AlertLevel.INFO, f"levbot started: {names}")
            await self._start_metrics(journal)
            scheduler = CycleScheduler(self.services)
            scheduler.every("alerts", OUTBOX_EVERY, self._flush_alerts)
            scheduler.every("retention", RETENTION_EVERY, self._prune)
            if self.notifier.watchdog_interval is not None:
                # Fed by a job on the daemon's own loop: a stuck loop or scheduler starves
                # the watchdog and systemd restarts the daemon.
                scheduler.every("watchdog", self.notifier.watchdog_interval, self._feed_watchdog)
            self._start_telegram(journal, scheduler)
            scheduler.start()
            self._start_watchers(journal)
            logger.info("levbot running: %s", names)
            self.notifier.ready(f"running: {names}")
            await self.stop.wait()
        except BaseException as error:
            reason = f"crashed: {type(error).__name__}"
            raise
        finally:
            await self._shutdown(scheduler, run_id, reason)
        return 0

    def _start_telegram(self, journal: Journal, scheduler: CycleScheduler) -> None:
        """Telegram connects in the background: its trouble never delays a cycle."""
        settings = self.config.telegram
        if settings is None:
            return
        channel = TelegramChannel(settings.allowed_chat_ids, settings.mute)
        controls = Controls(self.config, journal, {s.name: s for s in self.services}, self.clock)
        self.channel = channel
        self.telegram = TelegramRunner(settings, controls, channel, self.clock)
        self.telegram.start()
        if settings.daily_summary is not None:
            scheduler.daily("daily-summary", settings.daily_summary, self._daily_summary)

    def _start_watchers(self, journal: Journal) -> None:
        """Watch marks between polls (issue 10): a crossing runs that account's cycle at
        once. A venue that cannot stream is protected by polling only, and said so."""
        for account, service in zip(self.config.accounts, self.services, strict=True):
            settings = account.to_stream()
            if not settings.enabled:
                continue
            stream = _mark_stream(service.runtime.exchange)
            if stream is None:
                logger.info("%s: no mark stream for this exchange; polling only", service.name)
                continue
            watcher = TriggerWatcher(service, stream, journal, settings)
            watcher.start()
            self.watchers.append(watcher)

    async def _daily_summary(self) -> None:
        assert self.journal is not None
        rows = await account_statuses(self.journal, self.config)
        await self.journal.enqueue_alert(AlertLevel.INFO, daily_summary(rows))

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("%s received: finishing the running cycle, then stopping", sig.name)
        self.stop.set()

    async def _flush_alerts(self) -> None:
        assert self.journal is not None
        sent = await flush_outbox(self.journal, self.channel, self.clock)
        if self.metrics is not None:
            self.metrics.sent(sent)

    async def _start_metrics(self, journal: Journal) -> None:
        """Serve /metrics and /healthz. A port that cannot be bound is alerted, never
        fatal: keeping the positions safe matters more than being watched."""
        settings, metrics = self.config.metrics, self.metrics
        if settings is None or metrics is None:
            return
        served = pages(metrics, journal, self.config, self.services, self.clock)
        server = MetricsServer(settings.host, settings.port, served)
        try:
            await server.start()
        except OSError as error:
            logger.warning("metrics: cannot listen on %s: %s", settings.listen, error)
            text = f"metrics: cannot listen on {settings.listen}: {error.strerror}"
            await journal.enqueue_alert(AlertLevel.WARNING, text)
            return
        self.metrics_server = server
        logger.info("metrics: http://%s/metrics and /healthz", settings.listen)

    async def _feed_watchdog(self) -> None:
        self.notifier.watchdog()

    async def _prune(self) -> None:
        assert self.journal is not None
        days = self.config.snapshot_retention_days
        removed = await self.journal.prune_snapshots(self.clock() - timedelta(days=days))
        if removed:
            logger.info("retention: removed %d snapshots older than %d days", removed, days)

    async def _shutdown(self, scheduler: CycleScheduler | None, run_id: int, reason: str) -> None:
        self.notifier.stopping(f"{reason}: finishing the running cycle")
        # Watchers first: no triggered cycle may start while the scheduler drains.
        for watcher in self.watchers:
            await watcher.stop(DRAIN_TIMEOUT)
        if scheduler is not None:
            await scheduler.drain(DRAIN_TIMEOUT)
        journal = self.journal
        assert journal is not None
        for service in self.services:
            try:
                await service.runtime.exchange.close()
            except Exception:
                logger.exception("closing %s failed", service.name)
        await journal.enqueue_alert(AlertLevel.INFO, f"levbot {reason}")
        try:
            await asyncio.wait_for(self._flush_alerts(), timeout=3)
        except (TimeoutError, Exception):
            logger.warning("some alerts stay in the outbox for the next start")
        if self.telegram is not None:
            try:
                await asyncio.wait_for(self.telegram.stop(), timeout=5)
            except (TimeoutError, Exception):
                logger.warning("Telegram did not stop cleanly", exc_info=True)
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await journal.end_run(run_id, reason)
        await journal.close()
        self._remove_signal_handlers()
        logger.info("levbot stopped")


def _mark_stream(exchange: Exchange) -> MarkStream | None:
    """The account's mark stream: ccxt.pro on the account's venue and environment, or
    the replay's marks for a paper account."""
    from bot.exchange.ccxt.adapter import CcxtExchange
    from bot.exchange.ccxt.stream import CcxtMarkStream
    from bot.exchange.sim.paper import PaperExchange
    from bot.exchange.sim.paper_stream import PaperMarkStream
    from bot.exchange.streams import StreamUnsupported

    if isinstance(exchange, PaperExchange):
        return PaperMarkStream(exchange, every_seconds=min(exchange.settings.bar_seconds, 1.0))
    if isinstance(exchange, CcxtExchange):
        try:
            return CcxtMarkStream.for_account(exchange.settings, exchange.profile)
        except StreamUnsupported as error:
            logger.warning("%s: %s", exchange.name, error)
    return None
