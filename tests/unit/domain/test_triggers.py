"""`stream_triggers` and `crossed` on hand-built snapshots, numbers worked by hand.

Every leg of a scope moves adversely by the same `d` (mark m -> m(1 - s*d)):
N(d) = sum n_i(1 - s_i*d), E(d) = E0 - N0*d, and leverage L is reached where
N(d) = L*E(d). Plus a property: at a returned mark the leverage is the band's edge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.leverage import notional, unrealized_pnl
from bot.domain.models import (
    AccountSnapshot,
    MarginMode,
    MarketRules,
    Position,
    Side,
    WalletBalance,
)
from bot.domain.targets import Policy, Target, Targets
from bot.domain.triggers import MarkTrigger, crossed, stream_triggers
from bot.exchange.sim.markets import binance_usdm_markets

NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
TEN = Targets(Target(D(10), D(8), D(12)))
HOLD = Policy()
RELEASE = Policy(release_excess=True)


def snapshot(
    *positions: Position,
    wallet: str = "5000",
    watched: frozenset[str] = frozenset(),
    markets: dict[str, MarketRules] | None = None,
) -> AccountSnapshot:
    return AccountSnapshot(
        account="acct",
        settle="USDT",
        taken_at=NOW,
        derivatives=WalletBalance(D(wallet), D(wallet)),
        source=None,
        positions=positions,
        markets=binance_usdm_markets() if markets is None else markets,
        watched=watched,
    )


def leg(
    symbol: str = BTC,
    side: Side = Side.LONG,
    contracts: str = "1",
    price: str = "50000",
    *,
    margin: str | None = None,
    maintenance: str | None = None,
) -> Position:
    return Position(
        symbol=symbol,
        side=side,
        contracts=D(contracts),
        entry_price=D(price),
        mark_price=D(price),
        margin_mode=MarginMode.CROSS if margin is None else MarginMode.ISOLATED,
        isolated_margin=D(0) if margin is None else D(margin),
        maintenance_margin=None if maintenance is None else D(maintenance),
    )


def close(a: D | None, b: str | D, places: int = 6) -> bool:
    return a is not None and abs(a - D(b)) < D(1).scaleb(-places)


def test_stream_triggers_when_long_at_10x_then_below_where_leverage_reaches_max() -> None:
    # 50000(1-d) = 12(5000 - 50000d) -> 550000d = 10000 -> d = 1/55 -> 49090.909.
    (trigger,) = stream_triggers(snapshot(leg()), TEN, HOLD).values()
    assert trigger.symbol == BTC
    assert close(trigger.below, "49090.909091")
    assert trigger.reason_below.startswith("leverage 12.00 > max 12 at mark 49090.90")
    # Leverage falling to the min does not matter unless the policy acts on it.
    assert trigger.above is None


def test_stream_triggers_when_release_excess_then_above_where_leverage_reaches_min() -> None:
    # 50000(1-d) = 8(5000 - 50000d) -> 350000d = -10000 -> d = -1/35 -> 51428.571.
    trigger = stream_triggers(snapshot(leg()), TEN, RELEASE)[BTC]
    assert close(trigger.above, "51428.571429")
    assert trigger.reason_above.startswith("leverage 8.00 < min 8 at mark 51428.57")


def test_stream_triggers_when_short_then_max_above_and_min_below() -> None:
    # Up: 50000(1+d) = 12(5000 - 50000d) -> d = 1/65 -> 50769.231.
    # Down: 50000(1+d) = 8(5000 - 50000d) -> d = -1/45 -> 48888.889.
    trigger = stream_triggers(snapshot(leg(side=Side.SHORT)), TEN, RELEASE)[BTC]
    assert close(trigger.above, "50769.230769")
    assert close(trigger.below, "48888.888889")


def test_stream_triggers_when_isolated_then_its_own_margin_counts() -> None:
    # 0.1 BTC with 500 isolated margin: the same 10x as above, whatever the wallet.
    account = snapshot(leg(contracts="0.1", margin="500"), wallet="100000")
    assert close(stream_triggers(account, TEN, HOLD)[BTC].below, "49090.909091")


def test_stream_triggers_when_two_legs_then_each_at_the_common_move() -> None:
    # BTC long 1 @ 50000 + ETH short 10 @ 2500, wallet 7500 (10x on 75000):
    # 75000 - 25000d = 12(7500 - 75000d) -> 875000d = 15000 -> d = 3/175.
    account = snapshot(leg(), leg(ETH, Side.SHORT, "10", "2500"), wallet="7500")
    triggers = stream_triggers(account, TEN, HOLD)
    assert close(triggers[BTC].below, D(50000) * 172 / 175)  # 49142.857
    assert close(triggers[ETH].above, D(2500) * 178 / 175)  # 2542.857
    assert triggers[BTC].above is None and triggers[ETH].below is None


def test_stream_triggers_when_already_above_max_then_trigger_is_the_mark() -> None:
    # Wallet 4000: 12.5x > 12 now. The first streamed mark runs the cycle.
    trigger = stream_triggers(snapshot(leg(), wallet="4000"), TEN, HOLD)[BTC]
    assert trigger.below == D(50000)
    assert crossed(trigger, D(50000)) == "leverage 12.50 > max 12 at mark 50000"


def test_stream_triggers_when_already_below_min_and_releasing_then_above_is_the_mark() -> None:
    trigger = stream_triggers(snapshot(leg(), wallet="10000"), TEN, RELEASE)[BTC]
    assert trigger.above == D(50000)
    assert crossed(trigger, D(50000)) == "leverage 5.00 < min 8 at mark 50000"


def test_stream_triggers_when_emergency_ratio_comes_first_then_it_is_the_trigger() -> None:
    # No tiers, the venue reports MM 2500 (5%): MR = 2500(1-d) / (5000 - 50000d).
    # 0.8: 2500 - 2500d = 4000 - 40000d -> d = 0.04 -> 48000, before leverage 20 at
    # 50000(1-d) = 20(5000 - 50000d) -> d = 1/19 -> 47368.42.
    markets = {BTC: MarketRules(symbol=BTC, amount_step=D("0.001"))}
    account = snapshot(leg(maintenance="2500"), markets=markets)
    targets = Targets(Target(D(10), D(8), D(20), emergency_margin_ratio=D("0.8")))
    trigger = stream_triggers(account, targets, HOLD)[BTC]
    assert close(trigger.below, "48000")
    assert trigger.reason_below.startswith("margin ratio 0.800 >= 0.8 at mark 48000")


def test_stream_triggers_when_cross_override_then_its_band_counts_for_its_symbol() -> None:
    # BTC long 1 @ 50000 + ETH long 10 @ 2500, wallet 8000 (9.375x). BTC's override
    # band 5-7 on n_BTC / E (6.25 now): 50000(1-d) = 7(8000 - 75000d) -> d = 6000/475000
    # -> 49368.421, nearer than the account's 12x at d = 21000/825000 (48727.27).
    account = snapshot(leg(), leg(ETH, Side.LONG, "10", "2500"), wallet="8000")
    targets = Targets(TEN.account, {BTC: Target(D(6), D(5), D(7))})
    triggers = stream_triggers(account, targets, HOLD)
    assert close(triggers[BTC].below, D(50000) * (1 - D(6000) / 475000))
    assert triggers[BTC].reason_below.startswith("leverage 7.00 > max 7")
    assert close(triggers[ETH].below, D(2500) * (1 - D(21000) / 825000))


def test_stream_triggers_when_leg_unwatched_or_unpriced_then_no_trigger_for_it() -> None:
    isolated = leg(contracts="0.1", margin="500")
    assert stream_triggers(snapshot(isolated, watched=frozenset({ETH})), TEN, HOLD) == {}
    unpriced = Position(BTC, Side.LONG, D(1), D(50000), None)
    assert stream_triggers(snapshot(unpriced), TEN, HOLD) == {}


def test_crossed_when_mark_between_triggers_then_none() -> None:
    trigger = MarkTrigger(BTC, D(49000), D(51000), "down", "up")
    assert crossed(trigger, D(50000)) is None
    assert crossed(trigger, D(49000)) == "down"
    assert crossed(trigger, D(52000)) == "up"
    assert crossed(MarkTrigger(BTC, None, None), D(1)) is None


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    side=st.sampled_from(Side),
    isolated=st.booleans(),
    leverage=st.decimals(min_value="8.1", max_value="11.9", places=2),
    entry_move=st.decimals(min_value="-0.05", max_value="0.05", places=3),
    contracts=st.decimals(min_value="0.01", max_value="20", places=3),
)
def test_stream_triggers_when_in_band_then_the_marks_are_the_band_edges(
    side: Side, isolated: bool, leverage: D, entry_move: D, contracts: D
) -> None:
    mark = D(30000)
    entry = mark * (1 + entry_move)
    n = contracts * mark
    base = Position(BTC, side, contracts, entry, mark)
    equity = n / leverage
    # Equity = collateral + uPnL at the mark: pick the collateral that gives `leverage`.
    collateral = equity - unrealized_pnl(base)
    if isolated:
        position = Position(
            BTC, side, contracts, entry, mark, MarginMode.ISOLATED, isolated_margin=collateral
        )
        account = snapshot(position, wallet="0")
    else:
        position = base
        account = snapshot(position, wallet=str(collateral))
    trigger = stream_triggers(account, TEN, RELEASE)[BTC]
    for price in (trigger.below, trigger.above):
        assert price is not None
        moved = Position(BTC, side, contracts, entry, price)
        at = notional(moved) / (collateral + unrealized_pnl(moved))
        edge = D(12) if (price < mark) == (side is Side.LONG) else D(8)
        assert abs(at - edge) / edge < D("1e-9")
