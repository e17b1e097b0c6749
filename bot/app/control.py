"""Read-side control layer: what `levbot status|history|health` and Telegram show.

Channels stay thin: they format these values; they never query tables or ccxt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.app.backstops import BackstopPreview
from bot.app.config import AccountConfig, LevbotConfig
from bot.app.service import AccountService, CycleReport
from bot.domain.actions import Plan
from bot.domain.gate import TradingState, trading_state
from bot.domain.models import AccountSnapshot
from bot.domain.stops import Stop, StopOrder
from bot.domain.targets import Target
from bot.domain.vocabulary import ALL_ACCOUNTS, CycleStatus
from bot.store.journal import Journal
from bot.store.records import ActionRecord, RestingStopRecord, SnapshotRecord

STALE_AFTER_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class AccountStatus:
    account: str
    state: TradingState
    target: Decimal
    band: tuple[Decimal, Decimal]
    snapshot: SnapshotRecord | None
    last_cycle_at: datetime | None
    last_cycle_status: str | None
    liquidation_distance: Decimal | None
    # The backstop ladder: whether the account keeps one, and the stops the journal
    # believes rest at the venue (placed, not cancelled or seen triggered since).
    backstop_enabled: bool = False
    backstops: tuple[RestingStopRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Health:
    account: str
    last_success: datetime | None
    limit: timedelta
    healthy: bool


async def account_statuses(
    journal: Journal, config: LevbotConfig, halted: frozenset[str] = frozenset()
) -> list[AccountStatus]:
    """Per account: the latest snapshot's figures, the band, the state, the last cycle.

    `halted`: accounts a running daemon knows to be halted (the journal knows only
    that the last cycle was)."""
    snapshots = await journal.latest_snapshots()
    paused = await journal.paused_accounts()
    statuses: list[AccountStatus] = []
    for account in config.accounts:
        overrides = await journal.target_overrides(account.name)
        target = overrides.get(None) or account.to_targets().account
        cycles = await journal.history(account.name, limit=1)
        last = cycles[0] if cycles else None
        state = trading_state(
            halted=account.name in halted
            or (last is not None and last.status is CycleStatus.HALTED),
            paused=account.name in paused or ALL_ACCOUNTS in paused,
            dry_run=account.dry_run,
        )
        snapshot = snapshots.get(account.name)
        statuses.append(
            AccountStatus(
                account=account.name,
                state=state,
                target=target.leverage,
                band=(target.min, target.max),
                snapshot=snapshot,
                last_cycle_at=None if last is None else (last.finished_at or last.started_at),
                last_cycle_status=None if last is None else last.status.value,
                liquidation_distance=_nearest_liquidation(snapshot),
                backstop_enabled=account.to_backstop().enabled,
                backstops=await journal.resting_stops(account.name),
            )
        )
    return statuses


def daily_summary(rows: list[AccountStatus]) -> str:
    """The daily summary alert: one line per account."""
    lines = ["Daily summary:"]
    for row in rows:
        snap = row.snapshot
        leverage = "n/a" if snap is None or snap.leverage is None else f"{snap.leverage:.2f}"
        equity = "n/a" if snap is None else f"{snap.equity:.2f} {snap.settle}"
        lines.append(
            f"{row.account}: {row.state}, equity {equity}, leverage {leverage} "
            f"(band {row.band[0]}–{row.band[1]}), last cycle {row.last_cycle_status or 'none'}, "
            f"{backstop_summary(row)}"
        )
    return "\n".join(lines)


def price(value: Decimal) -> str:
    """A price for reading: six significant digits, at least two decimals, thousands
    separated (`30,447.06`, `1.23457`, `0.0000123457`); a wanted trigger may carry
    more digits than the venue's tick, which the venue's copy will not."""
    if not value.is_finite() or value.is_zero():
        return str(value)
    places = max(2, 5 - value.adjusted())
    return f"{value:,.{places}f}"


def stop_line(stop: Stop) -> str:
    """`L1 sell 0.01 BTC/USDT:USDT @ 25,000.5`: a stop the ladder wants resting."""
    side = stop.order_side.value
    return f"L{stop.level} {side} {stop.amount} {stop.symbol} @ {price(stop.trigger_price)}"


def order_line(order: StopOrder) -> str:
    """`sell 0.01 BTC/USDT:USDT @ 25,000.5`: a stop at the venue."""
    return f"{order.side.value} {order.amount} {order.symbol} @ {price(order.trigger_price)}"


def resting_line(record: RestingStopRecord) -> str:
    """`sell 0.01 BTC/USDT:USDT @ 25,000.5`: a stop the journal believes rests."""
    return f"{record.side} {record.amount} {record.symbol} @ {price(record.trigger_price)}"


def backstop_off_reason(account: AccountConfig) -> str:
    """Why an account keeps no ladder, in one line."""
    if account.dry_run and account.backstop.enabled is None:
        return "backstop: off (dry_run; enabled = true in [accounts.backstop] to plan them)"
    return "backstop: off"


def backstop_notes(preview: BackstopPreview) -> list[str]:
    """Why some scope has no stop (each already reads "backstop: ...")."""
    return [note for note in preview.notes if note != "backstop: off"]


def ladder_lines(preview: BackstopPreview) -> list[str]:
    """Each stop the ladder would rest now, or why there is none."""
    lines = [f"backstop {stop_line(stop)}" for stop in preview.desired]
    notes = backstop_notes(preview)
    if not lines and not notes:
        notes = ["backstop: none wanted (no position to protect)"]
    return lines + notes


def change_lines(preview: BackstopPreview) -> list[str]:
    """What the next cycle would do to the resting ladder: place / cancel / keep."""
    changes = preview.changes
    lines = [f"place {stop_line(stop)}" for stop in changes.place]
    lines += [f"cancel {order_line(order)}" for order in changes.cancel]
    lines += [f"keep {order_line(order)}" for order in changes.keep]
    return lines or ["nothing resting, nothing to place"]


def backstop_summary(row: AccountStatus) -> str:
    """`backstops 3 resting` or `backstops off`: the ladder in a few words."""
    if not row.backstop_enabled and not row.backstops:
        return "backstops off"
    return f"backstops {len(row.backstops)} resting"


def _nearest_liquidation(snapshot: SnapshotRecord | None) -> Decimal | None:
    if snapshot is None:
        return None
    distances = [
        abs(p.mark_price - p.liquidation_price) / p.mark_price
        for p in snapshot.positions
        if p.mark_price and p.liquidation_price is not None
    ]
    return min(distances) if distances else None


async def recent_actions(
    journal: Journal, account: str | None = None, limit: int = 20
) -> list[ActionRecord]:
    """The newest actions, newest first."""
    return await journal.recent_actions(account, limit)


async def health(journal: Journal, config: LevbotConfig, now: datetime) -> list[Health]:
    """Healthy when the last successful cycle is newer than 3 intervals."""
    report: list[Health] = []
    for account in config.accounts:
        limit = timedelta(seconds=account.interval_seconds * STALE_AFTER_INTERVALS)
        last = await journal.last_successful_cycle(account.name)
        healthy = last is not None and now - last <= limit
        report.append(Health(account.name, last, limit, healthy))
    return report


class UnknownAccount(LookupError):
    """The name matches no configured account."""


class DrivenElsewhere(LookupError):
    """The account is configured but another levbot process holds its lease (several
    daemons on one PostgreSQL): what needs its exchange runs there."""


@dataclass(slots=True)
class Controls:
    """What an owner can ask and do, whatever the channel (Telegram, CLI, ...)."""

    config: LevbotConfig
    journal: Journal
    services: dict[str, AccountService]
    clock: Callable[[], datetime]

    def account_names(self) -> list[str]:
        return [a.name for a in self.config.accounts]

    def resolve(self, name: str | None) -> list[str]:
        """`None` or 'all' -> every account; otherwise the one named (UnknownAccount).

        Any configured account: what is read or written through the journal (status,
        positions, pause, targets, charts) works whichever process drives it."""
        if name is None or name == ALL_ACCOUNTS:
            return self.account_names()
        if name not in self.account_names():
            raise UnknownAccount(name)
        return [name]

    def driven_here(self, name: str) -> None:
        """Nothing when this process drives `name`; else UnknownAccount/DrivenElsewhere."""
        self._service(name)

    def _service(self, name: str) -> AccountService:
        """The account's service in this process (DrivenElsewhere when another holds it)."""
        account = self.resolve(name)[0]
        service = self.services.get(account)
        if service is None:
            raise DrivenElsewhere(account)
        return service

    async def statuses(self) -> list[AccountStatus]:
        halted = frozenset(name for name, service in self.services.items() if service.halted)
        return await account_statuses(self.journal, self.config, halted)

    async def positions(self, name: str | None) -> list[tuple[str, SnapshotRecord | None]]:
        snapshots = await self.journal.latest_snapshots()
        return [(n, snapshots.get(n)) for n in self.resolve(name)]

    async def preview(self, name: str) -> tuple[AccountSnapshot, Plan]:
        return await self._service(name).preview()

    async def backstop_preview(self, name: str) -> BackstopPreview:
        """The ladder the bot would keep now and what would change (nothing is sent)."""
        return await self._service(name).backstop_preview()

    def backstop_off(self, name: str) -> str | None:
        """Why `name` keeps no backstop ladder, or None when it keeps one."""
        account = self.config.account(self.resolve(name)[0])
        return None if account.to_backstop().enabled else backstop_off_reason(account)

    async def rebalance(self, name: str) -> CycleReport:
        return await self._service(name).run_cycle()

    async def set_paused(self, name: str | None, paused: bool, by: str) -> list[str]:
        names = self.resolve(name)
        for account in names:
            await self.journal.set_paused(account, paused, by)
        return names

    async def current_target(self, name: str, symbol: str | None) -> Target:
        account = self.resolve(name)[0]
        overrides = await self.journal.target_overrides(account)
        targets = self.config.account(account).to_targets().overridden(overrides)
        return targets.account if symbol is None else targets.for_symbol(symbol)

    async def set_target(self, name: str, symbol: str | None, target: Target, by: str) -> None:
        await self.journal.set_target_override(self.resolve(name)[0], symbol, target, by)

    async def history(self, limit: int) -> list[ActionRecord]:
        return await recent_actions(self.journal, None, limit)

    async def chart_data(
        self, name: str, since: datetime
    ) -> tuple[list[SnapshotRecord], list[ActionRecord], Target]:
        account = self.resolve(name)[0]
        snapshots = await self.journal.snapshots_since(account, since)
        actions = [
            a for a in await recent_actions(self.journal, account, 500) if a.created_at >= since
        ]
        return snapshots, actions, await self.current_target(account, None)
