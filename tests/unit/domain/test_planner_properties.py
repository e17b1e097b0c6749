"""Properties of `plan_rebalance`, checked by running its plans on the simulated exchange.

(a) after the plan is executed, leverage is back inside the band whenever the funds
    and the market's limits allow it;
(b) no order is larger than its position, and orders are reduce-only unless
    `allow_increase` (nothing flips, nothing grows unless allowed);
(c) order amounts are multiples of the market's step and at least its minimums, except
    the close of a whole position smaller than the minimum (emergency or de-lever);
(d) a snapshot inside the band gives an empty plan.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from bot.app.execute import execute_plan
from bot.domain.actions import Order, Plan, RecentActivity, Rule
from bot.domain.leverage import (
    cross_equity,
    isolated_equity,
    notional,
    round_down,
    round_up,
    scope_metrics,
)
from bot.domain.models import AccountSnapshot, MarginMode, MarketRules, Position, Side
from bot.domain.outcomes import ActionOutcome
from bot.domain.planner import plan_rebalance
from bot.domain.targets import Policy, Prefer, Target, Targets
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets

NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
MARKETS = binance_usdm_markets()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- building accounts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    symbol: str
    side: Side
    weight: D  # share of the scope's notional
    move: D  # entry = mark * (1 + move): the leg's unrealized PnL per notional is -sign*move


@dataclass(slots=True)
class Book:
    exchange: SimulatedExchange
    targets: Targets
    policy: Policy
    source_start: D
    activity: RecentActivity

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints falsifying examples through this

    def __repr__(self) -> str:
        ex = self.exchange
        legs = ", ".join(
            f"{p.symbol} {p.side.value} {p.contracts} @ {p.entry_price} margin {p.isolated_margin}"
            for p in ex.positions()
        )
        marks = {p.symbol: ex.mark(p.symbol) for p in ex.positions()}
        return (
            f"Book(wallet={ex.wallet}, source={ex.source}, slippage={ex.slippage}, "
            f"hedge={ex.hedge_mode}, marks={marks}, legs=[{legs}], "
            f"targets={self.targets.account}, policy={self.policy}, activity={self.activity})"
        )


marks = st.fixed_dictionaries(
    {
        BTC: st.integers(20_000, 80_000).map(D),
        ETH: st.integers(1_000, 4_000).map(D),
    }
)
moves = st.decimals(min_value=D("-0.03"), max_value=D("0.03"), places=3)
slippages = st.sampled_from([D(0), D("0.0005")])


@st.composite
def bands(draw: st.DrawFn) -> Target:
    target = draw(st.decimals(min_value=2, max_value=10, places=1))
    below = draw(st.decimals(min_value=D("0.3"), max_value=D("1.5"), places=2))
    above = draw(st.decimals(min_value=D("0.3"), max_value=D("2"), places=2))
    return Target(target, target - below, target + above)


@st.composite
def cross_legs(draw: st.DrawFn) -> tuple[list[Leg], bool]:
    """One or two symbols in one-way mode, or a long and a short leg in hedge mode."""
    shape = draw(st.sampled_from(["one", "two", "hedge"]))
    if shape == "hedge":
        weight = draw(st.decimals(min_value=D("0.2"), max_value=D("0.8"), places=2))
        return [
            Leg(BTC, Side.LONG, weight, draw(moves)),
            Leg(BTC, Side.SHORT, 1 - weight, draw(moves)),
        ], True
    sides = st.sampled_from(list(Side))
    if shape == "one":
        return [Leg(draw(st.sampled_from([BTC, ETH])), draw(sides), D(1), draw(moves))], False
    weight = draw(st.decimals(min_value=D("0.2"), max_value=D("0.8"), places=2))
    return [
        Leg(BTC, draw(sides), weight, draw(moves)),
        Leg(ETH, draw(sides), 1 - weight, draw(moves)),
    ], False


def sim(wallet: D, source: D, slippage: D, hedge: bool = False) -> SimulatedExchange:
    return SimulatedExchange(
        markets=MARKETS,
        clock=lambda: NOW,
        derivatives=wallet,
        source=source,
        slippage=slippage,
        hedge_mode=hedge,
    )


def open_leg(
    exchange: SimulatedExchange, leg: Leg, contracts: D, mark: D, margin: D | None = None
) -> None:
    assume(contracts >= MARKETS[leg.symbol].min_amount)
    exchange.set_mark(leg.symbol, mark * (1 + leg.move))
    if margin is None:
        exchange.open_position(leg.symbol, leg.side, contracts)
    else:
        exchange.open_position(
            leg.symbol,
            leg.side,
            contracts,
            margin_mode=MarginMode.ISOLATED,
            isolated_margin=margin,
        )


def open_cross(
    exchange: SimulatedExchange, legs: list[Leg], marks: dict[str, D], wallet: D, leverage: D
) -> None:
    """Open legs whose gross notional is `leverage` times the equity at `marks`."""
    # u_i = -sign_i * move_i * n_i, so E = W + N * k and N = L * W / (1 - L * k).
    k = sum((-leg.side.sign * leg.move * leg.weight for leg in legs), D(0))
    assume(1 - leverage * k > D("0.3"))
    gross = leverage * wallet / (1 - leverage * k)
    for leg in legs:
        contracts = round_down(leg.weight * gross / marks[leg.symbol], D("0.001"))
        open_leg(exchange, leg, contracts, marks[leg.symbol])
    for symbol in {leg.symbol for leg in legs}:
        exchange.set_mark(symbol, marks[symbol])


def scope_leverages(snapshot: AccountSnapshot) -> dict[str, D | None]:
    """Leverage of the cross account and of every isolated position."""
    found: dict[str, D | None] = {}
    cross = snapshot.cross_positions()
    if cross:
        equity = cross_equity(snapshot.derivatives.total, cross)
        found["cross"] = scope_metrics(equity, cross, snapshot.markets).leverage
    for p in snapshot.isolated_positions():
        found[p.key] = scope_metrics(isolated_equity(p), (p,), snapshot.markets).leverage
    return found


def execute(book: Book) -> tuple[Plan, list[ActionOutcome]]:
    snapshot = book.exchange.snapshot()
    plan = plan_rebalance(snapshot, book.targets, book.policy, NOW, book.activity)
    ids = itertools.count(1)

    def client_id() -> str:
        return f"prop-{next(ids)}"

    outcomes = asyncio.run(execute_plan(book.exchange, plan, client_id))
    return plan, outcomes


def kinds(plan: Plan) -> str:
    return "+".join(sorted({a.kind.value for a in plan.actions})) or "empty"


def cost(policy: Policy) -> D:
    return MARKETS[BTC].taker_fee + policy.slippage_allowance  # both markets charge the same


def orders_restore(positions: tuple[Position, ...], equity: D, target: Target, c: D) -> bool:
    """Independent check that reduce orders alone can bring this scope back inside the band:
    every leg's share of the cut clears the market minimums, and rounding every leg down by
    one step leaves at most half of the room between the target and the band's top."""
    gross = sum((notional(p) for p in positions), D(0))
    wanted = (gross - target.leverage * equity) / (1 - target.leverage * c)
    if wanted <= 0:
        return True
    if wanted >= gross * D("0.9"):
        return False
    rounding = D(0)
    for p in positions:
        rules = MARKETS[p.symbol]
        assert rules.amount_step is not None and p.mark_price is not None
        step_notional = rules.amount_step * p.mark_price
        minimum = max(rules.min_cost, rules.min_amount * p.mark_price)
        if wanted * notional(p) / gross < minimum * D("1.01") + step_notional:
            return False
        rounding += step_notional
    return rounding < (target.max - target.leverage) * (equity - c * wanted) / 2


def transfer_budget(book: Book) -> D:
    available = book.source_start - book.policy.source_floor
    if book.policy.daily_transfer_cap is not None:
        available = min(available, book.policy.daily_transfer_cap - book.activity.transferred_today)
    return max(D(0), round_down(available, D("0.01")))


# -- (a) back inside the band whenever funds and limits allow ----------------------------


@st.composite
def cross_books(draw: st.DrawFn) -> Book:
    target = draw(bands())
    legs, hedge = draw(cross_legs())
    wallet = D(draw(st.integers(1_000, 100_000)))
    slippage = draw(slippages)
    source = D(draw(st.sampled_from([0, 0, 1, 2, 5, 20]))) * wallet / 4
    exchange = sim(wallet, source, slippage, hedge)
    leverage = target.max * draw(st.decimals(min_value=D("1.05"), max_value=D("2.5"), places=2))
    open_cross(exchange, legs, draw(marks), wallet, leverage)
    floor = draw(st.sampled_from([D(0), source / 2]))
    cap = draw(st.sampled_from([None, wallet, wallet * 10]))
    policy = Policy(
        prefer=draw(st.sampled_from(list(Prefer))),
        slippage_allowance=slippage,
        source_floor=floor,
        daily_transfer_cap=cap,
    )
    activity = RecentActivity(transferred_today=D(0) if cap is None else cap / 4)
    return Book(exchange, Targets(target), policy, source, activity)


@FAST
@given(cross_books())
def test_plan_when_cross_out_of_band_and_funds_or_limits_allow_then_back_in_band(
    book: Book,
) -> None:
    before = book.exchange.snapshot()
    target = book.targets.account
    equity = cross_equity(before.derivatives.total, before.positions)
    metrics = scope_metrics(equity, before.positions, before.markets)
    assume(metrics.leverage is not None and metrics.leverage > target.max)
    need = round_up(metrics.notional / target.leverage - equity, D("0.01"))
    budget = transfer_budget(book)
    collateral_first = book.policy.prefer is Prefer.COLLATERAL
    after_collateral = equity + (min(need, budget) if collateral_first else D(0))
    allowed = budget >= need or orders_restore(
        before.positions, after_collateral, target, cost(book.policy)
    )

    event("funds or limits allow" if allowed else "neither funds nor limits allow")

    plan, outcomes = execute(book)
    event(f"plan: {kinds(plan)}")

    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes]
    assert book.exchange.source >= min(book.policy.source_floor, book.source_start)
    moved = book.source_start - book.exchange.source
    if book.policy.daily_transfer_cap is not None:
        assert moved + book.activity.transferred_today <= book.policy.daily_transfer_cap
    leverage = scope_leverages(book.exchange.snapshot()).get("cross", D(0))
    assert leverage is not None
    assert leverage < metrics.leverage  # never worse
    if allowed:
        assert target.min <= leverage <= target.max, (plan.actions, plan.decisions)


@st.composite
def isolated_books(draw: st.DrawFn) -> Book:
    target = draw(bands())
    symbols = draw(st.sampled_from([[BTC], [ETH], [BTC, ETH]]))
    slippage = draw(slippages)
    funded = draw(st.booleans())
    prices = draw(marks)
    margins = [D(draw(st.integers(500, 20_000))) for _ in symbols]
    spare = D(draw(st.integers(0, 20_000))) if funded else D(0)
    source = D(draw(st.integers(0, 200_000))) if funded else D(0)
    exchange = sim(sum(margins, D(0)) + spare, source, slippage)
    for symbol, margin in zip(symbols, margins, strict=True):
        leg = Leg(symbol, draw(st.sampled_from(list(Side))), D(1), draw(moves))
        leverage = target.max * draw(st.decimals(min_value=D("1.05"), max_value=D("2.5"), places=2))
        k = -leg.side.sign * leg.move
        assume(1 - leverage * k > D("0.3"))
        contracts = round_down(leverage * margin / (1 - leverage * k) / prices[symbol], D("0.001"))
        open_leg(exchange, leg, contracts, prices[symbol], margin)
        exchange.set_mark(symbol, prices[symbol])
    policy = Policy(prefer=draw(st.sampled_from(list(Prefer))), slippage_allowance=slippage)
    return Book(exchange, Targets(target), policy, source, RecentActivity())


@FAST
@given(isolated_books())
def test_plan_when_isolated_out_of_band_and_funds_or_limits_allow_then_back_in_band(
    book: Book,
) -> None:
    before = book.exchange.snapshot()
    target = book.targets.account
    needs: dict[str, D] = {}
    for p in before.isolated_positions():
        metrics = scope_metrics(isolated_equity(p), (p,), before.markets)
        assume(metrics.leverage is not None and metrics.leverage > target.max)
        needs[p.key] = round_up(metrics.notional / target.leverage - metrics.equity, D("0.01"))
    funds = before.derivatives.free + transfer_budget(book)
    funded = funds >= sum(needs.values(), D(0))
    unfunded = funds == 0
    restorable = {
        p.key: orders_restore((p,), isolated_equity(p), target, cost(book.policy))
        for p in before.isolated_positions()
    }

    event("funded" if funded else "orders only" if unfunded else "partly funded")

    plan, outcomes = execute(book)
    event(f"plan: {kinds(plan)}")

    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes]
    after = scope_leverages(book.exchange.snapshot())
    for key in needs:
        leverage = after.get(key, D(0))
        assert leverage is not None
        if funded or (unfunded and restorable[key]):
            event("a leg checked for the band")
            assert target.min <= leverage <= target.max, (key, plan.actions, plan.decisions)


@st.composite
def mixed_books(draw: st.DrawFn) -> Book:
    """A cross book beside an isolated leg, both above the band, the source well funded."""
    target = draw(bands())
    prices = draw(marks)
    slippage = draw(slippages)
    cross_wallet = D(draw(st.integers(1_000, 50_000)))
    margin = D(draw(st.integers(500, 20_000)))
    exchange = sim(cross_wallet + margin, D(10_000_000), slippage)
    isolated = Leg(ETH, draw(st.sampled_from(list(Side))), D(1), D(0))
    leverage = target.max * draw(st.decimals(min_value=D("1.05"), max_value=D("2.5"), places=2))
    contracts = round_down(leverage * margin / prices[ETH], D("0.001"))
    open_leg(exchange, isolated, contracts, prices[ETH], margin)
    leg = Leg(BTC, draw(st.sampled_from(list(Side))), D(1), draw(moves))
    leverage = target.max * draw(st.decimals(min_value=D("0.5"), max_value=D("2.5"), places=2))
    open_cross(exchange, [leg], prices, cross_wallet, leverage)
    policy = Policy(slippage_allowance=slippage)
    return Book(exchange, Targets(target), policy, exchange.source, RecentActivity())


@FAST
@given(mixed_books())
def test_plan_when_cross_and_isolated_share_a_wallet_then_both_end_in_band(book: Book) -> None:
    target = book.targets.account
    before = scope_leverages(book.exchange.snapshot())
    assume(all(leverage is not None for leverage in before.values()))
    # Margin for the isolated leg must not come out of the cross equity it depends on.
    cross_was_in_band = target.min <= (before["cross"] or 0) <= target.max
    event("cross in band before" if cross_was_in_band else "cross out of band before")

    plan, outcomes = execute(book)

    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes]
    for scope, leverage in scope_leverages(book.exchange.snapshot()).items():
        assert leverage is not None
        if scope == "cross" and not cross_was_in_band and before["cross"] < target.min:
            continue  # below the band stays there: release_excess is off
        assert target.min <= leverage <= target.max, (scope, plan.actions, plan.decisions)


# -- (b) and (c): orders never outgrow their position and respect the market -------------


@st.composite
def any_books(draw: st.DrawFn) -> Book:
    """Accounts anywhere: below, inside and far above the band, insolvent, in emergency."""
    target = draw(bands())
    emergency_ratio = draw(st.sampled_from([D("0.8"), D("0.05"), D("0.01")]))
    target = Target(target.leverage, target.min, target.max, emergency_ratio)
    slippage = draw(slippages)
    prices = draw(marks)
    if draw(st.booleans()):
        legs, hedge = draw(cross_legs())
        wallet = D(draw(st.integers(10, 100_000)))
        source = D(draw(st.integers(0, 50_000)))
        exchange = sim(wallet, source, slippage, hedge)
        leverage = target.min * draw(st.decimals(min_value=D("0.2"), max_value=D(20), places=2))
        open_cross(exchange, legs, prices, wallet, leverage)
        if draw(st.booleans()):  # a crash after opening: equity may go negative
            for symbol in {leg.symbol for leg in legs}:
                exchange.set_mark(symbol, prices[symbol] * draw(moves.map(lambda m: 1 + 3 * m)))
    else:
        source = D(draw(st.integers(0, 50_000)))
        margin = D(draw(st.integers(10, 20_000)))
        exchange = sim(margin + D(draw(st.integers(0, 5_000))), source, slippage)
        leg = Leg(draw(st.sampled_from([BTC, ETH])), draw(st.sampled_from(list(Side))), D(1), D(0))
        leverage = target.min * draw(st.decimals(min_value=D("0.2"), max_value=D(20), places=2))
        contracts = round_down(leverage * margin / prices[leg.symbol], D("0.001"))
        open_leg(exchange, leg, contracts, prices[leg.symbol], margin)
    policy = Policy(
        prefer=draw(st.sampled_from(list(Prefer))),
        release_excess=draw(st.booleans()),
        allow_increase=draw(st.booleans()),
        max_order_notional=draw(st.sampled_from([None, D(500), D(20_000)])),
        slippage_allowance=slippage,
    )
    last_order = draw(st.sampled_from([None, timedelta(0), timedelta(hours=1)]))
    activity = RecentActivity(last_order_at={} if last_order is None else {"sim": NOW - last_order})
    return Book(exchange, Targets(target), policy, source, activity)


def check_order(order: Order, positions: dict[tuple[str, Side], Position], policy: Policy) -> None:
    position = positions[(order.symbol, order.position_side)]
    rules: MarketRules = MARKETS[order.symbol]
    assert rules.amount_step is not None and position.mark_price is not None
    assert order.amount > 0
    assert round_down(order.amount, rules.amount_step) == order.amount, "off the amount step"
    if order.reduce_only:
        assert order.amount <= position.contracts, "larger than its position"
    else:
        assert policy.allow_increase, "adds exposure without allow_increase"
    # A position smaller than the market minimum can only be closed whole, and only to
    # de-lever (or in an emergency), never to add exposure.
    closes_whole = order.reduce_only and order.amount == position.contracts
    if closes_whole:
        assert order.reason.rule in (Rule.EMERGENCY, Rule.DELEVER)
    else:
        assert order.amount >= rules.min_amount, "below the minimum amount"
        assert order.amount * position.mark_price >= rules.min_cost, "below the minimum cost"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_books())
def test_plan_when_any_account_then_orders_fit_positions_and_market_rules(book: Book) -> None:
    before = book.exchange.snapshot()
    positions = {(p.symbol, p.side): p for p in before.positions}

    plan, outcomes = execute(book)
    event(f"rules: {sorted({d.rule.value if d.rule else 'none' for d in plan.decisions})}")
    event(f"plan: {kinds(plan)}")

    for action in plan.actions:
        assert action.reason.rule in Rule
        if isinstance(action, Order):
            check_order(action, positions, book.policy)
    # The exchange accepted every reduce-only order as sized.
    for outcome in outcomes:
        if isinstance(outcome.action, Order) and outcome.action.reduce_only:
            assert outcome.ok, outcome.error
    # Nothing flipped, and nothing grew unless the owner allowed it.
    after = {(p.symbol, p.side): p for p in book.exchange.snapshot().positions}
    assert set(after) <= set(positions)
    for key, p in after.items():
        if not book.policy.allow_increase:
            assert p.contracts <= positions[key].contracts


# -- (d) inside the band: nothing to do --------------------------------------------------


@st.composite
def in_band_books(draw: st.DrawFn) -> Book:
    target = draw(bands())
    fraction = draw(st.decimals(min_value=D("0.02"), max_value=D("0.98"), places=2))
    leverage = target.min + (target.max - target.min) * fraction
    prices = draw(marks)
    slippage = draw(slippages)
    source = D(draw(st.integers(0, 50_000)))
    if draw(st.booleans()):
        legs, hedge = draw(cross_legs())
        wallet = D(draw(st.integers(1_000, 100_000)))
        exchange = sim(wallet, source, slippage, hedge)
        open_cross(exchange, legs, prices, wallet, leverage)
    else:
        margin = D(draw(st.integers(1_000, 20_000)))
        exchange = sim(margin, source, slippage)
        symbol = draw(st.sampled_from([BTC, ETH]))
        leg = Leg(symbol, draw(st.sampled_from(list(Side))), D(1), D(0))
        contracts = round_down(leverage * margin / prices[symbol], D("0.001"))
        open_leg(exchange, leg, contracts, prices[symbol], margin)
    policy = Policy(
        prefer=draw(st.sampled_from(list(Prefer))),
        release_excess=draw(st.booleans()),
        allow_increase=draw(st.booleans()),
        slippage_allowance=slippage,
    )
    return Book(exchange, Targets(target), policy, source, RecentActivity())


@FAST
@given(in_band_books())
def test_plan_when_every_scope_in_band_then_empty_plan(book: Book) -> None:
    snapshot = book.exchange.snapshot()
    target = book.targets.account
    for leverage in scope_leverages(snapshot).values():
        assume(leverage is not None and target.min <= leverage <= target.max)

    plan = plan_rebalance(snapshot, book.targets, book.policy, NOW, book.activity)

    assert plan.empty, plan.actions
    assert all(decision.rule is None for decision in plan.decisions)
