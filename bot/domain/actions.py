"""What the planner asks for, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from bot.domain.models import OrderSide, Side
from bot.domain.stops import Stop, StopOrder


class Rule(StrEnum):
    """Which planner rule produced an action."""

    DELEVER = "de-lever"
    RELEVER = "re-lever"
    EMERGENCY = "emergency"
    # Keeping the resting backstop ladder in line with the position.
    BACKSTOP = "backstop"


class ActionKind(StrEnum):
    """Names used in the journal and the backtest's actions.csv."""

    TRANSFER_IN = "transfer_in"
    TRANSFER_OUT = "transfer_out"
    ADD_MARGIN = "add_margin"
    REDUCE_MARGIN = "reduce_margin"
    REDUCE_ORDER = "reduce_order"
    INCREASE_ORDER = "increase_order"
    # A reduce-only stop placed at the venue, one cancelled, and one that triggered.
    BACKSTOP_PLACE = "backstop_place"
    BACKSTOP_CANCEL = "backstop_cancel"
    BACKSTOP_FILL = "backstop_fill"


# The backstop keeper's kinds (the rest are trades the planner makes).
STOP_KINDS = frozenset(
    {ActionKind.BACKSTOP_PLACE, ActionKind.BACKSTOP_CANCEL, ActionKind.BACKSTOP_FILL}
)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an action exists: the rule, the scope, and leverage before / expected after."""

    rule: Rule
    scope: str
    leverage_before: Decimal | None
    leverage_after: Decimal | None
    detail: str = ""

    def describe(self) -> str:
        if self.leverage_before is None and self.leverage_after is None and self.detail:
            # A backstop moves no leverage by being placed: its scope and why are enough.
            return f"{self.rule.value} {self.scope}: {self.detail}"
        before = "n/a" if self.leverage_before is None else f"{self.leverage_before:.2f}"
        after = "n/a" if self.leverage_after is None else f"{self.leverage_after:.2f}"
        text = f"{self.rule.value} {self.scope}: leverage {before} -> {after}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """Move `amount` of `currency` between the source wallet and the derivatives wallet."""

    currency: str
    amount: Decimal
    into_derivatives: bool
    reason: Reason

    @property
    def kind(self) -> ActionKind:
        return ActionKind.TRANSFER_IN if self.into_derivatives else ActionKind.TRANSFER_OUT


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginAdjustment:
    """Add margin to (or remove it from) one isolated position."""

    symbol: str
    side: Side
    amount: Decimal
    add: bool
    reason: Reason
    hedged: bool = False

    @property
    def kind(self) -> ActionKind:
        return ActionKind.ADD_MARGIN if self.add else ActionKind.REDUCE_MARGIN


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """A market order on one position leg. Reduce-only unless it adds exposure."""

    symbol: str
    position_side: Side
    amount: Decimal
    reduce_only: bool
    expected_price: Decimal
    notional: Decimal
    reason: Reason
    hedged: bool = False

    @property
    def order_side(self) -> OrderSide:
        if self.reduce_only:
            return self.position_side.closing_order_side
        return self.position_side.opening_order_side

    @property
    def kind(self) -> ActionKind:
        return ActionKind.REDUCE_ORDER if self.reduce_only else ActionKind.INCREASE_ORDER


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceStop:
    """Rest `stop` at the venue (a reduce-only stop-market order on the mark price)."""

    stop: Stop
    reason: Reason

    kind = ActionKind.BACKSTOP_PLACE

    @property
    def symbol(self) -> str:
        return self.stop.symbol

    @property
    def amount(self) -> Decimal:
        return self.stop.amount


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelStop:
    """Take a resting stop off the venue (re-priced, resized or orphaned)."""

    order: StopOrder
    reason: Reason

    kind = ActionKind.BACKSTOP_CANCEL

    @property
    def symbol(self) -> str:
        return self.order.symbol

    @property
    def amount(self) -> Decimal:
        return self.order.amount


@dataclass(frozen=True, slots=True, kw_only=True)
class StopFilled:
    """A resting stop the venue triggered: journaled with its fill, never sent."""

    order: StopOrder
    reason: Reason

    kind = ActionKind.BACKSTOP_FILL

    @property
    def symbol(self) -> str:
        return self.order.symbol

    @property
    def amount(self) -> Decimal:
        return self.order.filled


# What the planner plans (and the backtest's baselines send).
TradeAction = Transfer | MarginAdjustment | Order
# The backstop keeper's actions; they go through the same journal and executor.
StopAction = PlaceStop | CancelStop | StopFilled
Action = TradeAction | StopAction


def describe_action(action: Action) -> str:
    """One short human line for an action (journal, alerts, CLI and Telegram)."""
    if isinstance(action, PlaceStop):
        stop = action.stop
        return (
            f"backstop {stop.order_side.value} {stop.amount} {stop.symbol} "
            f"if mark crosses {stop.trigger_price} (level {stop.level})"
        )
    if isinstance(action, CancelStop):
        order = action.order
        return (
            f"cancel backstop {order.side.value} {order.amount} {order.symbol} "
            f"@ {order.trigger_price}"
        )
    if isinstance(action, StopFilled):
        order = action.order
        price = "n/a" if order.average_price is None else f"{order.average_price}"
        return f"backstop triggered: {order.side.value} {order.filled} {order.symbol} @ {price}"
    if isinstance(action, Order):
        effect = "reduce-only" if action.reduce_only else "increase"
        return (
            f"{action.order_side.value} {action.amount} {action.symbol} "
            f"({effect}, ~{action.notional:.2f})"
        )
    kind = action.kind.value.replace("_", " ")
    where = action.currency if isinstance(action, Transfer) else action.symbol
    return f"{kind} {action.amount} {where}"


@dataclass(frozen=True, slots=True)
class ScopeDecision:
    """What the planner saw in one scope and what it decided."""

    scope: str
    leverage: Decimal | None
    margin_ratio: Decimal | None
    target: Decimal
    band: tuple[Decimal, Decimal]
    rule: Rule | None
    expected_leverage: Decimal | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """The actions to take, in order, plus why nothing (more) is done."""

    created_at: datetime
    actions: tuple[Action, ...] = ()
    decisions: tuple[ScopeDecision, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.actions

    @property
    def emergency(self) -> bool:
        return any(a.reason.rule is Rule.EMERGENCY for a in self.actions)


@dataclass(frozen=True, slots=True)
class RecentActivity:
    """What the journal remembers that the planner needs: caps and cooldowns."""

    transferred_today: Decimal = Decimal(0)
    last_order_at: dict[str, datetime] = field(default_factory=dict)
