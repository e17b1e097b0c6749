"""Backstop orders through real ccxt over loopback HTTP: Binance USDⓈ-M and Bybit.

What ccxt sends for a reduce-only stop-market on the mark, and how the venues' replies
(shapes as ccxt's parsers document them and the venues' API references list them) come
back as `StopOrder`s. OKX and Hyperliquid: test_ccxt_stops_okx_hyperliquid.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot.domain.models import OrderSide, Side
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.port import OperationalError, OutcomeUnknown, StopRequest, UnverifiedData
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply
from tests.integration.exchange.venues import CLIENT_ID, adapter_for, serve

BTC = "BTC/USDT:USDT"
LTC = "LTC/USDT:USDT"
PROXY_502 = "<html><body>502 Bad Gateway</body></html>"


def long_stop(symbol: str, amount: str, trigger: str, *, hedged: bool = False) -> StopRequest:
    """The backstop of a long: sell when the mark falls to `trigger`."""
    return StopRequest(
        symbol=symbol,
        side=OrderSide.SELL,
        amount=Decimal(amount),
        trigger_price=Decimal(trigger),
        position_side=Side.LONG,
        client_order_id=CLIENT_ID,
        hedged=hedged,
    )


def short_stop(symbol: str, amount: str, trigger: str, *, hedged: bool = False) -> StopRequest:
    """The backstop of a short: buy when the mark rises to `trigger`."""
    return StopRequest(
        symbol=symbol,
        side=OrderSide.BUY,
        amount=Decimal(amount),
        trigger_price=Decimal(trigger),
        position_side=Side.SHORT,
        client_order_id=CLIENT_ID,
        hedged=hedged,
    )


class RecordingObserver:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    def request(self, venue: str, what: str, seconds: float, error: str | None) -> None:
        self.seen.append((venue, what, error))


# -- Binance USDⓈ-M: algo (conditional) orders -------------------------------------------

ALGO_ORDER = "/fapi/v1/algoOrder"


def binance_algo(**changes: Any) -> dict[str, Any]:
    """A USDⓈ-M algo order as GET/POST /fapi/v1/algoOrder and openAlgoOrders answer it."""
    order: dict[str, Any] = {
        "algoId": 2146760,
        "clientAlgoId": CLIENT_ID,
        "algoType": "CONDITIONAL",
        "orderType": "STOP_MARKET",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "positionSide": "BOTH",
        "timeInForce": "GTC",
        "quantity": "0.003",
        "algoStatus": "NEW",
        "actualOrderId": "",
        "actualPrice": "0.00000",
        "triggerPrice": "60000.00",
        "price": "0.00",
        "icebergQuantity": None,
        "tpTriggerPrice": "0.00",
        "tpPrice": "0.00",
        "slTriggerPrice": "0.00",
        "slPrice": "0.00",
        "tpOrderType": "",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": "MARK_PRICE",
        "priceMatch": "NONE",
        "closePosition": False,
        "priceProtect": False,
        "reduceOnly": True,
        "createTime": 1763458576201,
        "updateTime": 1763458576201,
        "triggerTime": 0,
        "goodTillDate": 0,
    }
    order.update(changes)
    return order


# The market order a triggered stop sent (GET /fapi/v1/order), filled.
BINANCE_SPAWNED = {
    "orderId": 4099436401,
    "symbol": "BTCUSDT",
    "status": "FILLED",
    "clientOrderId": "autoclose-1763459000000",
    "price": "0.00",
    "avgPrice": "59987.40",
    "origQty": "0.003",
    "executedQty": "0.003",
    "cumQuote": "179.96220",
    "timeInForce": "GTC",
    "type": "MARKET",
    "reduceOnly": True,
    "closePosition": False,
    "side": "SELL",
    "positionSide": "BOTH",
    "stopPrice": "0.00",
    "workingType": "MARK_PRICE",
    "priceProtect": False,
    "origType": "MARKET",
    "priceMatch": "NONE",
    "selfTradePreventionMode": "NONE",
    "goodTillDate": 0,
    "time": 1763459000112,
    "updateTime": 1763459000118,
}


def serve_binance(venue: LoopbackVenue, found: dict[str, Any] | None = None) -> None:
    serve(venue, "binanceusdm")
    venue.reply("POST", ALGO_ORDER, binance_algo())
    if found is None:
        venue.reply("GET", ALGO_ORDER, {"code": -2013, "msg": "Order does not exist."}, 400)
    else:
        venue.reply("GET", ALGO_ORDER, found)

    def order(request: RecordedRequest) -> Reply:
        if request.query.get("orderId") == str(BINANCE_SPAWNED["orderId"]):
            return Reply(200, BINANCE_SPAWNED)
        return Reply(400, {"code": -2013, "msg": "Order does not exist."})

    venue.respond("GET", "/fapi/v1/order", order)


def resting(**changes: Any) -> StopOrder:
    fields: dict[str, Any] = {
        "client_order_id": CLIENT_ID,
        "exchange_id": "2146760",
        "symbol": BTC,
        "side": OrderSide.SELL,
        "amount": Decimal("0.003"),
        "trigger_price": Decimal("60000"),
        "status": StopStatus.OPEN,
        "position_side": Side.LONG,
    }
    fields.update(changes)
    return StopOrder(**fields)


async def test_place_stop_when_binance_long_then_algo_stop_market_on_the_mark_reduce_only(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    async with adapter_for("binanceusdm", venue) as exchange:
        # 60000.06 is not on BTCUSDT's 0.10 tick: ccxt's price_to_precision (nearest).
        stop = await exchange.place_stop(long_stop(BTC, "0.003", "60000.06"))

    (call,) = venue.calls(ALGO_ORDER, "POST")
    sent = call.form()
    assert (sent["algoType"], sent["type"], sent["symbol"]) == (
        "CONDITIONAL",
        "STOP_MARKET",
        "BTCUSDT",
    )
    assert (sent["side"], sent["quantity"], sent["triggerPrice"]) == ("SELL", "0.003", "60000.1")
    assert (sent["workingType"], sent["reduceOnly"]) == ("MARK_PRICE", "true")
    assert sent["clientAlgoId"] == CLIENT_ID
    assert "positionSide" not in sent
    assert venue.calls("/fapi/v1/order", "POST") == []
    assert (stop.exchange_id, stop.status, stop.client_order_id) == (
        "2146760",
        StopStatus.OPEN,
        CLIENT_ID,
    )
    assert (stop.amount, stop.trigger_price, stop.side) == (
        Decimal("0.003"),
        Decimal("60000.00"),
        OrderSide.SELL,
    )


async def test_place_stop_when_binance_short_then_buy_stop(venue: LoopbackVenue) -> None:
    serve_binance(venue)
    async with adapter_for("binanceusdm", venue) as exchange:
        await exchange.place_stop(short_stop(BTC, "0.004", "71000"))

    sent = venue.calls(ALGO_ORDER, "POST")[0].form()
    assert (sent["side"], sent["quantity"], sent["triggerPrice"]) == ("BUY", "0.004", "71000")
    assert (sent["type"], sent["reduceOnly"]) == ("STOP_MARKET", "true")


async def test_place_stop_when_binance_hedge_mode_then_position_side_and_no_reduce_only(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    async with adapter_for("binanceusdm", venue, hedged=True) as exchange:
        await exchange.place_stop(short_stop(BTC, "0.004", "71000"))

    sent = venue.calls(ALGO_ORDER, "POST")[0].form()
    # Binance refuses reduceOnly in hedge mode: the SHORT leg is what the buy closes.
    assert (sent["side"], sent["positionSide"]) == ("BUY", "SHORT")
    assert "reduceOnly" not in sent


async def test_place_stop_when_binance_reply_lost_then_outcome_unknown_and_sent_once(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    venue.reply("POST", ALGO_ORDER, PROXY_502, 502)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.place_stop(long_stop(BTC, "0.003", "60000"))

    assert len(venue.calls(ALGO_ORDER, "POST")) == 1


async def test_fetch_stops_when_binance_then_open_reduce_only_stop_markets_only(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    someone_elses = binance_algo(
        algoId=2146761, clientAlgoId="web_x1", side="BUY", triggerPrice="72000.00"
    )
    take_profit = binance_algo(algoId=2146762, orderType="TAKE_PROFIT_MARKET")
    venue.reply("GET", "/fapi/v1/openAlgoOrders", [binance_algo(), someone_elses, take_profit])
    async with adapter_for("binanceusdm", venue) as exchange:
        stops = await exchange.fetch_stops([BTC])

    (call,) = venue.calls("/fapi/v1/openAlgoOrders", "GET")
    assert call.query["symbol"] == "BTCUSDT"
    assert [(s.exchange_id, s.client_order_id, s.side, s.trigger_price) for s in stops] == [
        ("2146760", CLIENT_ID, OrderSide.SELL, Decimal("60000.00")),
        ("2146761", "web_x1", OrderSide.BUY, Decimal("72000.00")),
    ]
    assert all(s.status is StopStatus.OPEN for s in stops)


async def test_fetch_stops_when_binance_row_lacks_trigger_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    venue.reply("GET", "/fapi/v1/openAlgoOrders", [binance_algo(triggerPrice="")])
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="trigger price"):
            await exchange.fetch_stops([BTC])


async def test_fetch_stop_when_binance_open_then_open_asked_by_client_algo_id(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue, found=binance_algo())
    async with adapter_for("binanceusdm", venue) as exchange:
        stop = await exchange.fetch_stop(BTC, CLIENT_ID)

    (call,) = venue.calls(ALGO_ORDER, "GET")
    assert call.query["clientAlgoId"] == CLIENT_ID
    assert stop is not None
    assert (stop.status, stop.filled, stop.amount) == (
        StopStatus.OPEN,
        Decimal("0"),
        Decimal("0.003"),
    )


async def test_fetch_stop_when_binance_triggered_then_fill_read_from_the_order_it_sent(
    venue: LoopbackVenue,
) -> None:
    finished = binance_algo(
        algoStatus="FINISHED",
        actualOrderId="4099436401",
        actualPrice="59987.40",
        triggerTime=1763459000100,
    )
    serve_binance(venue, found=finished)
    async with adapter_for("binanceusdm", venue) as exchange:
        stop = await exchange.fetch_stop(BTC, CLIENT_ID)

    (spawned,) = venue.calls("/fapi/v1/order", "GET")
    assert spawned.query["orderId"] == "4099436401"
    assert stop is not None
    assert (stop.status, stop.filled, stop.average_price) == (
        StopStatus.TRIGGERED,
        Decimal("0.003"),
        Decimal("59987.40"),
    )
    # Binance's order reply carries no fee (its trades do): none is made up.
    assert stop.fee == Decimal("0")


async def test_fetch_stop_when_binance_canceled_then_canceled(venue: LoopbackVenue) -> None:
    serve_binance(venue, found=binance_algo(algoStatus="CANCELED"))
    async with adapter_for("binanceusdm", venue) as exchange:
        stop = await exchange.fetch_stop(BTC, CLIENT_ID)

    assert stop is not None
    assert stop.status is StopStatus.CANCELED


async def test_fetch_stop_when_binance_does_not_know_it_then_none(venue: LoopbackVenue) -> None:
    serve_binance(venue)
    async with adapter_for("binanceusdm", venue) as exchange:
        assert await exchange.fetch_stop(BTC, CLIENT_ID) is None


async def test_fetch_stop_when_binance_status_unknown_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue, found=binance_algo(algoStatus="SOMETHING_NEW"))
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="SOMETHING_NEW"):
            await exchange.fetch_stop(BTC, CLIENT_ID)


async def test_cancel_stop_when_binance_resting_then_delete_algo_order_and_canceled(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    venue.reply(
        "DELETE",
        ALGO_ORDER,
        {"algoId": 2146760, "clientAlgoId": CLIENT_ID, "code": "200", "msg": "success"},
    )
    async with adapter_for("binanceusdm", venue) as exchange:
        after = await exchange.cancel_stop(resting())

    (call,) = venue.calls(ALGO_ORDER, "DELETE")
    assert (call.query["algoId"], call.query["symbol"]) == ("2146760", "BTCUSDT")
    assert after == resting(status=StopStatus.CANCELED)


async def test_cancel_stop_when_binance_already_triggered_then_its_triggered_state(
    venue: LoopbackVenue,
) -> None:
    finished = binance_algo(algoStatus="FINISHED", actualOrderId="4099436401")
    serve_binance(venue, found=finished)
    venue.reply(
        "DELETE",
        ALGO_ORDER,
        {"code": -20124, "msg": "Invalid algo id or it has been completed."},
        400,
    )
    async with adapter_for("binanceusdm", venue) as exchange:
        after = await exchange.cancel_stop(resting())

    assert len(venue.calls(ALGO_ORDER, "DELETE")) == 1
    assert (after.status, after.filled) == (StopStatus.TRIGGERED, Decimal("0.003"))


GONE = {"code": -20124, "msg": "Invalid algo id or it has been completed."}


async def test_cancel_stop_when_refused_unknown_by_client_id_and_not_listed_then_canceled(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)  # GET algoOrder: -2013, the venue no longer knows the client id
    venue.reply("DELETE", ALGO_ORDER, GONE, 400)
    venue.reply("GET", "/fapi/v1/openAlgoOrders", [])
    async with adapter_for("binanceusdm", venue) as exchange:
        after = await exchange.cancel_stop(resting())

    assert after == resting(status=StopStatus.CANCELED)


async def test_cancel_stop_when_refused_but_still_listed_then_the_refusal_is_raised(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    venue.reply("DELETE", ALGO_ORDER, GONE, 400)
    venue.reply("GET", "/fapi/v1/openAlgoOrders", [binance_algo()])
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(OperationalError, match="-20124"):
            await exchange.cancel_stop(resting())


async def test_cancel_stop_when_binance_reply_lost_then_outcome_unknown_and_sent_once(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue)
    venue.reply("DELETE", ALGO_ORDER, PROXY_502, 502)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.cancel_stop(resting())

    assert len(venue.calls(ALGO_ORDER, "DELETE")) == 1


async def test_stop_requests_when_observed_then_counted_as_stop_stops_and_cancel_stop(
    venue: LoopbackVenue,
) -> None:
    serve_binance(venue, found=binance_algo())
    venue.reply("GET", "/fapi/v1/openAlgoOrders", [])
    venue.reply("DELETE", ALGO_ORDER, {"algoId": 2146760, "code": "200", "msg": "success"})
    observer = RecordingObserver()
    async with adapter_for("binanceusdm", venue, observer=observer) as exchange:
        await exchange.place_stop(long_stop(BTC, "0.003", "60000"))
        await exchange.fetch_stops([BTC])
        await exchange.fetch_stop(BTC, CLIENT_ID)
        await exchange.cancel_stop(resting())

    kinds = [what for _, what, _ in observer.seen if what in ("stop", "stops", "cancel_stop")]
    assert kinds == ["stop", "stops", "stop", "cancel_stop"]


# -- Bybit: conditional market orders ----------------------------------------------------------

BYBIT_CREATE = "/v5/order/create"
BYBIT_OPEN = "/v5/order/realtime"
BYBIT_HISTORY = "/v5/order/history"


def bybit_order(**changes: Any) -> dict[str, Any]:
    """A linear conditional order as /v5/order/realtime and /v5/order/history list it."""
    order: dict[str, Any] = {
        "orderId": "1a3f5b2c-7d9e-4f10-8a21-3b4c5d6e7f80",
        "orderLinkId": CLIENT_ID,
        "blockTradeId": "",
        "symbol": "LTCUSDT",
        "price": "0",
        "qty": "0.4",
        "side": "Sell",
        "isLeverage": "",
        "positionIdx": 0,
        "orderStatus": "Untriggered",
        "createType": "CreateByUser",
        "cancelType": "UNKNOWN",
        "rejectReason": "EC_NoError",
        "avgPrice": "0",
        "leavesQty": "0.4",
        "leavesValue": "0",
        "cumExecQty": "0",
        "cumExecValue": "0",
        "cumExecFee": "0",
        "timeInForce": "IOC",
        "orderType": "Market",
        "stopOrderType": "Stop",
        "orderIv": "",
        "marketUnit": "",
        "triggerPrice": "55.20",
        "takeProfit": "",
        "stopLoss": "",
        "tpslMode": "",
        "ocoTriggerBy": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": 2,
        "triggerBy": "MarkPrice",
        "lastPriceOnCreated": "67.55",
        "basePrice": "67.55",
        "reduceOnly": True,
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "createdTime": "1757837618905",
        "updatedTime": "1757837618909",
    }
    order.update(changes)
    return order


def bybit_list(*orders: dict[str, Any]) -> dict[str, Any]:
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"list": list(orders), "nextPageCursor": "", "category": "linear"},
        "retExtInfo": {},
        "time": 1757837620000,
    }


def serve_bybit(
    venue: LoopbackVenue,
    *,
    open_: tuple[dict[str, Any], ...] = (),
    history: tuple[dict[str, Any], ...] = (),
) -> None:
    serve(venue, "bybit")
    venue.reply(
        "POST",
        BYBIT_CREATE,
        {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"orderId": bybit_order()["orderId"], "orderLinkId": CLIENT_ID},
            "retExtInfo": {},
            "time": 1757837618909,
        },
    )
    venue.reply("GET", BYBIT_OPEN, bybit_list(*open_))
    venue.reply("GET", BYBIT_HISTORY, bybit_list(*history))


async def test_place_stop_when_bybit_long_then_conditional_market_falling_to_mark_trigger(
    venue: LoopbackVenue,
) -> None:
    serve_bybit(venue)
    async with adapter_for("bybit", venue) as exchange:
        stop = await exchange.place_stop(long_stop(LTC, "0.4", "55.2"))

    (call,) = venue.calls(BYBIT_CREATE, "POST")
    assert call.json() == {
        "symbol": "LTCUSDT",
        "side": "Sell",
        "orderType": "Market",
        "category": "linear",
        "qty": "0.4",
        "triggerDirection": 2,
        "triggerPrice": "55.2",
        "triggerBy": "MarkPrice",
        "reduceOnly": True,
        "orderLinkId": CLIENT_ID,
    }
    # Bybit acknowledges with ids only: the rest is what was sent.
    assert (stop.exchange_id, stop.status, stop.amount, stop.trigger_price) == (
        "1a3f5b2c-7d9e-4f10-8a21-3b4c5d6e7f80",
        StopStatus.OPEN,
        Decimal("0.4"),
        Decimal("55.2"),
    )


async def test_place_stop_when_bybit_short_then_rising_to_trigger(venue: LoopbackVenue) -> None:
    serve_bybit(venue)
    async with adapter_for("bybit", venue) as exchange:
        await exchange.place_stop(short_stop(LTC, "0.4", "80.004"))

    sent = venue.calls(BYBIT_CREATE, "POST")[0].json()
    assert (sent["side"], sent["triggerDirection"], sent["triggerPrice"]) == ("Buy", 1, "80")
    assert sent["reduceOnly"] is True


async def test_place_stop_when_bybit_hedge_mode_then_position_idx_of_the_leg(
    venue: LoopbackVenue,
) -> None:
    serve_bybit(venue)
    async with adapter_for("bybit", venue, hedged=True) as exchange:
        await exchange.place_stop(long_stop(LTC, "0.4", "55.2"))

    sent = venue.calls(BYBIT_CREATE, "POST")[0].json()
    # positionIdx 1 is the long leg: a sell there can only close it.
    assert (sent["side"], sent["positionIdx"]) == ("Sell", 1)
    assert "reduceOnly" not in sent


async def test_place_stop_when_bybit_reply_lost_then_outcome_unknown_and_sent_once(
    venue: LoopbackVenue,
) -> None:
    serve_bybit(venue)
    venue.reply("POST", BYBIT_CREATE, PROXY_502, 502)
    async with adapter_for("bybit", venue) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.place_stop(long_stop(LTC, "0.4", "55.2"))

    assert len(venue.calls(BYBIT_CREATE, "POST")) == 1


async def test_fetch_stops_when_bybit_then_stop_order_filter_and_reduce_only_stops(
    venue: LoopbackVenue,
) -> None:
    limit_order = bybit_order(
        orderId="c0ffee00-0000-4000-8000-000000000001", orderType="Limit", triggerPrice=""
    )
    hedged_leg = bybit_order(
        orderId="c0ffee00-0000-4000-8000-000000000002",
        orderLinkId="",
        positionIdx=2,
        side="Buy",
        reduceOnly=False,
        triggerPrice="80.00",
        triggerDirection=1,
    )
    serve_bybit(venue, open_=(bybit_order(), limit_order, hedged_leg))
    async with adapter_for("bybit", venue) as exchange:
        stops = await exchange.fetch_stops([LTC])

    (call,) = venue.calls(BYBIT_OPEN, "GET")
    assert (call.query["orderFilter"], call.query["symbol"]) == ("StopOrder", "LTCUSDT")
    assert [(s.exchange_id, s.client_order_id, s.position_side) for s in stops] == [
        ("1a3f5b2c-7d9e-4f10-8a21-3b4c5d6e7f80", CLIENT_ID, None),
        # No orderLinkId: known by its order id.
        (
            "c0ffee00-0000-4000-8000-000000000002",
            "c0ffee00-0000-4000-8000-000000000002",
            Side.SHORT,
        ),
    ]


async def test_fetch_stop_when_bybit_untriggered_then_open(venue: LoopbackVenue) -> None:
    serve_bybit(venue, open_=(bybit_order(),))
    async with adapter_for("bybit", venue) as exchange:
        stop = await exchange.fetch_stop(LTC, CLIENT_ID)

    (call,) = venue.calls(BYBIT_OPEN, "GET")
    assert call.query["orderLinkId"] == CLIENT_ID
    assert stop is not None
    assert (stop.status, stop.trigger_price) == (StopStatus.OPEN, Decimal("55.20"))


async def test_fetch_stop_when_bybit_triggered_and_filled_then_fill_from_the_order(
    venue: LoopbackVenue,
) -> None:
    filled = bybit_order(
        orderStatus="Filled",
        avgPrice="55.14",
        leavesQty="0",
        cumExecQty="0.4",
        cumExecValue="22.056",
        cumExecFee="0.0121308",
    )
    serve_bybit(venue, history=(filled,))
    async with adapter_for("bybit", venue) as exchange:
        stop = await exchange.fetch_stop(LTC, CLIENT_ID)

    assert venue.calls(BYBIT_HISTORY, "GET")[0].query["orderLinkId"] == CLIENT_ID
    assert stop is not None
    assert (stop.status, stop.filled, stop.average_price, stop.fee) == (
        StopStatus.TRIGGERED,
        Decimal("0.4"),
        Decimal("55.14"),
        Decimal("0.0121308"),
    )


async def test_fetch_stop_when_bybit_deactivated_then_canceled(venue: LoopbackVenue) -> None:
    serve_bybit(venue, history=(bybit_order(orderStatus="Deactivated"),))
    async with adapter_for("bybit", venue) as exchange:
        stop = await exchange.fetch_stop(LTC, CLIENT_ID)

    assert stop is not None
    assert stop.status is StopStatus.CANCELED


async def test_fetch_stop_when_bybit_does_not_know_it_then_none(venue: LoopbackVenue) -> None:
    serve_bybit(venue)
    async with adapter_for("bybit", venue) as exchange:
        assert await exchange.fetch_stop(LTC, CLIENT_ID) is None


def bybit_resting() -> StopOrder:
    return resting(
        exchange_id="1a3f5b2c-7d9e-4f10-8a21-3b4c5d6e7f80",
        symbol=LTC,
        amount=Decimal("0.4"),
        trigger_price=Decimal("55.2"),
    )


async def test_cancel_stop_when_bybit_resting_then_cancelled_by_order_id(
    venue: LoopbackVenue,
) -> None:
    serve_bybit(venue)
    venue.reply(
        "POST",
        "/v5/order/cancel",
        {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"orderId": "1a3f5b2c-7d9e-4f10-8a21-3b4c5d6e7f80", "orderLinkId": CLIENT_ID},
            "retExtInfo": {},
            "time": 1757837700000,
        },
    )
    async with adapter_for("bybit", venue) as exchange:
        after = await exchange.cancel_stop(bybit_resting())

    (call,) = venue.calls("/v5/order/cancel", "POST")
    assert call.json() == {
        "symbol": "LTCUSDT",
        "orderId": "1a3f5b2c-7d9e-4f10-8a21-3b4c5d6e7f80",
        "category": "linear",
    }
    assert after.status is StopStatus.CANCELED


async def test_cancel_stop_when_bybit_already_gone_then_its_state(venue: LoopbackVenue) -> None:
    serve_bybit(venue, history=(bybit_order(orderStatus="Deactivated"),))
    venue.reply(
        "POST",
        "/v5/order/cancel",
        {"retCode": 110001, "retMsg": "Order does not exist", "result": {}, "time": 1757837700000},
    )
    async with adapter_for("bybit", venue) as exchange:
        after = await exchange.cancel_stop(bybit_resting())

    # Refused, then looked up by its client id: cancelled before triggering.
    assert venue.calls(BYBIT_HISTORY, "GET")[0].query["orderLinkId"] == CLIENT_ID
    assert after.status is StopStatus.CANCELED
    assert after.exchange_id == "1a3f5b2c-7d9e-4f10-8a21-3b4c5d6e7f80"


@pytest.mark.parametrize(
    ("stop_for", "wanted", "sent_trigger"),
    [
        # 60000.04 is nearest 60000.0, a tick toward a long's liquidation: up instead.
        (long_stop, "60000.04", "60000.1"),
        # 71000.06 is nearest 71000.1, a tick toward a short's liquidation: down instead.
        (short_stop, "71000.06", "71000"),
    ],
)
async def test_place_stop_when_trigger_between_ticks_then_rounded_toward_the_mark(
    venue: LoopbackVenue, stop_for: Any, wanted: str, sent_trigger: str
) -> None:
    serve_binance(venue)
    async with adapter_for("binanceusdm", venue) as exchange:
        await exchange.place_stop(stop_for(BTC, "0.003", wanted))

    sent = venue.calls(ALGO_ORDER, "POST")[0].form()
    assert Decimal(sent["triggerPrice"]) == Decimal(sent_trigger)
