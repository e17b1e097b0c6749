"""What the journal hands back: frozen values, never table objects.

`CycleStatus` and `ActionStatus` are the domain's words, re-exported for the journal's
callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.domain.actions import ActionKind
from bot.domain.models import Position
from bot.domain.outcomes import ActionStatus
from bot.domain.vocabulary import SUCCESSFUL_CYCLES, AlertLevel, CycleStatus

__all__ = [
    "SUCCESSFUL_CYCLES",
    "ActionRecord",
    "ActionStatus",
    "AlertRecord",
    "AuditRecord",
    "CycleRecord",
    "CycleStatus",
    "PendingIntent",
    "RestingStopRecord",
    "RunRecord",
    "SnapshotRecord",
    "UnknownIntent",
]


class UnknownIntent(LookupError):
    """No action with this client id was journaled."""


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One journaled action. `symbol` is the currency for a transfer.

    `side` is the order side (buy/sell) for orders and the position side (long/short)
    for margin adjustments; None for transfers.
    """

    client_id: str
    account: str
    cycle_id: int | None
    kind: ActionKind
    symbol: str
    side: str | None
    amount: Decimal
    rule: str
    scope: str
    leverage_before: Decimal | None
    leverage_after: Decimal | None
    reason: str
    status: ActionStatus
    exchange_id: str | None
    filled: Decimal | None
    fill_price: Decimal | None
    fee: Decimal | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    dry_run: bool


@dataclass(frozen=True, slots=True)
class PendingIntent:
    """An intent without a result: the exchange call may or may not have happened."""

    client_id: str
    kind: ActionKind
    symbol: str
    side: str | None
    amount: Decimal
    created_at: datetime
    cycle_id: int | None
    hedged: bool
    # Backstops: the stop a cancellation or fill concerns (its client id), the venue's
    # id where known, and the trigger price.
    ref: str | None = None
    exchange_id: str | None = None
    trigger_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RestingStopRecord:
    """A backstop the journal believes rests at the venue: placed, and neither
    cancelled nor seen triggered since."""

    client_id: str
    exchange_id: str | None
    symbol: str
    side: str
    amount: Decimal
    trigger_price: Decimal
    scope: str
    placed_at: datetime


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """One cycle with the actions it journaled, oldest action first."""

    id: int
    account: str
    started_at: datetime
    finished_at: datetime | None
    status: CycleStatus
    notes: tuple[str, ...]
    error: str | None
    actions: tuple[ActionRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A journaled account snapshot with the numbers computed from it."""

    id: int
    account: str
    settle: str
    taken_at: datetime
    wallet: Decimal
    wallet_free: Decimal
    equity: Decimal
    notional: Decimal
    leverage: Decimal | None
    margin_ratio: Decimal | None
    source_balance: Decimal | None
    source_free: Decimal | None
    positions: tuple[Position, ...]
    cycle_id: int | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert in the outbox."""

    id: int
    level: AlertLevel
    text: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One command received from a chat, allowed or not."""

    chat_id: int
    user: str | None
    command: str
    args: str
    allowed: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One daemon run."""

    id: int
    pid: int
    version: str
    started_at: datetime
    stopped_at: datetime | None
    exit_reason: str | None
