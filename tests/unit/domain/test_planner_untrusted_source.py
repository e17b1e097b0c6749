"""`plan_rebalance` when the source wallet is unknown, and when `symbols` leaves legs out
(issue 9 §1 and §4), on hand-built snapshots.

An unreadable source wallet is unknown, not zero: outside an emergency the planner waits
rather than sell what a transfer would have covered; in an emergency it de-levers with
orders. Unwatched legs count in a cross account's leverage, but are never traded.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.domain.actions import MarginAdjustment, Order, Rule, Transfer
from bot.domain.models import AccountSnapshot
from bot.domain.planner import SOURCE_UNKNOWN_NOTE
from bot.domain.targets import Policy, Prefer
from tests.unit.domain.test_planner import BTC, ETH, NO_SLIP, plan, pos, snap


def unknown_source(snapshot: AccountSnapshot) -> AccountSnapshot:
    """The snapshot as the adapter reports it when the source wallet read failed."""
    return replace(snapshot, source=None, source_unknown=True)


def notes(result_notes: tuple[str, ...], decisions: tuple[object, ...]) -> list[str]:
    found = list(result_notes)
    for decision in decisions:
        found.extend(getattr(decision, "notes", ()))
    return found


# -- the source wallet is unknown ------------------------------------------------------


def test_plan_when_source_unknown_and_over_band_then_waits_and_says_so() -> None:
    # N = 0.8 * 50000 = 40000, E = 10000: L = 4 > 3.5. A readable source with 100000
    # would have planned a transfer of 40000 / 3 - 10000 = 3333.34.
    readable = snap("10000", [pos("0.8")], source="100000")
    assert [type(a) for a in plan(readable).actions] == [Transfer]

    result = plan(unknown_source(readable))

    assert result.actions == ()
    (decision,) = result.decisions
    assert decision.rule is Rule.DELEVER
    assert SOURCE_UNKNOWN_NOTE in decision.notes


def test_plan_when_no_source_wallet_at_all_then_orders_as_before() -> None:
    # source None without source_unknown: the venue has no such wallet (Binance demo).
    result = plan(snap("10000", [pos("0.8")], source=None))

    assert result.actions
    assert all(isinstance(a, Order) and a.reduce_only for a in result.actions)


def test_plan_when_source_unknown_in_an_emergency_then_reduce_only_orders_no_transfer() -> None:
    # E = 150, MM = 40000 * 0.004 = 160: margin ratio 1.07 >= 0.8, an emergency.
    result = plan(unknown_source(snap("150", [pos("0.8")], source="100000")))

    (decision,) = result.decisions
    assert decision.rule is Rule.EMERGENCY
    assert result.actions
    assert all(isinstance(a, Order) and a.reduce_only for a in result.actions)
    assert SOURCE_UNKNOWN_NOTE not in decision.notes


def test_plan_when_source_unknown_and_orders_preferred_then_orders_as_usual() -> None:
    # Orders come first by the owner's choice: collateral was never going to cover it.
    policy = Policy(slippage_allowance=D(0), prefer=Prefer.ORDERS)
    known = plan(snap("10000", [pos("0.8")], source="0"), policy)
    result = plan(unknown_source(snap("10000", [pos("0.8")], source="100000")), policy)

    assert result.actions == known.actions
    assert all(isinstance(a, Order) for a in result.actions)


def test_plan_when_source_unknown_and_isolated_leg_then_margin_from_derivatives_only() -> None:
    # E_p = 10000, n = 40000: L = 4; margin wanted 3333.34, the derivatives wallet has
    # 5000 free, so no transfer from the unknown source is needed.
    leg = pos("0.8", isolated_margin="10000")
    result = plan(unknown_source(snap("20000", [leg], free="5000", source="100000")))

    assert [type(a) for a in result.actions] == [MarginAdjustment]
    (adjustment,) = result.actions
    assert isinstance(adjustment, MarginAdjustment) and adjustment.amount == D("3333.34")


def test_plan_when_source_unknown_and_isolated_leg_short_of_free_margin_then_waits() -> None:
    # Only 1000 free in the derivatives wallet: the rest would come from the source.
    leg = pos("0.8", isolated_margin="10000")
    result = plan(unknown_source(snap("20000", [leg], free="1000", source="100000")))

    assert not any(isinstance(a, Order) for a in result.actions)
    assert not any(isinstance(a, Transfer) for a in result.actions)
    (decision,) = result.decisions
    assert SOURCE_UNKNOWN_NOTE in decision.notes


def test_plan_when_source_unknown_and_within_band_then_nothing_and_no_wait_note() -> None:
    result = plan(unknown_source(snap("13334", [pos("0.8")])))

    assert result.actions == ()
    assert SOURCE_UNKNOWN_NOTE not in notes(result.notes, result.decisions)


# -- `symbols`: every leg counts, only watched legs are traded ------------------------


def test_plan_when_unwatched_cross_leg_then_it_counts_in_leverage_but_is_not_traded() -> None:
    # BTC 0.4 * 50000 = 20000 (watched), ETH 10 * 2000 = 20000 (not): N = 40000,
    # E = 10000, L = 4 > 3.5. BTC alone would read L = 2, inside no band at all.
    positions = [pos("0.4"), pos("10", "2000", symbol=ETH)]
    snapshot = replace(snap("10000", positions, source="0"), watched=frozenset({BTC}))

    result = plan(snapshot, NO_SLIP)

    (decision,) = result.decisions
    assert decision.leverage == D(4)
    assert result.actions
    assert {a.symbol for a in result.actions if isinstance(a, Order)} == {BTC}
    # The whole gap falls on BTC: dN = 10000 / (1 - 3 * 0.0005) = 10015.02, 0.2003 BTC
    # rounded down to 0.200 (split with ETH, BTC would have taken half).
    (order,) = result.actions
    assert isinstance(order, Order) and order.amount == D("0.200")


def test_plan_when_only_unwatched_legs_over_band_then_no_order_and_a_note() -> None:
    snapshot = replace(snap("10000", [pos("0.8")], source="0"), watched=frozenset({ETH}))

    result = plan(snapshot)

    assert result.actions == ()
    (decision,) = result.decisions
    assert decision.leverage == D(4)
    assert any("outside `symbols`" in note for note in decision.notes)


def test_plan_when_unwatched_leg_and_source_has_funds_then_transfer_still_fixes_the_account() -> (
    None
):
    # A transfer changes no leg: the cross account may be topped up for every leg.
    snapshot = replace(snap("10000", [pos("0.8")], source="100000"), watched=frozenset({ETH}))

    result = plan(snapshot)

    assert [type(a) for a in result.actions] == [Transfer]


def test_plan_when_unwatched_isolated_leg_then_no_margin_change_and_no_scope() -> None:
    # The BTC isolated leg is over its band (L = 4) and even has no mark; it is not in
    # `symbols`: no scope, no margin change, and it does not hold the ETH leg back.
    # ETH (cross, watched): 10 * 2000 = 20000 on E = 5000, L = 4.
    unwatched = pos("0.8", None, isolated_margin="10000")
    watched = pos("10", "2000", symbol=ETH)
    snapshot = replace(snap("5000", [unwatched, watched], source="0"), watched=frozenset({ETH}))

    result = plan(snapshot)

    assert [d.scope for d in result.decisions] == ["acct"]
    assert result.actions
    assert all(isinstance(a, Order) and a.symbol == ETH for a in result.actions)


def test_plan_when_watched_is_empty_then_every_leg_is_acted_on() -> None:
    positions = [pos("0.4"), pos("10", "2000", symbol=ETH)]
    result = plan(snap("10000", positions, source="0"))

    assert {a.symbol for a in result.actions if isinstance(a, Order)} == {BTC, ETH}
