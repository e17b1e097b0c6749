"""The Exchange port: what levbot needs from any venue, real or simulated.

Adapters translate vendor payloads and errors into these types at the border, so the
service above never sees ccxt (or the simulator's internals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bot.domain.models import AccountSnapshot, OrderSide, Side
from bot.domain.outcomes import MarginResult, OrderResult, OrderStatus, TransferResult
from bot.domain.stops import StopOrder, StopStatus

__all__ = [
    "AuthenticationError",
    "CapabilityMissing",
    "Exchange",
    "ExchangeError",
    "InsufficientFunds",
    "InvalidOrder",
    "MarginResult",
    "OperationalError",
    "OrderRequest",
    "OrderResult",
    "OrderStatus",
    "OutcomeUnknown",
    "RequestObserver",
    "StopOrder",
    "StopRequest",
    "StopStatus",
    "TemporaryError",
    "TransferResult",
    "UnknownSymbol",
    "UnverifiedData",
]


class ExchangeError(Exception):
    """Base of every error an Exchange adapter raises."""


class TemporaryError(ExchangeError):
    """Network trouble, timeout, rate limit, exchange unavailable: worth retrying."""


class UnverifiedData(TemporaryError):
    """A reply that does not add up (truncated, a field missing or not a number, two views
    of the account that contradict each other, a value no account can hold): nothing is
    planned on it, and the next read may be good, so it counts as a failed read.
    """


class OutcomeUnknown(TemporaryError):
    """A write was sent but its reply was lost or unreadable (timeout, reset, 5xx, the
    venue's "unknown error", a truncated body): the write may or may not have happened.

    Never sent again blindly: it is journaled `unknown` and looked up (by client id).
    """


class InsufficientFunds(ExchangeError):
    """The wallet or position does not hold enough for the request."""


class InvalidOrder(ExchangeError):
    """The order breaks a market rule (precision, minimum, reduce-only size, duplicate id)."""


class UnknownSymbol(ExchangeError):
    """The exchange does not list the symbol."""


class AuthenticationError(ExchangeError):
    """Bad keys or missing permission: the account must halt and the owner be told."""


class CapabilityMissing(ExchangeError):
    """The exchange (or ccxt) cannot do this at all (e.g. transfers on Binance demo)."""


class OperationalError(ExchangeError):
    """Anything else the exchange rejected."""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A market order. `client_order_id` makes it idempotent across crashes."""

    symbol: str
    side: OrderSide
    amount: Decimal
    reduce_only: bool
    position_side: Side
    client_order_id: str
    hedged: bool = False


@dataclass(frozen=True, slots=True)
class StopRequest:
    """A reduce-only stop-market order triggered by the mark price (a backstop).

    It triggers when the mark reaches `trigger_price` from the current side: for a long
    (`side` sell) when the mark falls to it, for a short (`side` buy) when it rises to it.
    `client_order_id` makes it idempotent and findable after a crash."""

    symbol: str
    side: OrderSide
    amount: Decimal
    trigger_price: Decimal
    position_side: Side
    client_order_id: str
    hedged: bool = False


class Exchange(Protocol):
    """One account on one venue."""

    name: str

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        """Balances, positions and market rules, as one consistent picture.

        `include_source` False leaves the collateral source wallet unread (a request
        fewer on a steady cycle): the snapshot says `source_read` False, and
        `fetch_source` completes it when a plan needs collateral."""
        ...

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        """`snapshot` with the source wallet read now (`source_read` True). A failed or
        unverified read never raises: it gives `source_unknown`, as in `fetch_snapshot`."""
        ...

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        """Move collateral between the source wallet and the derivatives wallet."""
        ...

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        """Add margin to, or remove it from, an isolated position."""
        ...

    async def create_order(self, request: OrderRequest) -> OrderResult:
        """Place a market order (reduce-only unless the request says otherwise)."""
        ...

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        """The order with this client id, or None when the exchange never saw it."""
        ...

    async def fetch_transfer(
        self,
        client_id: str,
        currency: str,
        amount: Decimal,
        into_derivatives: bool,
        since: datetime,
    ) -> TransferResult | None:
        """The transfer sent with `client_id` (at or after `since`), or None when the venue
        has no record of it (never reached it, or refused it). Raises `CapabilityMissing`
        where the venue cannot look transfers up."""
        ...

    async def place_stop(self, request: StopRequest) -> StopOrder:
        """Rest a reduce-only stop-market order on the mark price; its state (open)."""
        ...

    async def cancel_stop(self, order: StopOrder) -> StopOrder:
        """Cancel a resting stop; its state afterwards. A stop that is already gone
        (triggered or cancelled) is not an error: its current state is returned."""
        ...

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        """Every open (untriggered) reduce-only stop order on `symbols`, whoever placed
        it; the caller tells its own by `exchange_id`."""
        ...

    async def fetch_stop(self, symbol: str, client_order_id: str) -> StopOrder | None:
        """The stop sent with `client_order_id` in whatever state it is (open, triggered
        with its fill, cancelled), or None when the venue never saw it."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...


class RequestObserver(Protocol):
    """Told about every request an adapter sends (for metrics); must not raise or block.

    `what` is a small fixed vocabulary (`balance`, `positions`, `order`, ...), `error`
    the failure's class name (None: it succeeded)."""

    def request(self, venue: str, what: str, seconds: float, error: str | None) -> None: ...
