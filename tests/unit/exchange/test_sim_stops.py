"""Resting stop orders in the simulated venue: placing, refusing, firing within a bar,
surviving a restart; and the offline paper replay firing them as its bars pass."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.domain.models import MarginMode, OrderSide, Side
from bot.domain.stops import StopStatus
from bot.exchange.port import InvalidOrder, OrderRequest, StopRequest
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.exchange.sim.paper import PaperExchange, PaperSettings
from bot.exchange.sim.prices import Bar

D = Decimal
NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
SLIP = D("0.001")
FEE = binance_usdm_markets()[BTC].taker_fee


def make_exchange(slippage: Decimal = SLIP, side: Side = Side.LONG) -> SimulatedExchange:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=lambda: NOW, derivatives=D(10000),
        slippage=slippage,
    )  # fmt: skip
    exchange.set_mark(BTC, D(50000))
    exchange.open_position(BTC, side, D(1))
    return exchange


def stop(cid: str, trigger: str, amount: str = "0.4", side: Side = Side.LONG) -> StopRequest:
    return StopRequest(
        symbol=BTC, side=side.closing_order_side, amount=D(amount),
        trigger_price=D(trigger), position_side=side, client_order_id=cid,
    )  # fmt: skip


# A buy cannot reduce a long.
WRONG_SIDE = StopRequest(
    symbol=BTC, side=OrderSide.BUY, amount=D("0.4"), trigger_price=D(52000),
    position_side=Side.LONG, client_order_id="s1",
)  # fmt: skip


def realized(amount: Decimal, price: Decimal, sign: int = 1) -> Decimal:
    """What a reduce of a leg entered at 50000 pays the wallet: PnL minus the taker fee."""
    return sign * amount * (price - D(50000)) - amount * price * FEE


async def test_place_stop_when_valid_then_resting_and_listed_and_found() -> None:
    exchange = make_exchange()

    placed = await exchange.place_stop(stop("s1", "48000"))

    assert placed.status is StopStatus.OPEN
    assert (placed.side, placed.position_side) == (OrderSide.SELL, Side.LONG)
    assert await exchange.fetch_stops([BTC]) == (placed,)
    assert await exchange.fetch_stop(BTC, "s1") == placed
    assert await exchange.fetch_stop(BTC, "never") is None


async def test_cancel_stop_when_resting_then_canceled_and_no_longer_listed() -> None:
    exchange = make_exchange()
    placed = await exchange.place_stop(stop("s1", "48000"))

    canceled = await exchange.cancel_stop(placed)

    assert canceled.status is StopStatus.CANCELED
    assert await exchange.fetch_stops([BTC]) == ()
    assert await exchange.fetch_stop(BTC, "s1") == canceled
    assert exchange.trigger_stops(BTC, D(49000), D(40000)) == []
    # Cancelling what is already gone is not an error: its state comes back.
    assert await exchange.cancel_stop(placed) == canceled


async def test_cancel_stop_when_the_venue_never_saw_it_then_not_an_error_and_nothing_rests() -> (
    None
):
    exchange = make_exchange()
    placed = await exchange.place_stop(stop("s1", "48000"))
    stranger = dataclasses.replace(placed, client_order_id="other", exchange_id="S999")

    after = await exchange.cancel_stop(stranger)

    assert after.status is StopStatus.CANCELED
    assert await exchange.fetch_stops([BTC]) == (placed,)


async def test_fetch_stops_when_asked_for_another_symbol_then_only_that_symbols() -> None:
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000"))

    assert await exchange.fetch_stops(["ETH/USDT:USDT"]) == ()
    assert await exchange.fetch_stop("ETH/USDT:USDT", "s1") is None


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (stop("s1", "48000", amount="0.0005"), "precision"),
        (stop("s1", "48000", amount="0"), "precision"),
        (stop("s1", "50000"), "would trigger immediately"),
        (stop("s1", "51000"), "would trigger immediately"),
        (stop("s1", "52000", side=Side.SHORT), "reduce-only"),
        (WRONG_SIDE, "reduce-only"),
    ],
)
async def test_place_stop_when_a_rule_is_broken_then_invalid_order_and_nothing_rests(
    request_: StopRequest, reason: str
) -> None:
    exchange = make_exchange()

    with pytest.raises(InvalidOrder, match=reason):
        await exchange.place_stop(request_)

    assert await exchange.fetch_stops([BTC]) == ()
    assert await exchange.fetch_stop(BTC, "s1") is None


async def test_place_stop_when_the_client_id_was_used_then_invalid_order() -> None:
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000"))

    with pytest.raises(InvalidOrder, match="duplicate"):
        await exchange.place_stop(stop("s1", "47000"))


async def test_place_stop_when_a_short_stop_is_below_the_mark_then_would_trigger() -> None:
    exchange = make_exchange(side=Side.SHORT)

    with pytest.raises(InvalidOrder, match="would trigger immediately"):
        await exchange.place_stop(stop("s1", "49000", side=Side.SHORT))


async def test_trigger_stops_when_the_bar_crosses_the_trigger_then_fills_at_it_less_slippage() -> (
    None
):
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000"))
    wallet = exchange.wallet

    (fired,) = exchange.trigger_stops(BTC, D(49500), D(47000))

    price = D(48000) * (1 - SLIP)
    assert fired.status is StopStatus.TRIGGERED
    assert (fired.filled, fired.average_price) == (D("0.4"), price)
    assert fired.fee == D("0.4") * price * FEE
    assert exchange.wallet == wallet + realized(D("0.4"), price)
    assert exchange.positions()[0].contracts == D("0.6")
    assert await exchange.fetch_stop(BTC, "s1") == fired
    assert await exchange.fetch_stops([BTC]) == ()
    spawned = exchange.stop_fill("s1")
    assert spawned is not None and spawned.average_price == price


async def test_trigger_stops_when_the_bar_gaps_past_the_trigger_then_fills_at_the_open() -> None:
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000"))

    (fired,) = exchange.trigger_stops(BTC, D(47000), D(46000))

    assert fired.average_price == D(47000) * (1 - SLIP)


async def test_trigger_stops_when_the_bar_stays_clear_then_nothing_fires() -> None:
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000"))

    # A low above the trigger, and a high (a buy stop's extreme) for a sell stop.
    assert exchange.trigger_stops(BTC, D(49500), D("48000.1")) == []
    assert exchange.trigger_stops(BTC, D(49500), D(52000)) == []
    assert [s.client_order_id for s in await exchange.fetch_stops([BTC])] == ["s1"]


async def test_trigger_stops_when_several_are_reached_then_nearest_the_open_first() -> None:
    exchange = make_exchange(slippage=D(0))
    await exchange.place_stop(stop("far", "46000", amount="0.3"))
    await exchange.place_stop(stop("near", "48000", amount="0.3"))
    await exchange.place_stop(stop("out", "44000", amount="0.3"))

    fired = exchange.trigger_stops(BTC, D(49000), D(45000))

    assert [(s.client_order_id, s.average_price) for s in fired] == [
        ("near", D(48000)),
        ("far", D(46000)),
    ]
    assert [s.client_order_id for s in await exchange.fetch_stops([BTC])] == ["out"]


async def test_trigger_stops_when_a_short_leg_sees_its_high_then_the_buy_stop_fills_above() -> None:
    exchange = make_exchange(side=Side.SHORT)
    await exchange.place_stop(stop("s1", "52000", side=Side.SHORT))
    wallet = exchange.wallet

    assert exchange.trigger_stops(BTC, D(50500), D(49000)) == []
    (fired,) = exchange.trigger_stops(BTC, D(50500), D(53000))

    price = D(52000) * (1 + SLIP)
    assert fired.average_price == price
    assert exchange.wallet == wallet + realized(D("0.4"), price, sign=-1)


async def test_trigger_stops_when_the_position_shrank_then_fills_only_what_is_left() -> None:
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000", amount="0.6"))
    await exchange.create_order(
        OrderRequest(
            symbol=BTC, side=OrderSide.SELL, amount=D("0.7"), reduce_only=True,
            position_side=Side.LONG, client_order_id="o1",
        )
    )  # fmt: skip

    (fired,) = exchange.trigger_stops(BTC, D(49000), D(47000))

    assert fired.status is StopStatus.TRIGGERED
    assert fired.amount == D("0.6")
    assert fired.filled == D("0.3")
    assert exchange.positions() == []


async def test_trigger_stops_when_the_leg_was_closed_then_the_stop_rests_and_is_rejected() -> None:
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000"))
    await exchange.create_order(
        OrderRequest(
            symbol=BTC, side=OrderSide.SELL, amount=D(1), reduce_only=True,
            position_side=Side.LONG, client_order_id="o1",
        )
    )  # fmt: skip
    wallet = exchange.wallet

    # As at Binance, closing the leg does not cancel its reduce-only stop.
    assert [s.client_order_id for s in await exchange.fetch_stops([BTC])] == ["s1"]
    (fired,) = exchange.trigger_stops(BTC, D(49000), D(47000))

    assert fired.status is StopStatus.REJECTED
    assert (fired.filled, fired.average_price) == (D(0), None)
    assert exchange.wallet == wallet
    assert exchange.stop_fill("s1") is None
    assert await exchange.fetch_stops([BTC]) == ()


async def test_trigger_stops_when_the_rest_is_below_min_notional_then_still_filled() -> None:
    exchange = make_exchange()
    # 0.001 BTC at 48000 is 48 USDT, under Binance's 100: a reduce-only order is exempt.
    await exchange.place_stop(stop("s1", "48000", amount="0.001"))

    (fired,) = exchange.trigger_stops(BTC, D(49000), D(47000))

    assert fired.filled == D("0.001")


async def test_trigger_stops_when_isolated_then_its_margin_is_released_in_proportion() -> None:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=lambda: NOW, derivatives=D(10000)
    )
    exchange.set_mark(BTC, D(50000))
    exchange.open_position(
        BTC, Side.LONG, D(1), margin_mode=MarginMode.ISOLATED, isolated_margin=D(5000)
    )
    await exchange.place_stop(stop("s1", "48000", amount="0.5"))

    exchange.trigger_stops(BTC, D(49000), D(47000))

    assert exchange.positions()[0].isolated_margin == D(2500)
    assert exchange.wallet == D(5000) + D(2500) + realized(D("0.5"), D(48000))


async def test_restore_when_stops_were_placed_and_fired_then_they_come_back() -> None:
    exchange = make_exchange()
    await exchange.place_stop(stop("s1", "48000"))
    await exchange.place_stop(stop("s2", "45000"))
    exchange.trigger_stops(BTC, D(49000), D(47000))
    saved = exchange.state()

    again = SimulatedExchange(markets=binance_usdm_markets(), clock=lambda: NOW)
    again.restore(saved)

    assert await again.fetch_stop(BTC, "s1") == await exchange.fetch_stop(BTC, "s1")
    assert await again.fetch_stops([BTC]) == await exchange.fetch_stops([BTC])
    assert again.stop_fill("s1") == exchange.stop_fill("s1")
    with pytest.raises(InvalidOrder, match="duplicate"):
        await again.place_stop(stop("s2", "46000"))


# -- the offline paper replay -------------------------------------------------------------


def _bar(minute: int, open_: str, low: str, close: str) -> Bar:
    start = int(datetime(2021, 5, 19, tzinfo=UTC).timestamp() * 1000)
    return Bar(start + minute * 60_000, D(open_), max(D(open_), D(close)), D(low), D(close))


async def test_paper_exchange_when_a_replayed_bar_crosses_a_stop_then_it_fires_and_persists(
    tmp_path: Path,
) -> None:
    now = [NOW]
    bars = [_bar(0, "50000", "49900", "50000"), _bar(1, "49800", "47500", "48200")]
    settings = PaperSettings(
        account="paper", symbol=BTC, side=Side.LONG, equity=D(10000), reserve=D(0),
        leverage=D(4), margin_mode=MarginMode.CROSS, bar_seconds=60.0, fee=D("0.0005"),
        slippage=D(0), loop=False, feed=tmp_path / "feed.csv",
        state_file=tmp_path / "paper.json",
    )  # fmt: skip
    paper = PaperExchange(settings, lambda: now[0], bars)
    await paper.place_stop(stop("s1", "48000", amount="0.3"))

    now[0] += timedelta(seconds=61)
    snapshot = await paper.fetch_snapshot()

    fired = await paper.fetch_stop(BTC, "s1")
    assert fired is not None and fired.status is StopStatus.TRIGGERED
    assert fired.average_price == D(48000)
    assert snapshot.positions[0].contracts == D("0.5")
    restarted = PaperExchange(settings, lambda: now[0], bars)
    assert await restarted.fetch_stop(BTC, "s1") == fired
    assert await restarted.fetch_stops([BTC]) == ()


async def test_stop_revision_when_the_book_changes_then_it_moves_and_only_then() -> None:
    exchange = make_exchange()
    seen = [exchange.stop_revision]

    def moved() -> bool:
        seen.append(exchange.stop_revision)
        return seen[-1] != seen[-2]

    placed = await exchange.place_stop(stop("s1", "48000"))
    assert moved()
    await exchange.fetch_stops([BTC])
    exchange.trigger_stops(BTC, D(50000), D(49000))  # reaches nothing
    assert not moved()
    await exchange.place_stop(stop("s2", "47000"))
    assert moved()
    await exchange.cancel_stop(placed)
    assert moved()
    await exchange.cancel_stop(placed)  # not resting any more: nothing changes
    assert not moved()
    exchange.trigger_stops(BTC, D(50000), D(46000))
    assert moved()
    exchange.restore(exchange.state())
    assert moved()
