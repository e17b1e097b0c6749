"""Prometheus metrics of the daemon: what `[metrics] listen` serves at `/metrics`.

Gauges (leverage, band, margin ratio, equity, state, last successful cycle) are read from
the journal when the page is scraped, through the same control-layer reads `levbot
status` and `levbot health` use, so the page never disagrees with them. Counters are
counted where the fact happens: cycles and actions as the accounts' cycles journal them
(`MeteredJournal`), alerts when queued and when the outbox sends them, exchange requests
as the ccxt adapter makes them (`LevbotMetrics.request`, a `RequestObserver`).

The metrics live on a registry of their own (not prometheus_client's global one), so two
daemons in one process (tests) never share or collide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.app.config import LevbotConfig
from bot.app.control import Health, account_statuses, health
from bot.app.journal_port import CycleJournal
from bot.app.metrics_server import Page, PageHandler, text_page
from bot.app.service import AccountService
from bot.domain.actions import Action, RecentActivity
from bot.domain.gate import TradingState
from bot.domain.models import AccountSnapshot
from bot.domain.outcomes import ActionJournal, ActionOutcome, ActionStatus
from bot.domain.targets import Target
from bot.domain.vocabulary import AlertLevel, CycleStatus
from bot.store.journal import Journal
from bot.store.records import PendingIntent, RestingStopRecord

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: ccxt calls run from tens of milliseconds to the 10 s default timeout.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LevbotMetrics:
    """The metric families, and the hooks that move them."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        by_account = ["account"]
        self.leverage = Gauge(
            "levbot_leverage", "Account leverage N/E at the last snapshot", by_account,
            registry=registry,
        )  # fmt: skip
        self.target = Gauge(
            "levbot_leverage_target", "Target leverage T", by_account, registry=registry
        )
        self.band_min = Gauge(
            "levbot_leverage_band_min", "Lower band edge", by_account, registry=registry
        )
        self.band_max = Gauge(
            "levbot_leverage_band_max", "Upper band edge", by_account, registry=registry
        )
        self.margin_ratio = Gauge(
            "levbot_margin_ratio", "Maintenance margin / equity (1 = liquidation)", by_account,
            registry=registry,
        )  # fmt: skip
        self.liquidation_distance = Gauge(
            "levbot_liquidation_distance",
            "Nearest position's |mark - liquidation price| / mark",
            by_account,
            registry=registry,
        )
        self.equity = Gauge(
            "levbot_equity", "Account equity in the settle currency", by_account,
            registry=registry,
        )  # fmt: skip
        self.state = Gauge(
            "levbot_trading_state", "1 for the account's current trading state, else 0",
            ["account", "state"], registry=registry,
        )  # fmt: skip
        self.last_success = Gauge(
            "levbot_last_successful_cycle_timestamp_seconds",
            "Unix time of the last successful cycle",
            by_account,
            registry=registry,
        )
        self.healthy = Gauge(
            "levbot_healthy", "1 when the last successful cycle is newer than 3 intervals",
            by_account, registry=registry,
        )  # fmt: skip
        self.cycles = Counter(
            "levbot_cycles", "Cycles by how they ended", ["account", "status"], registry=registry
        )
        self.actions = Counter(
            "levbot_actions", "Actions by kind and result", ["account", "kind", "status"],
            registry=registry,
        )  # fmt: skip
        self.alerts_queued = Counter(
            "levbot_alerts_queued", "Alerts the accounts' cycles put in the outbox", ["level"],
            registry=registry,
        )  # fmt: skip
        self.alerts_sent = Counter(
            "levbot_alerts_sent", "Alerts that left the outbox (every chat has them)",
            registry=registry,
        )  # fmt: skip
        self.requests = Counter(
            "levbot_exchange_requests", "Exchange requests", ["venue", "kind"],
            registry=registry,
        )  # fmt: skip
        self.errors = Counter(
            "levbot_exchange_errors", "Exchange requests that failed, by error class",
            ["venue", "kind", "error"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "levbot_exchange_request_seconds", "Exchange request latency", ["venue", "kind"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        # The page renders what is counted before it reads the gauges from the journal
        # (see `page`): the same families, split in two registries.
        self._counted = CollectorRegistry()
        self._read = CollectorRegistry()
        for counted in (self.cycles, self.actions, self.alerts_queued, self.alerts_sent,
                        self.requests, self.errors, self.latency):  # fmt: skip
            self._counted.register(counted)
        for family in (self.leverage, self.target, self.band_min, self.band_max,
                       self.margin_ratio, self.liquidation_distance, self.equity, self.state,
                       self.last_success, self.healthy):  # fmt: skip
            self._read.register(family)

    # -- hooks ----------------------------------------------------------------------

    def request(self, venue: str, what: str, seconds: float, error: str | None) -> None:
        """The `RequestObserver` the ccxt adapter calls around every request."""
        self.requests.labels(venue, what).inc()
        self.latency.labels(venue, what).observe(seconds)
        if error is not None:
            self.errors.labels(venue, what, error).inc()

    def cycle_ended(self, account: str, status: CycleStatus) -> None:
        self.cycles.labels(account, status.value).inc()

    def action_ended(self, account: str, outcome: ActionOutcome) -> None:
        self.actions.labels(account, outcome.action.kind.value, outcome.status.value).inc()

    def alert_queued(self, level: AlertLevel) -> None:
        self.alerts_queued.labels(level.value).inc()

    def sent(self, count: int) -> None:
        """`count` alerts left the outbox (what `flush_outbox` returns)."""
        self.alerts_sent.inc(count)

    def journal(self, inner: CycleJournal) -> MeteredJournal:
        """`inner` as an account's cycle sees it, counting cycles, actions and alerts."""
        return MeteredJournal(inner, self)

    # -- the page -------------------------------------------------------------------

    async def page(
        self,
        journal: Journal,
        config: LevbotConfig,
        services: Sequence[AccountService],
        now: datetime,
    ) -> bytes:
        """The exposition text, with the gauges read from the journal just now.

        The counters are rendered first, then the gauges read: a cycle is counted only
        once the journal has its end, so a page that counts a cycle also shows its finish
        time, even when the cycle ends while the journal is being read."""
        counted = generate_latest(self._counted)
        await self.refresh(journal, config, services, now)
        return counted + generate_latest(self._read)

    async def refresh(
        self,
        journal: Journal,
        config: LevbotConfig,
        services: Sequence[AccountService],
        now: datetime,
    ) -> None:
        halted = frozenset(s.name for s in services if s.halted)
        for status in await account_statuses(journal, config, halted):
            name = status.account
            self.target.labels(name).set(float(status.target))
            self.band_min.labels(name).set(float(status.band[0]))
            self.band_max.labels(name).set(float(status.band[1]))
            for state in TradingState:
                self.state.labels(name, state.value).set(1 if state is status.state else 0)
            snapshot = status.snapshot
            _set(self.equity, name, None if snapshot is None else snapshot.equity)
            _set(self.leverage, name, None if snapshot is None else snapshot.leverage)
            _set(self.margin_ratio, name, None if snapshot is None else snapshot.margin_ratio)
            _set(self.liquidation_distance, name, status.liquidation_distance)
        self.record_health(await health(journal, config, now))

    def record_health(self, report: Iterable[Health]) -> None:
        for row in report:
            self.healthy.labels(row.account).set(1 if row.healthy else 0)
            if row.last_success is not None:
                self.last_success.labels(row.account).set(row.last_success.timestamp())


def _set(gauge: Gauge, account: str, value: Decimal | None) -> None:
    """Set, or drop the series: an unknown value is absent, never a stale or made-up 0."""
    if value is not None:
        gauge.labels(account).set(float(value))
        return
    gauge.remove(account)  # a no-op when the series is not there


async def health_page(journal: Journal, config: LevbotConfig, now: datetime) -> tuple[int, str]:
    """(200, "ok") when every account's last successful cycle is newer than 3 intervals,
    else (503, which accounts are stale)."""
    try:
        report = await health(journal, config, now)
    except Exception as error:
        logger.warning("healthz: the journal could not be read: %s", type(error).__name__)
        return 503, "journal unreadable\n"
    stale = [row for row in report if not row.healthy]
    if not stale:
        return 200, "ok\n"
    lines = [
        f"{row.account}: "
        + ("no successful cycle" if row.last_success is None else "last success too old")
        for row in stale
    ]
    return 503, "stale\n" + "\n".join(lines) + "\n"


class MeteredJournal:
    """A `CycleJournal` that counts what one account's cycle journals: how each cycle
    ended, each action's result, each alert queued. Everything else passes through."""

    def __init__(self, inner: CycleJournal, metrics: LevbotMetrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._accounts: dict[int, str] = {}

    async def start_cycle(self, account: str, at: datetime, run_id: int | None = None) -> int:
        try:
            cycle_id = await self._inner.start_cycle(account, at, run_id)
        except Exception:
            # The service reports such a cycle failed without a journal row to finish.
            self._metrics.cycle_ended(account, CycleStatus.FAILED)
            raise
        self._accounts[cycle_id] = account
        return cycle_id

    async def finish_cycle(
        self,
        cycle_id: int,
        status: CycleStatus,
        at: datetime,
        notes: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        account = self._accounts.pop(cycle_id, None)
        try:
            await self._inner.finish_cycle(cycle_id, status, at, notes, error)
        finally:
            # Counted once the journal has the cycle's end (its writes are batched): a
            # scrape that sees the count also sees the cycle's finish time.
            if account is not None:
                self._metrics.cycle_ended(account, status)

    async def close_interrupted_cycles(
        self, account: str, at: datetime, keep: int | None = None
    ) -> int:
        return await self._inner.close_interrupted_cycles(account, at, keep)

    async def record_snapshot(
        self,
        account: str,
        snapshot: AccountSnapshot,
        equity: Decimal,
        notional: Decimal,
        leverage: Decimal | None,
        margin_ratio: Decimal | None,
        cycle_id: int | None = None,
    ) -> int:
        return await self._inner.record_snapshot(
            account, snapshot, equity, notional, leverage, margin_ratio, cycle_id
        )

    def actions(self, account: str, cycle_id: int | None, dry_run: bool = False) -> ActionJournal:
        inner = self._inner.actions(account, cycle_id, dry_run)
        return _MeteredActions(inner, account, self._metrics)

    async def pending_intents(self, account: str) -> list[PendingIntent]:
        return await self._inner.pending_intents(account)

    async def unknown_intents(
        self, account: str, since: datetime | None = None
    ) -> list[PendingIntent]:
        return await self._inner.unknown_intents(account, since)

    async def resolve_intent(
        self,
        client_id: str,
        status: ActionStatus,
        exchange_id: str | None = None,
        error: str | None = None,
        *,
        filled: Decimal | None = None,
        fill_price: Decimal | None = None,
        fee: Decimal | None = None,
        at: datetime | None = None,
    ) -> None:
        await self._inner.resolve_intent(
            client_id, status, exchange_id, error,
            filled=filled, fill_price=fill_price, fee=fee, at=at,
        )  # fmt: skip

    async def recent_activity(self, account: str, now: datetime) -> RecentActivity:
        return await self._inner.recent_activity(account, now)

    async def resting_stops(self, account: str) -> tuple[RestingStopRecord, ...]:
        return await self._inner.resting_stops(account)

    async def target_overrides(self, account: str) -> dict[str | None, Target]:
        return await self._inner.target_overrides(account)

    async def paused_accounts(self) -> set[str]:
        return await self._inner.paused_accounts()

    async def enqueue_alert(self, level: AlertLevel, text: str, at: datetime | None = None) -> int:
        alert_id = await self._inner.enqueue_alert(level, text, at)
        self._metrics.alert_queued(level)
        return alert_id


class _MeteredActions:
    def __init__(self, inner: ActionJournal, account: str, metrics: LevbotMetrics) -> None:
        self._inner = inner
        self._account = account
        self._metrics = metrics

    async def intent(self, action: Action, client_id: str) -> None:
        await self._inner.intent(action, client_id)

    async def result(self, outcome: ActionOutcome) -> None:
        await self._inner.result(outcome)
        self._metrics.action_ended(self._account, outcome)


def pages(
    metrics: LevbotMetrics,
    journal: Journal,
    config: LevbotConfig,
    services: Sequence[AccountService],
    clock: Callable[[], datetime],
) -> dict[str, PageHandler]:
    """The daemon's `/metrics` and `/healthz` pages."""

    async def metrics_page() -> Page:
        return Page(200, CONTENT_TYPE, await metrics.page(journal, config, services, clock()))

    async def health_check() -> Page:
        return text_page(*await health_page(journal, config, clock()))

    return {"/metrics": metrics_page, "/healthz": health_check}
