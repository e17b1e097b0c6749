"""Conversions between domain values, table rows and the records callers get back."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.domain.actions import (
    STOP_KINDS,
    Action,
    ActionKind,
    CancelStop,
    MarginAdjustment,
    Order,
    PlaceStop,
    StopFilled,
    Transfer,
)
from bot.domain.leverage import notional
from bot.domain.models import MarginMode, Position, Side
from bot.domain.outcomes import ActionOutcome, MarginResult, OrderResult, TransferResult
from bot.domain.stops import StopOrder
from bot.domain.targets import Target
from bot.domain.vocabulary import AlertLevel
from bot.store.records import (
    ActionRecord,
    ActionStatus,
    AlertRecord,
    CycleRecord,
    CycleStatus,
    PendingIntent,
    SnapshotRecord,
)
from bot.store.tables import (
    AccountSnapshotRow,
    ActionRow,
    AlertRow,
    CycleRow,
    PositionSnapshotRow,
    TargetOverrideRow,
)

# Order states that mean the exchange did nothing, when nothing was filled.


def row_id(value: int | None) -> int:
    """The primary key of a flushed row (None only before the INSERT)."""
    if value is None:
        raise RuntimeError("row has no id: it was never flushed")
    return value


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def positions_to_json(positions: tuple[Position, ...]) -> str:
    """Every Position field, Decimals as strings, so the picture comes back exactly."""
    return json.dumps(
        [
            {
                "symbol": p.symbol,
                "side": p.side.value,
                "contracts": str(p.contracts),
                "entry_price": str(p.entry_price),
                "mark_price": _dec(p.mark_price),
                "margin_mode": p.margin_mode.value,
                "contract_size": str(p.contract_size),
                "isolated_margin": str(p.isolated_margin),
                "maintenance_margin": _dec(p.maintenance_margin),
                "liquidation_price": _dec(p.liquidation_price),
                "hedged": p.hedged,
            }
            for p in positions
        ]
    )


def positions_from_json(text: str) -> tuple[Position, ...]:
    return tuple(
        Position(
            symbol=item["symbol"],
            side=Side(item["side"]),
            contracts=Decimal(item["contracts"]),
            entry_price=Decimal(item["entry_price"]),
            mark_price=_undec(item["mark_price"]),
            margin_mode=MarginMode(item["margin_mode"]),
            contract_size=Decimal(item["contract_size"]),
            isolated_margin=Decimal(item["isolated_margin"]),
            maintenance_margin=_undec(item["maintenance_margin"]),
            liquidation_price=_undec(item["liquidation_price"]),
            hedged=bool(item["hedged"]),
        )
        for item in json.loads(text)
    )


def position_row(snapshot_id: int, position: Position) -> PositionSnapshotRow:
    return PositionSnapshotRow(
        snapshot_id=snapshot_id,
        symbol=position.symbol,
        side=position.side.value,
        margin_mode=position.margin_mode.value,
        contracts=position.contracts,
        entry_price=position.entry_price,
        mark_price=position.mark_price,
        notional=None if position.mark_price is None else notional(position),
        isolated_margin=position.isolated_margin,
        maintenance_margin=position.maintenance_margin,
        liquidation_price=position.liquidation_price,
    )


def snapshot_record(row: AccountSnapshotRow) -> SnapshotRecord:
    return SnapshotRecord(
        id=row_id(row.id),
        account=row.account,
        settle=row.settle,
        taken_at=row.taken_at,
        wallet=row.wallet,
        wallet_free=row.wallet_free,
        equity=row.equity,
        notional=row.notional,
        leverage=row.leverage,
        margin_ratio=row.margin_ratio,
        source_balance=row.source_balance,
        source_free=row.source_free,
        positions=positions_from_json(row.positions_json),
        cycle_id=row.cycle_id,
    )


def action_row(
    action: Action,
    client_id: str,
    account: str,
    cycle_id: int | None,
    dry_run: bool,
    at: datetime,
) -> ActionRow:
    """The intent row for `action`, before anything is sent to the exchange."""
    reason = action.reason
    row = ActionRow(
        client_id=client_id,
        account=account,
        cycle_id=cycle_id,
        kind=action.kind.value,
        symbol="",
        amount=action.amount,
        rule=reason.rule.value,
        scope=reason.scope,
        leverage_before=reason.leverage_before,
        leverage_after=reason.leverage_after,
        reason=reason.describe(),
        status=ActionStatus.PENDING.value,
        created_at=at,
        updated_at=at,
        dry_run=dry_run,
    )
    if isinstance(action, Transfer):
        row.symbol = action.currency
    elif isinstance(action, MarginAdjustment):
        row.symbol = action.symbol
        row.side = action.side.value
        row.hedged = action.hedged
    elif isinstance(action, PlaceStop):
        stop = action.stop
        row.symbol = stop.symbol
        row.side = stop.order_side.value
        row.expected_price = stop.trigger_price
        row.notional = stop.amount * stop.trigger_price
        row.reduce_only = True
        row.hedged = stop.hedged
    elif isinstance(action, (CancelStop, StopFilled)):
        # Names the stop it concerns: by client id (`ref`) and by the venue's id.
        order = action.order
        row.symbol = order.symbol
        row.side = order.side.value
        row.expected_price = order.trigger_price
        row.reduce_only = True
        row.exchange_id = order.exchange_id
        row.ref = order.client_order_id
    else:
        _fill_order(row, action)
    return row


def _fill_order(row: ActionRow, order: Order) -> None:
    row.symbol = order.symbol
    row.side = order.order_side.value
    row.expected_price = order.expected_price
    row.notional = order.notional
    row.reduce_only = order.reduce_only
    row.hedged = order.hedged


def outcome_values(outcome: ActionOutcome) -> dict[str, Any]:
    """The columns a result sets: the outcome's status, exchange id, fill and fee, or
    the error. The verdict is the outcome's own (decided by the executor)."""
    values: dict[str, Any] = {"status": outcome.status.value, "error": outcome.error}
    receipt = outcome.receipt
    if isinstance(receipt, OrderResult):
        values.update(
            exchange_id=receipt.exchange_id,
            filled=receipt.filled,
            fill_price=receipt.average_price,
            fee=receipt.fee,
        )
    elif isinstance(receipt, TransferResult):
        values.update(exchange_id=receipt.transfer_id, filled=receipt.amount)
    elif isinstance(receipt, MarginResult):
        values.update(filled=receipt.amount)
    elif isinstance(receipt, StopOrder):
        values.update(exchange_id=receipt.exchange_id)
        if receipt.filled:
            values.update(filled=receipt.filled, fill_price=receipt.average_price, fee=receipt.fee)
    return values


def action_record(row: ActionRow) -> ActionRecord:
    return ActionRecord(
        client_id=row.client_id,
        account=row.account,
        cycle_id=row.cycle_id,
        kind=ActionKind(row.kind),
        symbol=row.symbol,
        side=row.side,
        amount=row.amount,
        rule=row.rule,
        scope=row.scope,
        leverage_before=row.leverage_before,
        leverage_after=row.leverage_after,
        reason=row.reason,
        status=ActionStatus(row.status),
        exchange_id=row.exchange_id,
        filled=row.filled,
        fill_price=row.fill_price,
        fee=row.fee,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        dry_run=row.dry_run,
    )


def pending_intent(row: ActionRow) -> PendingIntent:
    return PendingIntent(
        client_id=row.client_id,
        kind=ActionKind(row.kind),
        symbol=row.symbol,
        side=row.side,
        amount=row.amount,
        created_at=row.created_at,
        cycle_id=row.cycle_id,
        hedged=row.hedged,
        ref=row.ref,
        exchange_id=row.exchange_id,
        trigger_price=row.expected_price if ActionKind(row.kind) in STOP_KINDS else None,
    )


def cycle_record(row: CycleRow, actions: tuple[ActionRecord, ...] = ()) -> CycleRecord:
    return CycleRecord(
        id=row_id(row.id),
        account=row.account,
        started_at=row.started_at,
        finished_at=row.finished_at,
        status=CycleStatus(row.status),
        notes=tuple(json.loads(row.notes)),
        error=row.error,
        actions=actions,
    )


def alert_record(row: AlertRow) -> AlertRecord:
    return AlertRecord(
        id=row_id(row.id),
        level=AlertLevel(row.level),
        text=row.text,
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
    )


def target_values(target: Target) -> dict[str, Any]:
    return {
        "leverage": target.leverage,
        "min": target.min,
        "max": target.max,
        "emergency_margin_ratio": target.emergency_margin_ratio,
        "emergency_liquidation_distance": target.emergency_liquidation_distance,
    }


def target_from_row(row: TargetOverrideRow) -> Target:
    return Target(
        leverage=row.leverage,
        min=row.min,
        max=row.max,
        emergency_margin_ratio=row.emergency_margin_ratio,
        emergency_liquidation_distance=row.emergency_liquidation_distance,
    )
