"""The journal of a replay, in memory, behind the protocol the daemon's cycle uses.

The `levbot` policy runs `AccountService` itself, so the only stand-in is this: no
database, no crash to recover from, the same rule for what counts toward the cooldown
and the daily transfer cap (`MAYBE_DONE`), and every outcome kept for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from bot.clock import Clock
from bot.domain.actions import (
    Action,
    ActionKind,
    CancelStop,
    Order,
    PlaceStop,
    RecentActivity,
    StopFilled,
)
from bot.domain.models import ZERO, AccountSnapshot
from bot.domain.outcomes import MAYBE_DONE, ActionOutcome, ActionStatus
from bot.domain.targets import Target
from bot.domain.vocabulary import AlertLevel, CycleStatus
from bot.store.records import PendingIntent, RestingStopRecord


@dataclass(slots=True)
class MemoryJournal:
    """What happened in one replay, and what the planner must remember of it."""

    clock: Clock
    # Every result, with the replay time it was written at.
    outcomes: list[tuple[datetime, ActionOutcome]] = field(default_factory=list)
    alerts: int = 0
    _cycles: int = 0
    _day: datetime | None = None
    _transferred: Decimal = ZERO
    _last_order: dict[str, datetime] = field(default_factory=dict)
    _resting: dict[str, RestingStopRecord] = field(default_factory=dict)

    def actions(self, account: str, cycle_id: int | None, dry_run: bool = False) -> MemoryJournal:
        return self

    async def intent(self, action: Action, client_id: str) -> None:
        return None

    async def result(self, outcome: ActionOutcome) -> None:
        now = self.clock()
        self.outcomes.append((now, outcome))
        self._track_stop(outcome, now)
        if outcome.status not in MAYBE_DONE:
            return
        day = _midnight(now)
        if day != self._day:
            self._day, self._transferred = day, ZERO
        if outcome.action.kind is ActionKind.TRANSFER_IN:
            self._transferred += outcome.action.amount
        if isinstance(outcome.action, Order):
            self._last_order[outcome.action.reason.scope] = now

    def _track_stop(self, outcome: ActionOutcome, now: datetime) -> None:
        """Which backstops rest, as the SQL journal derives it from its rows."""
        action = outcome.action
        if not outcome.ok:
            return
        if isinstance(action, PlaceStop) and outcome.receipt is not None:
            stop = action.stop
            exchange_id = getattr(outcome.receipt, "exchange_id", None)
            self._resting[outcome.client_id] = RestingStopRecord(
                client_id=outcome.client_id, exchange_id=exchange_id, symbol=stop.symbol,
                side=stop.order_side.value, amount=stop.amount,
                trigger_price=stop.trigger_price, scope=stop.scope, placed_at=now,
            )  # fmt: skip
        elif isinstance(action, (CancelStop, StopFilled)):
            self._resting.pop(action.order.client_order_id, None)

    async def resting_stops(self, account: str) -> tuple[RestingStopRecord, ...]:
        return tuple(self._resting.values())

    async def recent_activity(self, account: str, now: datetime) -> RecentActivity:
        transferred = self._transferred if _midnight(now) == self._day else ZERO
        return RecentActivity(transferred_today=transferred, last_order_at=dict(self._last_order))

    async def start_cycle(self, account: str, at: datetime, run_id: int | None = None) -> int:
        self._cycles += 1
        return self._cycles

    async def finish_cycle(
        self,
        cycle_id: int,
        status: CycleStatus,
        at: datetime,
        notes: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        return None

    async def close_interrupted_cycles(
        self, account: str, at: datetime, keep: int | None = None
    ) -> int:
        return 0

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
        return 0

    async def pending_intents(self, account: str) -> list[PendingIntent]:
        # Every intent gets its result in the same call: a replay never crashes between.
        return []

    async def unknown_intents(
        self, account: str, since: datetime | None = None
    ) -> list[PendingIntent]:
        # The simulated exchange always answers: no outcome is ever unknown in a replay.
        return []

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
        return None

    async def target_overrides(self, account: str) -> dict[str | None, Target]:
        return {}

    async def paused_accounts(self) -> set[str]:
        return set()

    async def enqueue_alert(self, level: AlertLevel, text: str, at: datetime | None = None) -> int:
        self.alerts += 1
        return self.alerts


def _midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
