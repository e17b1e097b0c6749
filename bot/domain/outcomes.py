"""What the exchange answered, and what became of each planned action.

The receipts are the port's answers, in domain terms. Whether an action did anything is
decided once, here and in the executor (`bot.app.execute`): the journal, the cycle
report, the alerts and every channel read `ActionOutcome.status` and never judge again.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from bot.domain.actions import Action, CancelStop, PlaceStop
from bot.domain.models import OrderSide, Side
from bot.domain.stops import StopOrder, StopStatus


class OrderStatus(StrEnum):
    """An order's state at the venue, as the adapters map each venue's own words."""

    OPEN = "open"
    CLOSED = "closed"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


# States in which the venue will fill nothing more.
_DEAD = frozenset({OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class ActionStatus(StrEnum):
    """Where an action stands. `pending` = intent written, result not (yet) known;
    `unknown` = the call went out but its outcome could not be seen."""

    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


# Actions that count toward the cooldown and the daily transfer cap: done, or most
# likely done (the caps err on the safe side).
MAYBE_DONE = frozenset({ActionStatus.OK, ActionStatus.UNKNOWN, ActionStatus.PENDING})


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderResult:
    client_order_id: str
    exchange_id: str
    symbol: str
    side: OrderSide
    amount: Decimal
    filled: Decimal
    average_price: Decimal | None
    fee: Decimal
    status: OrderStatus

    @property
    def did_nothing(self) -> str | None:
        """Why the order did nothing (dead with nothing filled), or None when it acted
        or may still act."""
        if self.status in _DEAD and self.filled == 0:
            return f"order {self.status.value} with nothing filled"
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferResult:
    transfer_id: str
    currency: str
    amount: Decimal
    into_derivatives: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginResult:
    symbol: str
    side: Side
    amount: Decimal
    add: bool


ExchangeReceipt = OrderResult | TransferResult | MarginResult | StopOrder


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What happened to one planned action: `status` is the one verdict."""

    action: Action
    client_id: str
    receipt: ExchangeReceipt | None
    error: str | None = None
    # Ok without an error; an error alone means failed (or say unknown).
    status: ActionStatus = ActionStatus.OK

    def __post_init__(self) -> None:
        if self.error is not None and self.status is ActionStatus.OK:
            object.__setattr__(self, "status", ActionStatus.FAILED)

    @classmethod
    def of(cls, action: Action, client_id: str, receipt: ExchangeReceipt) -> ActionOutcome:
        """The verdict on a receipt: an order that did nothing failed."""
        if isinstance(receipt, OrderResult):
            nothing = receipt.did_nothing
            if nothing is not None:
                return cls(action, client_id, receipt, nothing)
        if isinstance(receipt, StopOrder):
            problem = _stop_problem(action, receipt)
            if problem is not None:
                return cls(action, client_id, receipt, problem)
        return cls(action, client_id, receipt)

    @classmethod
    def failed(cls, action: Action, client_id: str, error: str) -> ActionOutcome:
        return cls(action, client_id, None, error)

    @property
    def ok(self) -> bool:
        return self.status is ActionStatus.OK


def _stop_problem(action: Action, receipt: StopOrder) -> str | None:
    """A placement must leave a stop resting (or already triggered); a cancellation must
    leave it not resting (cancelled, or triggered before the cancel arrived)."""
    if isinstance(action, PlaceStop) and receipt.status in (
        StopStatus.CANCELED,
        StopStatus.REJECTED,
    ):
        return f"stop {receipt.status.value} by the venue"
    if isinstance(action, CancelStop) and receipt.resting:
        return "stop still resting after the cancel"
    return None


class ActionJournal(Protocol):
    """Where intents are written before the exchange call, and results after."""

    async def intent(self, action: Action, client_id: str) -> None: ...

    async def result(self, outcome: ActionOutcome) -> None: ...
