"""Market rules the simulated exchange lists: Binance USDⓈ-M BTC and ETH perpetuals.

The maintenance tiers are Binance's real leverage-bracket tables (notional floor,
maintenance margin rate), as ccxt's own fixtures record them.
"""

from __future__ import annotations

from decimal import Decimal

from bot.domain.models import MaintenanceTier, MarketRules


def _tiers(rows: list[tuple[str, str]]) -> tuple[MaintenanceTier, ...]:
    return tuple(MaintenanceTier(Decimal(floor), Decimal(rate)) for floor, rate in rows)


BTC_TIERS = _tiers([
    ("0", "0.004"), ("50000", "0.005"), ("250000", "0.01"), ("3000000", "0.025"),
    ("20000000", "0.05"), ("40000000", "0.1"), ("100000000", "0.125"),
    ("120000000", "0.15"), ("200000000", "0.25"), ("300000000", "0.5"),
])  # fmt: skip

ETH_TIERS = _tiers([
    ("0", "0.005"), ("100000", "0.0065"), ("250000", "0.01"), ("2000000", "0.02"),
    ("15000000", "0.05"), ("30000000", "0.1"), ("60000000", "0.125"),
    ("80000000", "0.15"), ("100000000", "0.25"), ("150000000", "0.5"),
])  # fmt: skip

BINANCE_TAKER_FEE = Decimal("0.0005")


def binance_usdm_markets(taker_fee: Decimal = BINANCE_TAKER_FEE) -> dict[str, MarketRules]:
    """BTC/USDT:USDT and ETH/USDT:USDT with Binance's precision, minimums and tiers."""
    return {
        "BTC/USDT:USDT": MarketRules(
            symbol="BTC/USDT:USDT",
            amount_step=Decimal("0.001"),
            min_amount=Decimal("0.001"),
            min_cost=Decimal("100"),
            taker_fee=taker_fee,
            tiers=BTC_TIERS,
        ),
        "ETH/USDT:USDT": MarketRules(
            symbol="ETH/USDT:USDT",
            amount_step=Decimal("0.001"),
            min_amount=Decimal("0.001"),
            min_cost=Decimal("20"),
            taker_fee=taker_fee,
            tiers=ETH_TIERS,
        ),
    }
