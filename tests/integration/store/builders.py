"""Domain values and a settable clock for the journal tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.domain.actions import Order, Reason, Rule, Transfer
from bot.domain.models import (
    AccountSnapshot,
    MarginMode,
    Position,
    Side,
    WalletBalance,
)

T0 = datetime(2024, 5, 19, 12, 0, tzinfo=UTC)


class FakeClock:
    """A settable clock for the journal's own timestamps."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def reason(scope: str = "cross", rule: Rule = Rule.DELEVER) -> Reason:
    return Reason(rule, scope, Decimal("7.25"), Decimal("5.00"), "band 4-6")


def transfer_in(amount: str = "100", scope: str = "cross") -> Transfer:
    return Transfer(
        currency="USDT", amount=Decimal(amount), into_derivatives=True, reason=reason(scope)
    )


def transfer_out(amount: str = "100") -> Transfer:
    return Transfer(
        currency="USDT",
        amount=Decimal(amount),
        into_derivatives=False,
        reason=reason(rule=Rule.RELEVER),
    )


def reduce_order(scope: str = "cross", symbol: str = "BTC/USDT:USDT") -> Order:
    return Order(
        symbol=symbol,
        position_side=Side.LONG,
        amount=Decimal("0.012"),
        reduce_only=True,
        expected_price=Decimal("61234.5"),
        notional=Decimal("734.814"),
        reason=reason(scope),
    )


def snapshot(
    account: str = "main", taken_at: datetime = T0, wallet: str = "1000.123456789"
) -> AccountSnapshot:
    return AccountSnapshot(
        account=account,
        settle="USDT",
        taken_at=taken_at,
        derivatives=WalletBalance(Decimal(wallet), Decimal("400.5")),
        source=WalletBalance(Decimal("5000"), Decimal("4999.99")),
        positions=(
            Position(
                symbol="BTC/USDT:USDT",
                side=Side.LONG,
                contracts=Decimal("0.123"),
                entry_price=Decimal("60000.1"),
                mark_price=Decimal("61234.50"),
                maintenance_margin=Decimal("30.1234"),
                liquidation_price=Decimal("52000.00000001"),
            ),
            Position(
                symbol="ETH/USDT:USDT",
                side=Side.SHORT,
                contracts=Decimal("1.5"),
                entry_price=Decimal("3000"),
                mark_price=None,
                margin_mode=MarginMode.ISOLATED,
                isolated_margin=Decimal("450.75"),
                hedged=True,
            ),
        ),
    )
