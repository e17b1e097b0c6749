"""Backstops: reduce-only stop-market orders on the mark price, resting at the venue.

DESIGN.md §11. A `Stop` is what levbot wants resting (planned by `bot.domain.backstop`);
a `StopOrder` is what the venue holds (or held). They protect while the daemon, its
host or its network is dead, so they are placed ahead of need and re-priced by the cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from bot.domain.models import ZERO, OrderSide, Side


class StopStatus(StrEnum):
    """A stop order's state at the venue, as the adapters map each venue's own words."""

    # Resting: not triggered yet.
    OPEN = "open"
    # Triggered: the venue sent its market order (`filled`/`average_price` say how much).
    TRIGGERED = "triggered"
    CANCELED = "canceled"
    # Refused or expired without triggering.
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class BackstopSettings:
    """How the backstop ladder is built (config `[accounts.backstop]`).

    The danger point is `margin_ratio` (between the emergency ratio and 1), or, when
    `liquidation_buffer` is set, the mark `liquidation_buffer` (a fraction of the price)
    short of liquidation. Each of `levels` stops brings its scope back to target at its
    trigger, or cuts `fraction` of the position when set. A resting stop is re-priced
    when its wanted trigger moves more than `reprice_tolerance` (a fraction of the price).
    The last level closes what the levels above leave (`close_last`): a dead daemon
    cannot place another, and the remainder would otherwise meet liquidation unguarded.
    The venue's stop listing is read when a leg moved, else every `verify_seconds`.
    """

    enabled: bool = True
    margin_ratio: Decimal = Decimal("0.85")
    # 1% of the price short of liquidation by default: at 10x the margin-ratio point is
    # under 0.1% from liquidation, less than a crash's stop-market slippage or one gap.
    liquidation_buffer: Decimal | None = Decimal("0.01")
    levels: int = 3
    fraction: Decimal | None = None
    reprice_tolerance: Decimal = Decimal("0.005")
    # The last level closes what is left of the scope's legs (a dead daemon cannot
    # place another): False leaves it sized like the others.
    close_last: bool = True
    # Seconds between reads of the venue's stop listing while no leg moved (a stop
    # cancelled by hand shows no other way; a triggered one shrinks its leg).
    verify_seconds: int = 600


BACKSTOP_OFF = BackstopSettings(enabled=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """A stop levbot wants resting: reduce `amount` contracts of one leg when the mark
    crosses `trigger_price` (below it for a long, above it for a short)."""

    scope: str
    level: int
    symbol: str
    position_side: Side
    amount: Decimal
    trigger_price: Decimal
    hedged: bool = False

    @property
    def order_side(self) -> OrderSide:
        return self.position_side.closing_order_side


@dataclass(frozen=True, slots=True, kw_only=True)
class StopOrder:
    """A stop order as the venue reports it. `exchange_id` is its identity at the venue;
    `client_order_id` is ours where the venue echoes it (else the venue's own form)."""

    client_order_id: str
    exchange_id: str
    symbol: str
    side: OrderSide
    amount: Decimal
    trigger_price: Decimal
    status: StopStatus
    position_side: Side | None = None
    filled: Decimal = ZERO
    average_price: Decimal | None = None
    fee: Decimal = ZERO

    @property
    def resting(self) -> bool:
        return self.status is StopStatus.OPEN
