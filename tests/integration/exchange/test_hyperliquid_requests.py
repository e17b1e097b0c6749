"""What real ccxt sends to Hyperliquid for levbot's writes, recorded by the loopback venue.

Signed actions are checked against ccxt's own request fixtures (tests/fixtures/ccxt/
request/hyperliquid.json) where they record the same call. ccxt signs with the test
key offline; only the signature's shape is checked.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.models import OrderSide, Side
from bot.exchange.ccxt.hyperliquid_profile import cloid
from bot.exchange.port import InvalidOrder, OrderRequest
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.test_hyperliquid import (
    DOGE,
    ETH,
    SOL,
    WALLET,
    hyperliquid_adapter,
    info_calls,
    recorded_reply,
    serve_hyperliquid,
)
from tests.integration.exchange.venues import CLIENT_ID, recorded_request

CLOID = re.compile(r"0x[0-9a-f]{32}")


def close_long(symbol: str, amount: str) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=OrderSide.SELL,
        amount=Decimal(amount),
        reduce_only=True,
        position_side=Side.LONG,
        client_order_id=CLIENT_ID,
    )


def fixture_body(method: str, description: str) -> dict[str, Any]:
    entry = recorded_request("hyperliquid", method, description)
    body: dict[str, Any] = json.loads(entry["output"])
    return body


def actions(venue: LoopbackVenue) -> list[dict[str, Any]]:
    return [call.json() for call in venue.calls("/exchange", "POST")]


def assert_signed(body: dict[str, Any]) -> None:
    signature = body["signature"]
    assert re.fullmatch(r"0x[0-9a-f]{1,64}", signature["r"])
    assert re.fullmatch(r"0x[0-9a-f]{1,64}", signature["s"])
    assert signature["v"] in (27, 28)


# -- reduce-only orders ---------------------------------------------------------------------


async def test_create_order_when_reduce_only_then_ioc_limit_near_the_mark_with_cloid(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        await exchange.fetch_snapshot()
        result = await exchange.create_order(close_long(SOL, "0.5"))

    (sent,) = actions(venue)
    expected = fixture_body("createOrder", "order with reduceOnly")
    # ccxt's fixture was recorded with its builder fee approved; levbot approves none.
    assert set(sent) == set(expected) == {"action", "nonce", "signature"}
    assert set(sent["action"]) == set(expected["action"]) - {"builder"}
    (order,) = sent["action"]["orders"]
    (fixture_order,) = expected["action"]["orders"]
    assert set(order) == set(fixture_order) | {"c"}
    # SOL is asset 5; a sell of 0.5, reduce-only, immediate-or-cancel.
    assert (order["a"], order["b"], order["s"], order["r"]) == (5, False, "0.5", True)
    assert order["t"] == {"limit": {"tif": "Ioc"}} == fixture_order["t"]
    # The price: the snapshot's mark 138.91 less 5% slippage = 131.9645, at 5 significant
    # digits 131.96 - the worst price the sell may fill at, within 5% under the mark.
    assert order["p"] == "131.96"
    mark = Decimal("138.91")
    assert mark * Decimal("0.95") - Decimal("0.01") < Decimal(order["p"]) < mark
    # Our journal's id as a cloid: 0x + 32 hex digits, the same every time.
    assert CLOID.fullmatch(order["c"])
    assert order["c"] == cloid(CLIENT_ID) == cloid(CLIENT_ID)
    assert sent["action"]["grouping"] == "na"
    assert sent["action"]["type"] == "order"
    assert_signed(sent)
    # The reply (recorded): filled at once.
    assert (result.client_order_id, result.exchange_id) == (CLIENT_ID, "296683658818")
    assert (result.filled, result.average_price) == (Decimal("1"), Decimal("25.585"))


async def test_create_order_when_first_then_no_builder_approval_or_referrer_is_signed(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        await exchange.fetch_snapshot()
        await exchange.create_order(close_long(SOL, "0.5"))
        await exchange.create_order(close_long(ETH, "0.2"))

    # ccxt's defaults would first sign approveBuilderFee (its own builder, 0.01%) and
    # setReferrer, and tag each order with the builder.
    sent = actions(venue)
    assert [body["action"]["type"] for body in sent] == ["order", "order"]
    assert all("builder" not in body["action"] for body in sent)


async def test_create_order_when_no_snapshot_yet_then_refused_unsent(venue: LoopbackVenue) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        with pytest.raises(InvalidOrder, match="no mark price"):
            await exchange.create_order(close_long(SOL, "0.5"))

    assert venue.calls("/exchange") == []


async def test_create_order_when_reduce_only_buy_closes_a_short_then_price_above_the_mark(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue, recorded_reply("fetchPositions", "short position"))
    close_short = OrderRequest(SOL, OrderSide.BUY, Decimal("0.5"), True, Side.SHORT, CLIENT_ID)
    async with hyperliquid_adapter(venue) as exchange:
        await exchange.fetch_snapshot()
        await exchange.create_order(close_short)

    (order,) = actions(venue)[0]["action"]["orders"]
    # mark = 68.98 / 0.5 = 137.96; a buy may pay up to 5% more: 144.858 -> 144.86.
    assert (order["b"], order["r"], order["p"]) == (True, True, "144.86")


# -- the order after a restart ----------------------------------------------------------


async def test_fetch_order_when_restarted_then_found_by_the_cloid_it_was_placed_with(
    venue: LoopbackVenue,
) -> None:
    info = serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as before:
        await before.fetch_snapshot()
        await before.create_order(close_long(ETH, "0.2"))
    (placed,) = actions(venue)[0]["action"]["orders"]
    # The venue now knows the order (recorded orderStatus reply: 0.2 ETH, filled).
    info["orderStatus"] = recorded_reply("fetchOrder", "fetch order")

    async with hyperliquid_adapter(venue) as after:
        order = await after.fetch_order_by_client_id(ETH, CLIENT_ID)

    (asked,) = info_calls(venue, "orderStatus")
    expected = fixture_body("fetchOrder", "fetchOrder with clientOrderId")
    assert set(asked) == set(expected) == {"type", "oid", "user"}
    assert asked == {"type": "orderStatus", "oid": placed["c"], "user": WALLET}
    assert order is not None
    assert order.client_order_id == CLIENT_ID
    assert (order.exchange_id, order.filled) == ("6463065738", Decimal("0.2"))
    assert order.status == "closed"


async def test_fetch_order_when_venue_does_not_know_the_cloid_then_none(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)  # orderStatus: {"status": "unknownOid"}
    async with hyperliquid_adapter(venue) as exchange:
        assert await exchange.fetch_order_by_client_id(SOL, CLIENT_ID) is None

    (asked,) = info_calls(venue, "orderStatus")
    assert asked["oid"] == cloid(CLIENT_ID)


# -- spot <-> perp transfers --------------------------------------------------------------


async def test_transfer_when_spot_to_perp_then_usd_class_transfer_to_perp(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        result = await exchange.transfer("USDC", Decimal("12.34"), True, CLIENT_ID)

    (sent,) = actions(venue)
    expected = fixture_body("transfer", "transfer from spot to swap")
    assert set(sent) == set(expected)
    assert set(sent["action"]) == set(expected["action"])
    assert sent["action"] == {
        "hyperliquidChain": "Mainnet",
        "signatureChainId": "0x66eee",
        "type": "usdClassTransfer",
        "amount": "12.34",
        "toPerp": True,
        "nonce": sent["nonce"],
    }
    assert_signed(sent)
    # Hyperliquid acknowledges with {"type": "default"}: no id, the amount as asked.
    assert (result.transfer_id, result.amount, result.into_derivatives) == (
        CLIENT_ID,
        Decimal("12.34"),
        True,
    )


async def test_transfer_when_perp_to_spot_on_testnet_then_to_perp_false_on_testnet_chain(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue, environment="testnet") as exchange:
        await exchange.transfer("USDC", Decimal("5"), False, CLIENT_ID)

    (sent,) = actions(venue)
    expected = fixture_body("transfer", "transfer from swap to spot")
    assert set(sent["action"]) == set(expected["action"])
    assert (sent["action"]["toPerp"], sent["action"]["amount"]) == (False, "5")
    # Signed for the testnet chain (ccxt's fixture happens to say Mainnet).
    assert sent["action"]["hyperliquidChain"] == "Testnet"


# -- isolated margin --------------------------------------------------------------------------


async def test_adjust_margin_when_add_then_update_isolated_margin_positive_ntli(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        result = await exchange.adjust_margin(SOL, Side.LONG, Decimal("12.34"), add=True)

    (sent,) = actions(venue)
    # ntli is USDC in millionths: 12.34 * 1e6.
    assert sent["action"] == {
        "type": "updateIsolatedMargin",
        "asset": 5,
        "isBuy": True,
        "ntli": 12_340_000,
    }
    assert set(sent) == {"action", "nonce", "signature"}
    assert_signed(sent)
    assert (result.symbol, result.amount, result.add) == (SOL, Decimal("12.34"), True)


async def test_adjust_margin_when_reduce_then_negative_ntli(venue: LoopbackVenue) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        result = await exchange.adjust_margin(SOL, Side.SHORT, Decimal("5"), add=False)

    (sent,) = actions(venue)
    assert (sent["action"]["type"], sent["action"]["ntli"]) == ("updateIsolatedMargin", -5_000_000)
    assert (result.amount, result.add) == (Decimal("5"), False)


async def test_adjust_margin_when_coin_trades_whole_units_then_reports_what_ccxt_sent(
    venue: LoopbackVenue,
) -> None:
    """ccxt rounds the USDC amount to the coin's size step (DOGE: szDecimals 0)."""
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        result = await exchange.adjust_margin(DOGE, Side.LONG, Decimal("12.34"), add=True)

    (sent,) = actions(venue)
    assert (sent["action"]["asset"], sent["action"]["ntli"]) == (7, 12_000_000)
    assert result.amount == Decimal("12")


# -- request budget ----------------------------------------------------------------------------


async def test_snapshot_when_markets_loaded_then_three_info_reads_per_cycle(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        await exchange.fetch_snapshot()
        venue.forget()
        await exchange.fetch_snapshot()

    # fetch_balance and fetch_positions each read the same clearinghouse state.
    assert sorted(call.json()["type"] for call in venue.requests) == [
        "clearinghouseState",
        "clearinghouseState",
        "spotClearinghouseState",
    ]
