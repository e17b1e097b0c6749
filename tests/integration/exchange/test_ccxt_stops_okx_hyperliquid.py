"""Backstop orders through real ccxt over loopback HTTP: OKX and Hyperliquid.

OKX rests them as algo orders (ordType conditional, a stop-loss on the mark price);
Hyperliquid as trigger orders (isMarket, tpsl "sl"; it triggers them on the mark).
Binance and Bybit: test_ccxt_stops.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.models import OrderSide, Side
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.ccxt.hyperliquid_profile import cloid
from bot.exchange.port import OutcomeUnknown
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply
from tests.integration.exchange.test_ccxt_stops import PROXY_502, long_stop, short_stop
from tests.integration.exchange.test_hyperliquid import SOL, hyperliquid_adapter, serve_hyperliquid
from tests.integration.exchange.venues import CLIENT_ID, adapter_for, serve

BTC = "BTC/USDT:USDT"

# -- OKX: algo orders -------------------------------------------------------------------------

ALGO = "/api/v5/trade/order-algo"
PENDING = "/api/v5/trade/orders-algo-pending"
CANCEL_ALGOS = "/api/v5/trade/cancel-algos"
ALGO_ID = "681096944655273984"
SPAWNED_ID = "681097512345678901"


def okx_algo(**changes: Any) -> dict[str, Any]:
    """An algo order as GET /api/v5/trade/order-algo and orders-algo-pending list it."""
    order: dict[str, Any] = {
        "activePx": "",
        "actualPx": "",
        "actualSide": "",
        "actualSz": "0",
        "algoClOrdId": CLIENT_ID,
        "algoId": ALGO_ID,
        "amendPxOnTriggerType": "",
        "attachAlgoOrds": [],
        "cTime": "1708679675244",
        "callbackRatio": "",
        "callbackSpread": "",
        "ccy": "",
        "clOrdId": "",
        "closeFraction": "",
        "failCode": "0",
        "instId": "BTC-USDT-SWAP",
        "instType": "SWAP",
        "isTradeBorrowMode": "",
        "last": "62916.5",
        "lever": "10",
        "linkedOrd": {"ordId": ""},
        "moveTriggerPx": "",
        "ordId": "",
        "ordIdList": [],
        "ordPx": "",
        "ordType": "conditional",
        "posSide": "net",
        "pxLimit": "",
        "pxSpread": "",
        "pxVar": "",
        "quickMgnType": "",
        "reduceOnly": "true",
        "side": "sell",
        "slOrdPx": "-1",
        "slTriggerPx": "55000",
        "slTriggerPxType": "mark",
        "state": "live",
        "sz": "2",
        "szLimit": "",
        "tag": "",
        "tdMode": "cross",
        "tgtCcy": "",
        "timeInterval": "",
        "tpOrdPx": "",
        "tpTriggerPx": "",
        "tpTriggerPxType": "",
        "triggerPx": "",
        "triggerPxType": "",
        "triggerTime": "",
        "uTime": "1708679675244",
    }
    order.update(changes)
    return order


# The market order a triggered algo order placed (GET /api/v5/trade/order), filled.
OKX_SPAWNED = {
    "accFillSz": "2",
    "algoClOrdId": "",
    "algoId": ALGO_ID,
    "avgPx": "54990.1",
    "cTime": "1708690000100",
    "category": "normal",
    "ccy": "",
    "clOrdId": "",
    "fee": "-0.05499",
    "feeCcy": "USDT",
    "fillPx": "54990.1",
    "fillSz": "2",
    "fillTime": "1708690000120",
    "instId": "BTC-USDT-SWAP",
    "instType": "SWAP",
    "lever": "10",
    "ordId": SPAWNED_ID,
    "ordType": "market",
    "pnl": "-15.8",
    "posSide": "net",
    "px": "",
    "reduceOnly": "true",
    "side": "sell",
    "slOrdPx": "",
    "slTriggerPx": "",
    "state": "filled",
    "sz": "2",
    "tag": "",
    "tdMode": "cross",
    "tgtCcy": "",
    "tpOrdPx": "",
    "tpTriggerPx": "",
    "uTime": "1708690000120",
}


def okx_reply(*data: dict[str, Any]) -> dict[str, Any]:
    return {"code": "0", "msg": "", "data": list(data)}


def serve_okx(venue: LoopbackVenue, found: dict[str, Any] | None = None) -> None:
    serve(venue, "okx")
    venue.reply(
        "POST",
        ALGO,
        okx_reply(
            {
                "algoClOrdId": CLIENT_ID,
                "algoId": ALGO_ID,
                "clOrdId": "",
                "sCode": "0",
                "sMsg": "",
                "tag": "",
            }
        ),
    )
    if found is None:
        venue.reply("GET", ALGO, {"code": "51603", "msg": "Order does not exist", "data": []})
    else:
        venue.reply("GET", ALGO, okx_reply(found))

    def order(request: RecordedRequest) -> Reply:
        if request.query.get("ordId") == SPAWNED_ID:
            return Reply(200, okx_reply(OKX_SPAWNED))
        return Reply(200, {"code": "51603", "msg": "Order does not exist", "data": []})

    venue.respond("GET", "/api/v5/trade/order", order)


def okx_resting() -> StopOrder:
    return StopOrder(
        client_order_id=CLIENT_ID,
        exchange_id=ALGO_ID,
        symbol=BTC,
        side=OrderSide.SELL,
        amount=Decimal("2"),
        trigger_price=Decimal("55000"),
        status=StopStatus.OPEN,
        position_side=Side.LONG,
    )


async def test_place_stop_when_okx_long_then_conditional_algo_on_the_mark_reduce_only(
    venue: LoopbackVenue,
) -> None:
    serve_okx(venue)
    async with adapter_for("okx", venue) as exchange:
        stop = await exchange.place_stop(long_stop(BTC, "2", "55000.04"))

    (call,) = venue.calls(ALGO, "POST")
    sent = call.json()
    assert {key: sent[key] for key in ("instId", "side", "ordType", "sz", "tdMode")} == {
        "instId": "BTC-USDT-SWAP",
        "side": "sell",
        "ordType": "conditional",
        "sz": "2",
        "tdMode": "cross",
    }
    # 55000.04 is between ticks: rounded up, toward the mark, never toward liquidation.
    assert (sent["slTriggerPx"], sent["slOrdPx"], sent["slTriggerPxType"]) == (
        "55000.1",
        "-1",
        "mark",
    )
    assert (sent["reduceOnly"], sent["algoClOrdId"]) == (True, CLIENT_ID)
    assert "posSide" not in sent
    assert venue.calls("/api/v5/trade/batch-orders") == []
    assert (stop.exchange_id, stop.status, stop.trigger_price, stop.amount) == (
        ALGO_ID,
        StopStatus.OPEN,
        Decimal("55000.1"),
        Decimal("2"),
    )


async def test_place_stop_when_okx_short_hedged_then_pos_side_of_the_leg(
    venue: LoopbackVenue,
) -> None:
    serve_okx(venue)
    async with adapter_for("okx", venue, hedged=True) as exchange:
        await exchange.place_stop(short_stop(BTC, "2", "71000"))

    sent = venue.calls(ALGO, "POST")[0].json()
    # A protective buy closes the short leg; OKX takes no reduceOnly with a posSide.
    assert (sent["side"], sent["posSide"], sent["slTriggerPx"]) == ("buy", "short", "71000")
    assert "reduceOnly" not in sent


async def test_place_stop_when_okx_reply_lost_then_outcome_unknown_and_sent_once(
    venue: LoopbackVenue,
) -> None:
    serve_okx(venue)
    venue.reply("POST", ALGO, PROXY_502, 502)
    async with adapter_for("okx", venue) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.place_stop(long_stop(BTC, "2", "55000"))

    assert len(venue.calls(ALGO, "POST")) == 1


async def test_fetch_stops_when_okx_then_pending_conditional_algos(venue: LoopbackVenue) -> None:
    serve_okx(venue)
    take_profit = okx_algo(
        algoId="681096944655273985", slTriggerPx="", slOrdPx="", tpTriggerPx="70000", tpOrdPx="-1"
    )
    venue.reply("GET", PENDING, okx_reply(okx_algo(), take_profit))
    async with adapter_for("okx", venue) as exchange:
        stops = await exchange.fetch_stops([BTC])

    (call,) = venue.calls(PENDING, "GET")
    assert (call.query["instId"], call.query["ordType"]) == ("BTC-USDT-SWAP", "conditional")
    assert [(s.exchange_id, s.client_order_id, s.trigger_price, s.status) for s in stops] == [
        (ALGO_ID, CLIENT_ID, Decimal("55000"), StopStatus.OPEN)
    ]


async def test_fetch_stop_when_okx_live_then_open_asked_by_algo_client_id(
    venue: LoopbackVenue,
) -> None:
    serve_okx(venue, found=okx_algo())
    async with adapter_for("okx", venue) as exchange:
        stop = await exchange.fetch_stop(BTC, CLIENT_ID)

    (call,) = venue.calls(ALGO, "GET")
    assert call.query["algoClOrdId"] == CLIENT_ID
    assert stop is not None
    assert (stop.status, stop.amount) == (StopStatus.OPEN, Decimal("2"))


async def test_fetch_stop_when_okx_effective_then_fill_read_from_the_order_it_placed(
    venue: LoopbackVenue,
) -> None:
    effective = okx_algo(
        state="effective",
        ordId=SPAWNED_ID,
        ordIdList=[SPAWNED_ID],
        actualSz="2",
        actualPx="-1",
        actualSide="sl",
        triggerTime="1708690000100",
    )
    serve_okx(venue, found=effective)
    async with adapter_for("okx", venue) as exchange:
        stop = await exchange.fetch_stop(BTC, CLIENT_ID)

    assert venue.calls("/api/v5/trade/order", "GET")[0].query["ordId"] == SPAWNED_ID
    assert stop is not None
    assert (stop.status, stop.filled, stop.average_price, stop.fee) == (
        StopStatus.TRIGGERED,
        Decimal("2"),
        Decimal("54990.1"),
        Decimal("0.05499"),
    )


async def test_fetch_stop_when_okx_canceled_then_canceled(venue: LoopbackVenue) -> None:
    serve_okx(venue, found=okx_algo(state="canceled"))
    async with adapter_for("okx", venue) as exchange:
        stop = await exchange.fetch_stop(BTC, CLIENT_ID)

    assert stop is not None
    assert stop.status is StopStatus.CANCELED


async def test_fetch_stop_when_okx_does_not_know_it_then_none(venue: LoopbackVenue) -> None:
    serve_okx(venue)
    async with adapter_for("okx", venue) as exchange:
        assert await exchange.fetch_stop(BTC, CLIENT_ID) is None


async def test_cancel_stop_when_okx_resting_then_cancel_algos_by_algo_id(
    venue: LoopbackVenue,
) -> None:
    serve_okx(venue)
    venue.reply("POST", CANCEL_ALGOS, okx_reply({"algoId": ALGO_ID, "sCode": "0", "sMsg": ""}))
    async with adapter_for("okx", venue) as exchange:
        after = await exchange.cancel_stop(okx_resting())

    (call,) = venue.calls(CANCEL_ALGOS, "POST")
    assert call.json() == [{"instId": "BTC-USDT-SWAP", "algoId": ALGO_ID}]
    assert after.status is StopStatus.CANCELED


async def test_cancel_stop_when_okx_already_triggered_then_its_triggered_state(
    venue: LoopbackVenue,
) -> None:
    serve_okx(venue, found=okx_algo(state="effective", ordId=SPAWNED_ID))
    venue.reply(
        "POST",
        CANCEL_ALGOS,
        {
            "code": "1",
            "msg": "",
            "data": [
                {
                    "algoId": ALGO_ID,
                    "sCode": "51402",
                    "sMsg": "Cancellation failed as the order is already completed.",
                }
            ],
        },
    )
    async with adapter_for("okx", venue) as exchange:
        after = await exchange.cancel_stop(okx_resting())

    assert (after.status, after.filled) == (StopStatus.TRIGGERED, Decimal("2"))


# -- Hyperliquid: trigger orders ----------------------------------------------------------------

OID = 91490942108


def hl_trigger(**changes: Any) -> dict[str, Any]:
    """A resting stop-market trigger order as frontendOpenOrders lists it."""
    order: dict[str, Any] = {
        "coin": "SOL",
        "side": "A",
        "limitPx": "114.48",
        "sz": "0.5",
        "oid": OID,
        "timestamp": 1733000000000,
        "triggerCondition": "Price below 120.5",
        "isTrigger": True,
        "triggerPx": "120.5",
        "children": [],
        "isPositionTpsl": False,
        "reduceOnly": True,
        "orderType": "Stop Market",
        "origSz": "0.5",
        "tif": None,
        "cloid": cloid(CLIENT_ID),
    }
    order.update(changes)
    return order


def hl_status(status: str, **changes: Any) -> dict[str, Any]:
    """orderStatus by cloid for that order in `status`."""
    return {
        "status": "order",
        "order": {
            "order": hl_trigger(**changes),
            "status": status,
            "statusTimestamp": 1733000500000,
        },
    }


def serve_hl(
    venue: LoopbackVenue, *, cancel: Any = "success", place: Any = "waitingForTrigger"
) -> dict[str, Any]:
    info = serve_hyperliquid(venue)
    info["orderStatus"] = hl_status("open")

    def act(request: RecordedRequest) -> Reply:
        kind = request.json()["action"]["type"]
        statuses = [place] if kind == "order" else [cancel]
        return Reply(
            200,
            json.dumps(
                {"status": "ok", "response": {"type": kind, "data": {"statuses": statuses}}}
            ),
        )

    venue.respond("POST", "/exchange", act)
    return info


def hl_actions(venue: LoopbackVenue) -> list[dict[str, Any]]:
    return [call.json()["action"] for call in venue.calls("/exchange", "POST")]


def hl_info(venue: LoopbackVenue, kind: str) -> list[dict[str, Any]]:
    bodies = [call.json() for call in venue.calls("/info", "POST")]
    return [body for body in bodies if body.get("type") == kind]


def hl_resting() -> StopOrder:
    return StopOrder(
        client_order_id=CLIENT_ID,
        exchange_id=str(OID),
        symbol=SOL,
        side=OrderSide.SELL,
        amount=Decimal("0.5"),
        trigger_price=Decimal("120.5"),
        status=StopStatus.OPEN,
        position_side=Side.LONG,
    )


async def test_place_stop_when_hyperliquid_long_then_reduce_only_sl_trigger_with_cloid(
    venue: LoopbackVenue,
) -> None:
    serve_hl(venue)
    async with hyperliquid_adapter(venue) as exchange:
        stop = await exchange.place_stop(long_stop(SOL, "0.5", "120.5"))

    (action,) = hl_actions(venue)
    assert (action["type"], action["grouping"]) == ("order", "na")
    (order,) = action["orders"]
    assert (order["a"], order["b"], order["s"], order["r"]) == (5, False, "0.5", True)
    assert order["t"] == {"trigger": {"isMarket": True, "triggerPx": "120.5", "tpsl": "sl"}}
    assert order["c"] == cloid(CLIENT_ID)
    # The triggered market order's worst price: the trigger less the 5% slippage.
    assert Decimal(order["p"]) == Decimal("114.48")
    assert "builder" not in action
    # "waitingForTrigger" carries no order id: it is read by the cloid.
    (status,) = hl_info(venue, "orderStatus")
    assert status["oid"] == cloid(CLIENT_ID)
    assert (stop.exchange_id, stop.client_order_id, stop.status) == (
        str(OID),
        CLIENT_ID,
        StopStatus.OPEN,
    )
    assert (stop.amount, stop.trigger_price, stop.side) == (
        Decimal("0.5"),
        Decimal("120.5"),
        OrderSide.SELL,
    )


async def test_place_stop_when_hyperliquid_short_then_buy_trigger(venue: LoopbackVenue) -> None:
    info = serve_hl(venue)
    info["orderStatus"] = hl_status("open", side="B", triggerPx="150.2")
    async with hyperliquid_adapter(venue) as exchange:
        stop = await exchange.place_stop(short_stop(SOL, "0.5", "150.2"))

    (order,) = hl_actions(venue)[0]["orders"]
    assert (order["b"], order["r"]) == (True, True)
    assert order["t"]["trigger"]["triggerPx"] == "150.2"
    assert Decimal(order["p"]) > Decimal("150.2")
    assert stop.side is OrderSide.BUY


async def test_place_stop_when_hyperliquid_reply_lost_then_outcome_unknown_and_sent_once(
    venue: LoopbackVenue,
) -> None:
    serve_hl(venue)
    venue.reply("POST", "/exchange", PROXY_502, 502)
    async with hyperliquid_adapter(venue) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.place_stop(long_stop(SOL, "0.5", "120.5"))

    assert len(venue.calls("/exchange", "POST")) == 1


async def test_fetch_stops_when_hyperliquid_then_one_frontend_open_orders_read(
    venue: LoopbackVenue,
) -> None:
    info = serve_hl(venue)
    limit_order = hl_trigger(
        oid=91490942109, isTrigger=False, orderType="Limit", triggerPx="0.0", cloid=None
    )
    other_coin = hl_trigger(oid=91490942110, coin="ETH")
    info["frontendOpenOrders"] = [hl_trigger(), limit_order, other_coin]
    async with hyperliquid_adapter(venue) as exchange:
        stops = await exchange.fetch_stops([SOL])

    assert len(hl_info(venue, "frontendOpenOrders")) == 1
    # Listed with the venue's cloid: fetch_stop and cancel_stop take it as it is.
    assert [(s.exchange_id, s.client_order_id, s.trigger_price) for s in stops] == [
        (str(OID), cloid(CLIENT_ID), Decimal("120.5"))
    ]


@pytest.mark.parametrize(
    ("status", "expected", "filled"),
    [
        ("open", StopStatus.OPEN, "0"),
        ("filled", StopStatus.TRIGGERED, "0.5"),
        ("canceled", StopStatus.CANCELED, "0"),
        ("reduceOnlyCanceled", StopStatus.CANCELED, "0"),
    ],
)
async def test_fetch_stop_when_hyperliquid_then_status_by_cloid(
    venue: LoopbackVenue, status: str, expected: StopStatus, filled: str
) -> None:
    info = serve_hl(venue)
    info["orderStatus"] = hl_status(status, sz="0.0" if status == "filled" else "0.5")
    async with hyperliquid_adapter(venue) as exchange:
        stop = await exchange.fetch_stop(SOL, CLIENT_ID)

    assert hl_info(venue, "orderStatus")[0]["oid"] == cloid(CLIENT_ID)
    assert stop is not None
    assert (stop.status, stop.filled, stop.client_order_id) == (
        expected,
        Decimal(filled),
        CLIENT_ID,
    )


async def test_fetch_stop_when_hyperliquid_unknown_then_none(venue: LoopbackVenue) -> None:
    info = serve_hl(venue)
    info["orderStatus"] = {"status": "unknownOid"}
    async with hyperliquid_adapter(venue) as exchange:
        assert await exchange.fetch_stop(SOL, CLIENT_ID) is None


async def test_cancel_stop_when_hyperliquid_resting_then_cancel_by_oid(
    venue: LoopbackVenue,
) -> None:
    serve_hl(venue)
    async with hyperliquid_adapter(venue) as exchange:
        after = await exchange.cancel_stop(hl_resting())

    (action,) = hl_actions(venue)
    assert action == {"type": "cancel", "cancels": [{"a": 5, "o": OID}]}
    assert after.status is StopStatus.CANCELED


async def test_cancel_stop_when_hyperliquid_already_filled_then_its_triggered_state(
    venue: LoopbackVenue,
) -> None:
    gone = {"error": "Order was never placed, already canceled, or filled. asset=5"}
    info = serve_hl(venue, cancel=gone)
    info["orderStatus"] = hl_status("filled", sz="0.0")
    async with hyperliquid_adapter(venue) as exchange:
        after = await exchange.cancel_stop(hl_resting())

    assert (after.status, after.filled) == (StopStatus.TRIGGERED, Decimal("0.5"))
