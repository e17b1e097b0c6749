"""The journal as one account's cycle sees it: the small protocol `AccountService` needs.

The daemon passes the SQL journal (`bot.store.journal.Journal`); the backtest passes
an in-memory one, so a replay runs exactly the daemon's cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bot.domain.actions import RecentActivity
from bot.domain.models import AccountSnapshot
from bot.domain.outcomes import ActionJournal, ActionStatus
from bot.domain.targets import Target
from bot.domain.vocabulary import AlertLevel, CycleStatus
from bot.store.records import PendingIntent, RestingStopRecord


class CycleJournal(Protocol):
    """What one account's cycle reads and writes."""

    async def start_cycle(self, account: str, at: datetime, run_id: int | None = None) -> int: ...

    async def finish_cycle(
        self,
        cycle_id: int,
        status: CycleStatus,
        at: datetime,
        notes: Sequence[str] = (),
        error: str | None = None,
    ) -> None: ...

    async def close_interrupted_cycles(
        self, account: str, at: datetime, keep: int | None = None
    ) -> int: ...

    async def record_snapshot(
        self,
        account: str,
        snapshot: AccountSnapshot,
        equity: Decimal,
        notional: Decimal,
        leverage: Decimal | None,
        margin_ratio: Decimal | None,
        cycle_id: int | None = None,
    ) -> int: ...

    def actions(self, account: str, cycle_id: int | None, dry_run: bool = False) -> ActionJournal:
        """Where this cycle's intents and results go."""
        ...

    async def pending_intents(self, account: str) -> list[PendingIntent]: ...

    async def unknown_intents(
        self, account: str, since: datetime | None = None
    ) -> list[PendingIntent]:
        """Actions journaled `unknown` (written at or after `since`), to look up."""
        ...

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
    ) -> None: ...

    async def recent_activity(self, account: str, now: datetime) -> RecentActivity: ...

    async def resting_stops(self, account: str) -> tuple[RestingStopRecord, ...]:
        """Backstops placed and not since cancelled or seen triggered."""
        ...

    async def target_overrides(self, account: str) -> dict[str | None, Target]: ...

    async def paused_accounts(self) -> set[str]: ...

    async def enqueue_alert(
        self, level: AlertLevel, text: str, at: datetime | None = None
    ) -> int: ...
