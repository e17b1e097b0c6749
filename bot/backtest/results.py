"""What a replay records for one policy: its action rows, its timeline, its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from bot.domain.actions import ActionKind
from bot.domain.models import ZERO


class ReplayEvent(StrEnum):
    """Rows of actions.csv that are not an action of the plan."""

    # A streamed mark crossed one of the service's triggers and the cycle ran there.
    STREAM_TRIGGER = "stream_trigger"


@dataclass(frozen=True, slots=True)
class ActionRow:
    timestamp: int
    kind: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal | None
    notional: Decimal
    fee: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class TimelineRow:
    timestamp: int
    price: Decimal
    wallet: Decimal
    equity: Decimal
    notional: Decimal
    leverage: Decimal | None
    margin_ratio: Decimal | None
    source_balance: Decimal


@dataclass(slots=True)
class PolicyResult:
    name: str
    actions: list[ActionRow] = field(default_factory=list)
    timeline: list[TimelineRow] = field(default_factory=list)
    liquidation_time: int | None = None
    max_leverage: Decimal = ZERO
    bars_in_band: int = 0
    bars: int = 0
    max_margin_ratio: Decimal = ZERO
    failed_actions: int = 0
    fees_paid: Decimal = ZERO
    slippage_cost: Decimal = ZERO
    final_equity: Decimal = ZERO
    # Backstops placed and cancelled at the exchange (journaled, not action rows).
    backstop_orders: int = 0

    def summary(self) -> dict[str, object]:
        def count(*kinds: str) -> int:
            return sum(1 for a in self.actions if a.kind in kinds)

        def total(kind: ActionKind, attr: str) -> float:
            return float(sum((getattr(a, attr) for a in self.actions if a.kind == kind), ZERO))

        return {
            "liquidated": self.liquidation_time is not None,
            "liquidation_time": iso(self.liquidation_time),
            "max_leverage": _round(self.max_leverage),
            "time_in_band": round(self.bars_in_band / self.bars, 4) if self.bars else 0.0,
            "min_margin_headroom": _round(1 - self.max_margin_ratio),
            "transfers": count(
                ActionKind.TRANSFER_IN,
                ActionKind.TRANSFER_OUT,
                ActionKind.ADD_MARGIN,
                ActionKind.REDUCE_MARGIN,
            ),
            "orders": count(ActionKind.REDUCE_ORDER, ActionKind.INCREASE_ORDER),
            "collateral_added": round(total(ActionKind.TRANSFER_IN, "amount"), 2),
            "notional_reduced": round(total(ActionKind.REDUCE_ORDER, "notional"), 2),
            "fees_paid": _round(self.fees_paid),
            "slippage_cost": _round(self.slippage_cost),
            "final_equity": _round(self.final_equity),
            "failed_actions": self.failed_actions,
            "backstop_fills": count(ActionKind.BACKSTOP_FILL),
            "stream_triggers": count(ReplayEvent.STREAM_TRIGGER),
            "backstop_orders": self.backstop_orders,
        }


def _round(value: Decimal, places: int = 4) -> float:
    return round(float(value), places)


def iso(timestamp: int | None) -> str | None:
    """`2021-05-19T12:50:00Z` for a ms timestamp (None stays None)."""
    if timestamp is None:
        return None
    return utc(timestamp).isoformat().replace("+00:00", "Z")


def utc(timestamp: int) -> datetime:
    """A ms timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp / 1000, UTC)
