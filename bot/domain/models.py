"""What levbot knows about an account at one moment: balances, positions, market rules.

Everything here is a frozen value with `Decimal` money. Adapters build these at the
border; the math and the planner only read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)
ONE = Decimal(1)


class Side(StrEnum):
    """Direction of a position."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1

    @property
    def closing_order_side(self) -> OrderSide:
        return OrderSide.SELL if self is Side.LONG else OrderSide.BUY

    @property
    def opening_order_side(self) -> OrderSide:
        return OrderSide.BUY if self is Side.LONG else OrderSide.SELL


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class MarginMode(StrEnum):
    CROSS = "cross"
    ISOLATED = "isolated"


@dataclass(frozen=True, slots=True)
class MaintenanceTier:
    """One row of an exchange's leverage-bracket table.

    `floor` is the notional where the tier starts, `rate` its maintenance margin rate.
    """

    floor: Decimal
    rate: Decimal


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Trading rules of one derivatives market (a ccxt unified symbol)."""

    symbol: str
    contract_size: Decimal = ONE
    # Amount step in contracts (e.g. Decimal("0.001")); None means the step is unknown.
    amount_step: Decimal | None = None
    min_amount: Decimal = ZERO
    min_cost: Decimal = ZERO
    taker_fee: Decimal = Decimal("0.0005")
    tiers: tuple[MaintenanceTier, ...] = ()
    linear: bool = True


@dataclass(frozen=True, slots=True)
class Position:
    """An open position. `contracts` is always positive; `side` carries the direction."""

    symbol: str
    side: Side
    contracts: Decimal
    entry_price: Decimal
    mark_price: Decimal | None
    margin_mode: MarginMode = MarginMode.CROSS
    contract_size: Decimal = ONE
    # Isolated margin held by the position (isolated mode only).
    isolated_margin: Decimal = ZERO
    # What the exchange reports, when it reports it; otherwise computed from tiers.
    maintenance_margin: Decimal | None = None
    liquidation_price: Decimal | None = None
    # True when the account runs in hedge mode (long and short legs on one symbol).
    hedged: bool = False

    @property
    def key(self) -> str:
        """Identity of the position inside an account (symbol plus leg in hedge mode)."""
        return f"{self.symbol}:{self.side.value}" if self.hedged else self.symbol

    @property
    def priced(self) -> bool:
        """Whether the venue gave a usable mark price (needed for notional and PnL)."""
        return self.mark_price is not None and self.mark_price > ZERO


@dataclass(frozen=True, slots=True)
class WalletBalance:
    """One wallet in the settle currency. `free` is what can be moved out right now."""

    total: Decimal
    free: Decimal


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Balances, positions and market rules of one account, taken at `taken_at`.

    `derivatives` is the wallet balance W (no unrealized PnL). Where collateral is
    pooled across assets, the adapter reports the account-level margin balance in the
    settle currency as `pooled_equity`; it then replaces `W + sum(u_p)` as equity.

    `source` None means no collateral can come from a source wallet: none exists
    (`source_unknown` False), or its read failed or did not verify (`source_unknown`
    True: its balance is unknown, never zero). `source_read` False means the source
    wallet was not asked for at all (a steady cycle saves the request): `source` is None
    then but says nothing, and no de-levering is planned until it is read.
    `positions` holds every leg sharing the collateral; `watched` names the symbols the
    bot may act on (empty: all of them).
    """

    account: str
    settle: str
    taken_at: datetime
    derivatives: WalletBalance
    source: WalletBalance | None
    positions: tuple[Position, ...]
    markets: dict[str, MarketRules] = field(default_factory=dict)
    pooled_equity: Decimal | None = None
    # Smallest wallet transfer the exchange accepts, in the settle currency.
    min_transfer: Decimal = ZERO
    # Decimal places a transfer amount may carry.
    transfer_places: int = 2
    # False where the exchange has no isolated add/reduce margin call (none of the four today).
    can_adjust_margin: bool = True
    source_unknown: bool = False
    source_read: bool = True
    watched: frozenset[str] = frozenset()

    def with_source(self, source: WalletBalance | None, unknown: bool = False) -> AccountSnapshot:
        """This snapshot completed with a read of the source wallet (`source_read` True):
        its balance, or None with `unknown` True when the read failed."""
        return replace(self, source=source, source_unknown=unknown, source_read=True)

    def is_watched(self, position: Position) -> bool:
        """Whether the bot may act on this leg (it counts in the metrics either way)."""
        return not self.watched or position.symbol in self.watched

    def cross_positions(self) -> tuple[Position, ...]:
        return tuple(p for p in self.positions if p.margin_mode is MarginMode.CROSS)

    def isolated_positions(self) -> tuple[Position, ...]:
        return tuple(p for p in self.positions if p.margin_mode is MarginMode.ISOLATED)
