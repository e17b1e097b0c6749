"""The daemon: the composition root that wires config, journal, exchanges and scheduler.

Everything shares one asyncio loop. SIGTERM/SIGINT stop scheduling, let the running
cycle finish (bounded), flush what alerts can be flushed, close the exchanges and exit 0.

On SQLite the daemon drives every account. On PostgreSQL several daemons share them by
lease (`bot.app.leasing`): each drives only what it holds, builds an account's exchange
and service when it wins the lease (the first cycle reconciles), drops them when it loses
or hands it back, and only the holder of the `@telegram` lease polls Telegram and
delivers the shared alert outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version
from typing import TYPE_CHECKING

from bot.app.alerts import AlertChannel, LogChannel, flush_outbox
from bot.app.config import LevbotConfig
from bot.app.control import Controls, account_statuses, daily_summary
from bot.app.leasing import AccountLeases, LeaseChanges, SharedLeases, SoleOwner
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
from bot.store.engine import build_engine
from bot.store.journal import Journal
from bot.store.leases import LeaseBook, LeaseOwner
from bot.telegram.channel import TelegramChannel
from bot.telegram.runner import TelegramRunner

if TYPE_CHECKING:
    from bot.exchange.ccxt.shared_markets import MarketRegistry

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
    # Who drives which account: all of them here (SQLite), or this process's leases.
    leases: AccountLeases | None = None
    # Holds the `@telegram` lease: polls Telegram, delivers the outbox, daily jobs.
    leader: bool = False
    scheduler: CycleScheduler | None = None
    # The services by name (the same objects as `services`), for the control layer.
    by_name: dict[str, AccountService] = field(default_factory=dict)
    _run_id: int | None = None
    _markets: MarketRegistry | None = None
    _controls: Controls | None = None
    # Accounts being let go: their running cycle finishing, their exchange closing.
    _dropping: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # Lease changes are applied one round at a time, in order, beside the heartbeat.
    _applying: asyncio.Lock = field(default_factory=asyncio.Lock)
    _appliers: set[asyncio.Task[None]] = field(default_factory=set)

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
        run_id = self._run_id = await journal.start_run(os.getpid(), version("levbot"))
        scheduler: CycleScheduler | None = None
        lease_keeper: asyncio.Task[None] | None = None
        reason = "stopped"
        try:
            if self.config.metrics is not None:
                self.metrics = LevbotMetrics()
            # One load of each venue's markets and tiers for all its accounts (issue 12 §3).
            markets = shared_markets(self.config)
            self._markets = markets
            leases = self.leases = self._account_leases(journal, run_id)
            journal.fence = leases.fence
            scheduler = self.scheduler = CycleScheduler([])
            scheduler.every("alerts", OUTBOX_EVERY, self._flush_alerts)
            scheduler.every("retention", RETENTION_EVERY, self._prune)
            if self.notifier.watchdog_interval is not None:
                # Fed by a job on the daemon's own loop: a stuck loop or scheduler starves
                # the watchdog and systemd restarts the daemon.
                scheduler.every("watchdog", self.notifier.watchdog_interval, self._feed_watchdog)
            self._start_telegram(journal, scheduler)
            first = await leases.beat()
            if isinstance(leases, SharedLeases):
                # Beating before the accounts are built: building thousands takes a while.
                lease_keeper = asyncio.create_task(self._keep_leases(leases), name="leases")
            await self._apply(first)
            names = ", ".join(s.name for s in self.services)
            await journal.enqueue_alert(AlertLevel.INFO, self._started_text(names))
            await self._start_metrics(journal)
            scheduler.start()
            logger.info("levbot running: %s", names)
            self.notifier.ready(f"running: {names}")
            await self.stop.wait()
        except BaseException as error:
            reason = f"crashed: {type(error).__name__}"
            raise
        finally:
            if lease_keeper is not None:
                lease_keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lease_keeper
                async with self._applying:  # a round of changes being applied ends first
                    pass
            await self._shutdown(scheduler, run_id, reason)
        return 0

    # -- leases: which accounts this process drives --------------------------------------

    def _account_leases(self, journal: Journal, run_id: int) -> AccountLeases:
        names = [account.name for account in self.config.accounts]
        if journal.engine.dialect.name != "postgresql":
            return SoleOwner(names)
        host, pid = socket.gethostname(), os.getpid()
        me = LeaseOwner(owner=f"{host}:{pid}:run{run_id}", run_id=run_id, host=host, pid=pid)
        period = timedelta(seconds=self.config.database.lease_seconds)
        # Connections of its own: a heartbeat never queues behind the cycles' sessions.
        return SharedLeases(LeaseBook(build_engine(self.config.database.url)), me, names, period)

    def _started_text(self, names: str) -> str:
        if isinstance(self.leases, SharedLeases):
            held = names or "no account yet"
            return f"levbot started as {self.leases.owner}: {held} (the others share the rest)"
        return f"levbot started: {names}"

    async def _keep_leases(self, leases: SharedLeases) -> None:
        """The heartbeat, on a task of its own: neither a busy scheduler nor the building
        of newly won accounts delays it."""
        while True:
            await asyncio.sleep(leases.heartbeat.total_seconds())
            try:
                changes = await leases.beat()
            except Exception:
                # The fence still guards every intent: a lease that lapses meanwhile
                # refuses them, and the next heartbeat drops the account.
                logger.exception("lease heartbeat failed; retrying")
                continue
            if changes != LeaseChanges(leader=self.leader):
                applier = asyncio.create_task(self._apply(changes), name="lease-changes")
                self._appliers.add(applier)
                applier.add_done_callback(self._appliers.discard)

    async def _apply(self, changes: LeaseChanges) -> None:
        """Drive what was gained, let go of what was lost or is surplus, and take or leave
        the leader's jobs."""
        async with self._applying:
            await self._apply_now(changes)

    async def _apply_now(self, changes: LeaseChanges) -> None:
        for name in changes.lost:
            logger.warning("%s: lease lost; no longer driven here", name)
            self._drop(name, release=False)
        for name in changes.surplus:
            self._drop(name, release=True)
        for service in list(self.services):
            if service.retired:  # an intent refused: the lease went while it cycled
                self._drop(service.name, release=True)
        for index, name in enumerate(changes.gained):
            dropping = self._dropping.get(name)
            if dropping is not None:
                # Lost and won back before it was let go: the old exchange closes first.
                await asyncio.wait({dropping}, timeout=DRAIN_TIMEOUT + 5)
            fence = self.leases.fence if self.leases is not None else None
            if name not in self.by_name and (fence is None or name in fence.epochs):
                self._drive(name, index, len(changes.gained))
                await asyncio.sleep(0)  # one account at a time: the loop stays responsive
        if changes.leader != self.leader:
            self.leader = changes.leader
            await self._lead(changes.leader)

    def _drive(self, name: str, index: int, count: int) -> None:
        """Start driving `name`: its exchange and service, built now (a paper account's
        state is read as the last owner left it); the first cycle reconciles. The first
        cycles of `count` accounts won together spread over at most one interval."""
        assert self.journal is not None and self.scheduler is not None
        account = self.config.account(name)
        exchange = build_exchange(
            account, self.config, self.clock, observer=self.metrics, markets=self._markets
        )
        runtime = build_runtime(account, exchange)
        journal = self.journal
        cycles = journal if self.metrics is None else self.metrics.journal(journal)
        service = AccountService(runtime, cycles, self.clock, self._run_id)
        self.by_name[name] = service
        self.services.append(service)
        spread = min(self.scheduler.jitter * index, runtime.interval * index / count)
        self.scheduler.add(service, spread)
        self._start_watcher(service)

    def _drop(self, name: str, *, release: bool) -> None:
        """Stop driving `name` (in the background: a running cycle may take a while)."""
        assert self.scheduler is not None
        service = self.by_name.pop(name, None)
        self.scheduler.remove(name)
        if service is None or name in self._dropping:
            return
        self.services.remove(service)
        task = asyncio.create_task(self._let_go(service, release), name=f"drop:{name}")
        self._dropping[name] = task
        task.add_done_callback(lambda _: self._dropping.pop(name, None))

    async def _let_go(self, service: AccountService, release: bool) -> None:
        watcher = next((w for w in self.watchers if w.account is service), None)
        if watcher is not None:
            self.watchers.remove(watcher)
            await watcher.stop(DRAIN_TIMEOUT)
        try:
            await asyncio.wait_for(service.retire(), DRAIN_TIMEOUT)
        except TimeoutError:
            # Still cycling: its intents are fenced, so it can do no harm; the lease is
            # kept until it ends rather than handed over under it.
            logger.warning("%s: cycle still running; lease kept until it ends", service.name)
            await service.retire()
        try:
            await service.runtime.exchange.close()
        except Exception:
            logger.exception("closing %s failed", service.name)
        if release and self.leases is not None:
            try:
                await self.leases.release([service.name])
            except Exception:
                logger.exception("%s: handing the lease back failed (it expires)", service.name)
        logger.info("%s: no longer driven by this process", service.name)

    async def _lead(self, leader: bool) -> None:
        """Become (or stop being) the one process polling Telegram."""
        settings, channel = self.config.telegram, self.channel
        if settings is None or self._controls is None or not isinstance(channel, TelegramChannel):
            return
        if leader:
            self.telegram = TelegramRunner(settings, self._controls, channel, self.clock)
            self.telegram.start()
            logger.info("leader: polling Telegram and delivering alerts")
        elif self.telegram is not None:
            runner, self.telegram = self.telegram, None
            try:
                await asyncio.wait_for(runner.stop(), timeout=5)
            except (TimeoutError, Exception):
                logger.warning("Telegram did not stop cleanly", exc_info=True)

    def _start_telegram(self, journal: Journal, scheduler: CycleScheduler) -> None:
        """Telegram connects in the background: its trouble never delays a cycle."""
        settings = self.config.telegram
        if settings is None:
            return
        channel = TelegramChannel(settings.allowed_chat_ids, settings.mute)
        # The live map: accounts come and go with the leases.
        self._controls = Controls(self.config, journal, self.by_name, self.clock)
        self.channel = channel
        # The poller itself starts when this process holds the `@telegram` lease (`_lead`).
        if settings.daily_summary is not None:
            scheduler.daily("daily-summary", settings.daily_summary, self._daily_summary)

    def _start_watcher(self, service: AccountService) -> None:
        """Watch marks between polls (issue 10): a crossing runs that account's cycle at
        once. A venue that cannot stream is protected by polling only, and said so."""
        assert self.journal is not None
        settings = self.config.account(service.name).to_stream()
        if not settings.enabled:
            return
        stream = _mark_stream(service.runtime.exchange)
        if stream is None:
            logger.info("%s: no mark stream for this exchange; polling only", service.name)
            return
        watcher = TriggerWatcher(service, stream, self.journal, settings)
        watcher.start()
        self.watchers.append(watcher)

    async def _daily_summary(self) -> None:
        assert self.journal is not None
        if not self.leader:
            return  # one summary, from the process that talks to Telegram
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
        if not self.leader:
            return  # the shared outbox is delivered once, by the leader
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
        if not self.leader:
            return
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
        if self._dropping:
            await asyncio.wait(set(self._dropping.values()), timeout=DRAIN_TIMEOUT + 5)
        journal = self.journal
        assert journal is not None
        for service in self.services:
            try:
                await service.runtime.exchange.close()
            except Exception:
                logger.exception("closing %s failed", service.name)
        if isinstance(self.leases, SharedLeases):
            try:
                # After the exchanges closed: the next owner reads what they left.
                await self.leases.leave()
            except Exception:
                logger.exception("handing the leases back failed (they expire)")
            finally:
                await self.leases.book.engine.dispose()
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
    from bot.exchange.sim.paper import PaperExchange
    from bot.exchange.sim.paper_stream import PaperMarkStream

    if isinstance(exchange, PaperExchange):
        return PaperMarkStream(exchange, every_seconds=min(exchange.settings.bar_seconds, 1.0))
    # ccxt (a second of imports) only for a config with a real venue.
    from bot.exchange.ccxt.adapter import CcxtExchange
    from bot.exchange.ccxt.stream import CcxtMarkStream
    from bot.exchange.streams import StreamUnsupported

    if isinstance(exchange, CcxtExchange):
        try:
            return CcxtMarkStream.for_account(exchange.settings, exchange.profile)
        except StreamUnsupported as error:
            logger.warning("%s: %s", exchange.name, error)
    return None
