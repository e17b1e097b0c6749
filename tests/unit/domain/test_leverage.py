"""The leverage math of DESIGN.md §1, checked against hand-computed tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from bot.domain.leverage import (
    bracket_for,
    cross_equity,
    isolated_equity,
    liquidation_distance,
    liquidation_price,
    maintenance_from_tiers,
    maintenance_margin,
    notional,
    round_down,
    round_up,
    scope_metrics,
    tier_brackets,
    unrealized_pnl,
)
from bot.domain.models import (
    AccountSnapshot,
    MaintenanceTier,
    MarginMode,
    MarketRules,
    Position,
    Side,
    WalletBalance,
)
from bot.domain.summary import account_metrics

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def tiers(rows: list[tuple[str, str]]) -> tuple[MaintenanceTier, ...]:
    return tuple(MaintenanceTier(D(floor), D(rate)) for floor, rate in rows)


# Binance USDⓈ-M leverage brackets, as recorded in ccxt's binance fixture (leverageBrackets).
BTC_TIERS = tiers([
    ("0", "0.004"), ("50000", "0.005"), ("250000", "0.01"), ("3000000", "0.025"),
    ("20000000", "0.05"), ("40000000", "0.1"), ("100000000", "0.125"),
    ("120000000", "0.15"), ("200000000", "0.25"), ("300000000", "0.5"),
])  # fmt: skip
ETH_TIERS = tiers([
    ("0", "0.005"), ("100000", "0.0065"), ("250000", "0.01"), ("2000000", "0.02"),
    ("15000000", "0.05"), ("30000000", "0.1"), ("60000000", "0.125"),
    ("80000000", "0.15"), ("100000000", "0.25"), ("150000000", "0.5"),
])  # fmt: skip


def position(
    side: Side = Side.LONG,
    contracts: str = "1",
    entry: str = "50000",
    mark: str | None = "50000",
    *,
    symbol: str = BTC,
    contract_size: str = "1",
    margin_mode: MarginMode = MarginMode.CROSS,
    isolated_margin: str = "0",
    maintenance: str | None = None,
    liquidation: str | None = None,
) -> Position:
    return Position(
        symbol=symbol,
        side=side,
        contracts=D(contracts),
        entry_price=D(entry),
        mark_price=None if mark is None else D(mark),
        margin_mode=margin_mode,
        contract_size=D(contract_size),
        isolated_margin=D(isolated_margin),
        maintenance_margin=None if maintenance is None else D(maintenance),
        liquidation_price=None if liquidation is None else D(liquidation),
    )


def rules(symbol: str = BTC, tier_table: tuple[MaintenanceTier, ...] = BTC_TIERS) -> MarketRules:
    return MarketRules(symbol=symbol, amount_step=D("0.001"), tiers=tier_table)


# -- notional and unrealized PnL ---------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "contracts", "contract_size", "mark", "expected"),
    [
        (Side.LONG, "1", "1", "50000", "50000"),
        (Side.SHORT, "1", "1", "50000", "50000"),
        (Side.LONG, "0.123", "1", "42000", "5166.000"),
        (Side.SHORT, "7", "0.01", "30000", "2100.00"),
        (Side.LONG, "10", "100", "0.5", "500.0"),
    ],
)
def test_notional_when_contracts_size_and_mark_then_abs_product(
    side: Side, contracts: str, contract_size: str, mark: str, expected: str
) -> None:
    p = position(side, contracts, mark=mark, contract_size=contract_size)
    assert notional(p) == D(expected)


def test_notional_when_mark_given_then_it_replaces_the_positions_mark() -> None:
    assert notional(position(contracts="2", mark="100"), D("150")) == D(300)


def test_notional_when_no_mark_price_then_value_error_names_symbol() -> None:
    with pytest.raises(ValueError, match="BTC/USDT:USDT: no mark price"):
        notional(position(mark=None))


@pytest.mark.parametrize(
    ("side", "contracts", "contract_size", "entry", "mark", "expected"),
    [
        (Side.LONG, "1", "1", "50000", "55000", "5000"),
        (Side.LONG, "1", "1", "50000", "42000", "-8000"),
        (Side.SHORT, "1", "1", "50000", "55000", "-5000"),
        (Side.SHORT, "1", "1", "50000", "42000", "8000"),
        (Side.LONG, "0.6", "1", "50000", "50000", "0"),
        (Side.SHORT, "3", "0.01", "30000", "29000", "30.00"),
        (Side.LONG, "0.5", "1", "2000", "2100", "50.0"),
    ],
)
def test_unrealized_pnl_when_mark_moves_then_sign_follows_side(
    side: Side, contracts: str, contract_size: str, entry: str, mark: str, expected: str
) -> None:
    p = position(side, contracts, entry, mark, contract_size=contract_size)
    assert unrealized_pnl(p) == D(expected)


def test_unrealized_pnl_when_no_mark_price_then_value_error() -> None:
    with pytest.raises(ValueError, match="no mark price"):
        unrealized_pnl(position(mark=None))


# -- maintenance tiers -------------------------------------------------------------------


def test_tier_brackets_when_binance_btc_table_then_cum_amounts_match_binance() -> None:
    cums = [b.cum for b in tier_brackets(BTC_TIERS)]
    assert cums == [
        D(0),
        D(50),
        D(1300),
        D(46300),
        D(546300),
        D(2546300),
        D(5046300),
        D(8046300),
        D(28046300),
        D(103046300),
    ]


def test_tier_brackets_when_binance_eth_table_then_cum_amounts_match_binance() -> None:
    cums = [b.cum for b in tier_brackets(ETH_TIERS)]
    assert cums == [
        D(0),
        D(150),
        D(1025),
        D(21025),
        D(471025),
        D(1971025),
        D(3471025),
        D(5471025),
        D(15471025),
        D(52971025),
    ]


def test_tier_brackets_when_rows_unsorted_then_sorted_by_floor() -> None:
    shuffled = (BTC_TIERS[2], BTC_TIERS[0], BTC_TIERS[1])
    brackets = tier_brackets(shuffled)
    assert [b.floor for b in brackets] == [D(0), D(50000), D(250000)]
    assert [b.cum for b in brackets] == [D(0), D(50), D(1300)]


def test_tier_brackets_when_no_rows_then_empty() -> None:
    assert tier_brackets(()) == ()


@pytest.mark.parametrize(
    ("value", "floor"),
    [
        ("0", "0"),
        ("49999.99", "0"),
        ("50000", "50000"),
        ("250000", "250000"),
        ("2999999", "250000"),
        ("500000000", "300000000"),
    ],
)
def test_bracket_for_when_notional_then_last_tier_whose_floor_is_not_above(
    value: str, floor: str
) -> None:
    assert bracket_for(tier_brackets(BTC_TIERS), D(value)).floor == D(floor)


def test_bracket_for_when_no_tiers_then_value_error() -> None:
    with pytest.raises(ValueError, match="no maintenance tiers"):
        bracket_for((), D(1))


@pytest.mark.parametrize(
    ("tier_table", "value", "expected"),
    [
        (BTC_TIERS, "0", "0"),
        (BTC_TIERS, "10000", "40.000"),
        (BTC_TIERS, "50000", "200.000"),  # same on both sides of a floor: cum keeps it continuous
        (BTC_TIERS, "49999", "199.996"),
        (BTC_TIERS, "100000", "450.000"),
        (BTC_TIERS, "1000000", "8700.00"),
        (BTC_TIERS, "5000000", "78700.000"),
        (ETH_TIERS, "20000", "100.000"),
        (ETH_TIERS, "200000", "1150.0000"),
        (ETH_TIERS, "1000000", "8975.00"),
    ],
)
def test_maintenance_from_tiers_when_notional_then_rate_times_notional_minus_cum(
    tier_table: tuple[MaintenanceTier, ...], value: str, expected: str
) -> None:
    assert maintenance_from_tiers(tier_table, D(value)) == D(expected)


def test_maintenance_from_tiers_when_crossing_every_floor_then_continuous() -> None:
    for tier in BTC_TIERS[1:]:
        below = tier_brackets(BTC_TIERS)[BTC_TIERS.index(tier) - 1]
        assert maintenance_from_tiers(BTC_TIERS, tier.floor) == tier.floor * below.rate - below.cum


def test_maintenance_margin_when_exchange_reports_it_then_reported_figure_wins() -> None:
    p = position(maintenance="123.45")
    assert maintenance_margin(p, rules()) == D("123.45")


def test_maintenance_margin_when_not_reported_then_computed_from_tiers() -> None:
    p = position(contracts="2", mark="50000")  # 100000 notional
    assert maintenance_margin(p, rules()) == D(450)


@pytest.mark.parametrize(
    "market", [None, MarketRules(symbol=BTC, amount_step=D("0.001"))], ids=["no-rules", "no-tiers"]
)
def test_maintenance_margin_when_neither_reported_nor_tiers_then_none(
    market: MarketRules | None,
) -> None:
    assert maintenance_margin(position(), market) is None


# -- equity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wallet", "positions", "expected"),
    [
        ("1000", (), "1000"),
        ("10000", (position(Side.LONG, "0.6", "50000", "42000"),), "5200.0"),
        ("10000", (position(Side.SHORT, "0.6", "50000", "42000"),), "14800.0"),
        (
            "5000",
            (
                position(Side.LONG, "1", "50000", "51000"),
                position(Side.SHORT, "10", "2000", "2100", symbol=ETH),
            ),
            "5000",
        ),
        ("1000", (position(Side.LONG, "1", "50000", "48000"),), "-1000"),
    ],
)
def test_cross_equity_when_positions_then_wallet_plus_unrealized(
    wallet: str, positions: tuple[Position, ...], expected: str
) -> None:
    assert cross_equity(D(wallet), positions) == D(expected)


@pytest.mark.parametrize(
    ("side", "margin", "mark", "expected"),
    [
        (Side.LONG, "8000", "50000", "8000"),
        (Side.LONG, "8000", "44000", "4400.0"),
        (Side.SHORT, "8000", "44000", "11600.0"),
        (Side.LONG, "1000", "40000", "-5000.0"),
    ],
)
def test_isolated_equity_when_mark_moves_then_margin_plus_unrealized(
    side: Side, margin: str, mark: str, expected: str
) -> None:
    p = position(
        side, "0.6", "50000", mark, margin_mode=MarginMode.ISOLATED, isolated_margin=margin
    )
    assert isolated_equity(p) == D(expected)


# -- leverage, margin ratio, liquidation distance ---------------------------------------


@pytest.mark.parametrize(
    ("equity", "contracts", "mark", "leverage", "ratio"),
    [
        ("10000", "0.6", "50000", "3", "0.012"),  # 30000 notional, MM 120
        (
            "5200",
            "0.6",
            "42000",
            "4.846153846153846153846153846",
            "0.01938461538461538461538461538",
        ),
        ("1000", "1", "100000", "100", "0.45"),  # MM 450
        ("500", "1", "100000", "200", "0.9"),
    ],
)
def test_scope_metrics_when_equity_positive_then_leverage_and_margin_ratio(
    equity: str, contracts: str, mark: str, leverage: str, ratio: str
) -> None:
    p = position(contracts=contracts, mark=mark)
    metrics = scope_metrics(D(equity), (p,), {BTC: rules()})
    assert metrics.notional == D(contracts) * D(mark)
    assert metrics.leverage == D(leverage)
    assert metrics.margin_ratio == D(ratio)
    assert not metrics.insolvent


def test_scope_metrics_when_two_markets_then_gross_notional_and_summed_maintenance() -> None:
    btc = position(contracts="1", mark="40000")  # MM 160
    eth = position(Side.SHORT, "10", "2000", "2000", symbol=ETH)  # 20000, MM 100
    metrics = scope_metrics(D(20000), (btc, eth), {BTC: rules(), ETH: rules(ETH, ETH_TIERS)})
    assert metrics.notional == D(60000)
    assert metrics.leverage == D(3)
    assert metrics.maintenance == D(260)
    assert metrics.margin_ratio == D("0.013")


@pytest.mark.parametrize("equity", ["0", "-0.01", "-5000"])
def test_scope_metrics_when_equity_not_positive_then_no_leverage_and_insolvent(
    equity: str,
) -> None:
    metrics = scope_metrics(D(equity), (position(),), {BTC: rules()})
    assert metrics.leverage is None
    assert metrics.margin_ratio is None
    assert metrics.insolvent
    assert metrics.notional == D(50000)
    assert metrics.maintenance == D(200)


def test_scope_metrics_when_no_positions_and_no_equity_then_not_insolvent() -> None:
    metrics = scope_metrics(D(0), (), {})
    assert metrics.notional == 0
    assert metrics.leverage is None
    assert not metrics.insolvent


def test_scope_metrics_when_maintenance_unknown_then_margin_ratio_none_but_leverage_known() -> None:
    metrics = scope_metrics(D(10000), (position(),), {})
    assert metrics.maintenance is None
    assert metrics.margin_ratio is None
    assert metrics.leverage == D(5)


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ((), None),
        ((position(mark="50000"),), None),
        ((position(mark="50000", liquidation="40000"),), D("0.2")),
        ((position(Side.SHORT, mark="50000", liquidation="55000"),), D("0.1")),
        (
            (
                position(mark="50000", liquidation="40000"),
                position(Side.SHORT, mark="2000", liquidation="2100", symbol=ETH),
            ),
            D("0.05"),
        ),
        ((position(mark=None, liquidation="40000"),), None),
    ],
)
def test_liquidation_distance_when_liquidation_prices_then_nearest_fraction_of_mark(
    positions: tuple[Position, ...], expected: D | None
) -> None:
    assert liquidation_distance(positions) == expected


def test_scope_metrics_when_liquidation_price_known_then_distance_reported() -> None:
    metrics = scope_metrics(D(10000), (position(liquidation="45000"),), {BTC: rules()})
    assert metrics.liquidation_distance == D("0.1")


@pytest.mark.parametrize(
    ("side", "contracts", "entry", "wallet"),
    [
        (Side.LONG, "0.6", "50000", "8000"),
        (Side.SHORT, "0.6", "50000", "8000"),
        (Side.LONG, "100", "50000", "1000000"),  # liquidates in a higher tier
        (Side.SHORT, "10", "2000", "1000"),
    ],
)
def test_liquidation_price_when_isolated_then_equity_equals_maintenance_there(
    side: Side, contracts: str, entry: str, wallet: str
) -> None:
    price = liquidation_price(side, D(contracts), D(entry), D(1), D(wallet), BTC_TIERS)
    assert price is not None
    equity = D(wallet) + side.sign * D(contracts) * (price - D(entry))
    maintenance = maintenance_from_tiers(BTC_TIERS, D(contracts) * price)
    assert abs(equity - maintenance) < D("1e-12")


def test_liquidation_price_when_long_has_more_margin_than_notional_then_none() -> None:
    assert liquidation_price(Side.LONG, D(1), D(50000), D(1), D(60000), BTC_TIERS) is None


def test_liquidation_price_when_no_contracts_then_none() -> None:
    assert liquidation_price(Side.LONG, D(0), D(50000), D(1), D(1000), BTC_TIERS) is None


# -- rounding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "step", "down", "up"),
    [
        ("0.1234", "0.001", "0.123", "0.124"),
        ("0.123", "0.001", "0.123", "0.123"),
        ("0.0009", "0.001", "0.000", "0.001"),
        ("0", "0.001", "0", "0"),
        ("17", "5", "15", "20"),
        ("3200.001", "0.01", "3200.00", "3200.01"),
        ("0.3", "0.1", "0.3", "0.3"),
        ("-0.0015", "0.001", "-0.002", "-0.001"),
        ("1.5", "0", "1.5", "1.5"),  # no step: unchanged
    ],
)
def test_round_when_step_then_down_not_above_and_up_not_below(
    amount: str, step: str, down: str, up: str
) -> None:
    assert round_down(D(amount), D(step)) == D(down)
    assert round_up(D(amount), D(step)) == D(up)
    if D(step) > 0:
        assert round_down(D(amount), D(step)) <= D(amount) <= round_up(D(amount), D(step))


# -- the whole account (status lines, journal, alerts) -----------------------------------


def account(*positions: Position, wallet: str = "1000") -> AccountSnapshot:
    return AccountSnapshot(
        account="a",
        settle="USDT",
        taken_at=datetime(2021, 5, 19, tzinfo=UTC),
        derivatives=WalletBalance(D(wallet), D(wallet)),
        source=None,
        positions=positions,
        markets={BTC: rules(), ETH: rules(ETH, ETH_TIERS)},
    )


def test_account_metrics_when_cross_and_isolated_then_both_count() -> None:
    # Cross long 0.1 BTC 50000 -> 52000 on W 1000: u = 200, E = 1200. Isolated ETH short
    # 1 @ 2000 -> 2100 with margin 400: E_p = 300. N = 5200 + 2100 = 7300, E = 1500.
    btc = position(contracts="0.1", mark="52000")
    eth = position(
        Side.SHORT, "1", "2000", "2100", symbol=ETH,
        margin_mode=MarginMode.ISOLATED, isolated_margin="400",
    )  # fmt: skip
    metrics = account_metrics(account(btc, eth))
    assert (metrics.equity, metrics.notional) == (D(1500), D(7300))
    assert metrics.leverage == D(7300) / D(1500)


def test_account_metrics_when_a_mark_price_is_missing_then_leverage_unknown_not_raised() -> None:
    # ETH has no mark: its notional and PnL are unknown, so leverage and MR are too.
    btc = position(contracts="0.1", mark="52000")
    eth = position(Side.SHORT, "1", "2000", None, symbol=ETH)
    metrics = account_metrics(account(btc, eth))
    assert (metrics.leverage, metrics.margin_ratio, metrics.liquidation_distance) == (
        None,
        None,
        None,
    )
    assert metrics.equity == D(1000)  # the wallet, without guessing any PnL
    assert metrics.notional == D(5200)  # only what can be priced
    assert not metrics.insolvent
