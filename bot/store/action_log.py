"""The action log: intents before exchange writes, results after, and what they add up to.

An intent row is committed before the exchange call, so after a crash the actions
whose outcome is unknown are exactly the `pending` rows (`pending_intents`).

Where several daemons share the database (PostgreSQL), the daemon sets `fence` to its
leases: an intent is then journaled only in a transaction that finds this owner still
holding the account's lease at the epoch it claimed (`bot.store.leases.Fence`), else
`LeaseLost` is raised and nothing is written, so nothing is sent to the exchange.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, update
from sqlmodel import col, select

from bot.domain.actions import Action, ActionKind, RecentActivity
from bot.domain.outcomes import MAYBE_DONE, ActionOutcome
from bot.store.codec import action_record, action_row, outcome_values, pending_intent
from bot.store.leases import Fence
from bot.store.records import (
    ActionRecord,
    ActionStatus,
    PendingIntent,
    RestingStopRecord,
    UnknownIntent,
)
from bot.store.sessions import JournalBase
from bot.store.tables import ActionRow

logger = logging.getLogger(__name__)

_ORDER_KINDS = (ActionKind.REDUCE_ORDER.value, ActionKind.INCREASE_ORDER.value)
_MAYBE_DONE = tuple(status.value for status in MAYBE_DONE)
# Rows that end a placed backstop's life: it was cancelled, or it triggered.
_STOP_CLOSERS = (ActionKind.BACKSTOP_CANCEL.value, ActionKind.BACKSTOP_FILL.value)


@dataclass(frozen=True, slots=True)
class ActionRecorder:
    """The `ActionJournal` port for one account's cycle (see `bot.app.execute`)."""

    log: ActionLog
    account: str
    cycle_id: int | None
    dry_run: bool = False

    async def intent(self, action: Action, client_id: str) -> None:
        await self.log.record_intent(self.account, self.cycle_id, action, client_id, self.dry_run)

    async def result(self, outcome: ActionOutcome) -> None:
        await self.log.record_result(self.account, self.cycle_id, outcome, self.dry_run)


class ActionLog(JournalBase):
    # None: this process owns every account (SQLite, one process). Set by the daemon on
    # PostgreSQL, where leases decide who drives which account.
    fence: Fence | None = None

    def actions(self, account: str, cycle_id: int | None, dry_run: bool = False) -> ActionRecorder:
        """An `ActionJournal` writing `account`'s actions under `cycle_id`."""
        return ActionRecorder(self, account, cycle_id, dry_run)

    async def record_intent(
        self,
        account: str,
        cycle_id: int | None,
        action: Action,
        client_id: str,
        dry_run: bool = False,
        at: datetime | None = None,
    ) -> None:
        """Write `action` as pending. A reused `client_id` raises (it is unique); so does
        a lease this process no longer holds (`LeaseLost`, with `fence` set)."""
        row = action_row(action, client_id, account, cycle_id, dry_run, self._now(at))
        async with self._session() as session:
            if self.fence is not None:
                # Same transaction as the insert: the lease cannot change hands between.
                await self.fence.check(session, account)
            session.add(row)
            await session.commit()

    async def record_result(
        self,
        account: str,
        cycle_id: int | None,
        outcome: ActionOutcome,
        dry_run: bool = False,
        at: datetime | None = None,
    ) -> None:
        """Resolve the intent of `outcome.client_id` with what the exchange answered."""
        now = self._now(at)
        values = outcome_values(outcome)
        async with self._session() as session:
            result = await session.exec(
                update(ActionRow)
                .where(col(ActionRow.client_id) == outcome.client_id)
                .values(updated_at=now, **values)
            )
            if result.rowcount == 0:
                # The exchange acted, so the row must exist even if the intent was lost.
                logger.warning("result for %s without an intent; writing both", outcome.client_id)
                row = action_row(outcome.action, outcome.client_id, account, cycle_id, dry_run, now)
                for name, value in values.items():
                    setattr(row, name, value)
                session.add(row)
            await session.commit()

    async def pending_intents(self, account: str) -> list[PendingIntent]:
        """Intents of real (not dry-run) actions that never got a result, oldest first."""
        async with self._session() as session:
            rows = await session.exec(
                select(ActionRow)
                .where(
                    col(ActionRow.account) == account,
                    col(ActionRow.status) == ActionStatus.PENDING.value,
                    col(ActionRow.dry_run).is_(False),
                )
                .order_by(col(ActionRow.created_at), col(ActionRow.id))
            )
            return [pending_intent(row) for row in rows]

    async def unknown_intents(
        self, account: str, since: datetime | None = None
    ) -> list[PendingIntent]:
        """Real actions whose outcome the bot did not see (journaled `unknown`), written at
        or after `since` when given, oldest first: the ones still worth looking up."""
        query = select(ActionRow).where(
            col(ActionRow.account) == account,
            col(ActionRow.status) == ActionStatus.UNKNOWN.value,
            col(ActionRow.dry_run).is_(False),
        )
        if since is not None:
            query = query.where(col(ActionRow.created_at) >= self._now(since))
        async with self._session() as session:
            rows = await session.exec(query.order_by(col(ActionRow.created_at), col(ActionRow.id)))
            return [pending_intent(row) for row in rows]

    async def recent_actions(
        self, account: str | None = None, limit: int = 20
    ) -> list[ActionRecord]:
        """The newest `limit` actions (of `account`, or of all), newest first."""
        query = select(ActionRow).order_by(
            col(ActionRow.created_at).desc(), col(ActionRow.id).desc()
        )
        if account is not None:
            query = query.where(col(ActionRow.account) == account)
        async with self._session() as session:
            return [action_record(row) for row in await session.exec(query.limit(limit))]

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
        """Settle an intent found after a restart. Raises `UnknownIntent` for a stray id."""
        values: dict[str, object] = {
            "status": ActionStatus(status).value,
            "error": error,
            "updated_at": self._now(at),
        }
        # Fields not given keep what is there (a resolution adds, it does not erase).
        given = {"exchange_id": exchange_id, "filled": filled, "fill_price": fill_price, "fee": fee}
        values.update({name: value for name, value in given.items() if value is not None})
        async with self._session() as session:
            result = await session.exec(
                update(ActionRow).where(col(ActionRow.client_id) == client_id).values(**values)
            )
            if result.rowcount == 0:
                raise UnknownIntent(client_id)
            await session.commit()

    async def resting_stops(self, account: str) -> tuple[RestingStopRecord, ...]:
        """The backstops placed for `account` that no later cancellation or fill closed:
        what levbot believes rests at the venue (the keeper checks it against the venue)."""
        closed = select(col(ActionRow.ref)).where(
            col(ActionRow.account) == account,
            col(ActionRow.kind).in_(_STOP_CLOSERS),
            col(ActionRow.status) == ActionStatus.OK.value,
            col(ActionRow.ref).is_not(None),
        )
        async with self._session() as session:
            rows = await session.exec(
                select(ActionRow)
                .where(
                    col(ActionRow.account) == account,
                    col(ActionRow.kind) == ActionKind.BACKSTOP_PLACE.value,
                    col(ActionRow.status) == ActionStatus.OK.value,
                    col(ActionRow.dry_run).is_(False),
                    col(ActionRow.client_id).not_in(closed),
                )
                .order_by(col(ActionRow.created_at), col(ActionRow.id))
            )
            return tuple(
                RestingStopRecord(
                    client_id=row.client_id,
                    exchange_id=row.exchange_id,
                    symbol=row.symbol,
                    side=row.side or "",
                    amount=row.amount,
                    trigger_price=row.expected_price or Decimal(0),
                    scope=row.scope,
                    placed_at=row.created_at,
                )
                for row in rows
            )

    async def recent_activity(self, account: str, now: datetime) -> RecentActivity:
        """Caps and cooldowns: transfers in since UTC midnight, last order per scope.

        Real actions count by the time their intent was written: successful ones, and
        those whose outcome is unknown or still pending (they have most likely happened,
        so the cap and the cooldown err on the safe side).
        """
        now = self._now(now)
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        async with self._session() as session:
            amounts = await session.exec(
                select(col(ActionRow.amount)).where(
                    col(ActionRow.account) == account,
                    col(ActionRow.kind) == ActionKind.TRANSFER_IN.value,
                    col(ActionRow.status).in_(_MAYBE_DONE),
                    col(ActionRow.dry_run).is_(False),
                    col(ActionRow.created_at) >= midnight,
                    col(ActionRow.created_at) <= now,
                )
            )
            transferred = sum(amounts, Decimal(0))
            last_orders = await session.exec(
                select(col(ActionRow.scope), func.max(col(ActionRow.created_at)))
                .where(
                    col(ActionRow.account) == account,
                    col(ActionRow.kind).in_(_ORDER_KINDS),
                    col(ActionRow.status).in_(_MAYBE_DONE),
                    col(ActionRow.dry_run).is_(False),
                    col(ActionRow.created_at) <= now,
                )
                .group_by(col(ActionRow.scope))
            )
            last_order_at = {scope: at for scope, at in last_orders if at is not None}
        return RecentActivity(transferred_today=transferred, last_order_at=last_order_at)
