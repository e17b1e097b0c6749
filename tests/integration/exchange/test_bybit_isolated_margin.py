"""Bybit isolated margin: what real ccxt sends to POST /v5/position/add-margin for
`CcxtExchange.adjust_margin`, recorded by the loopback venue.

ccxt 4.5 has no add_margin / reduce_margin for Bybit and its static fixtures record no
call to this endpoint; the request and reply below follow Bybit's V5 documentation
(category, symbol, margin as a signed string, positionIdx; the reply is the position
afterwards).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.models import MarginMode, Side
from bot.exchange.port import InsufficientFunds, InvalidOrder, OperationalError
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply
from tests.integration.exchange.venues import (
    TEST_CREDENTIALS,
    adapter_for,
    recorded_loopback,
    serve,
)

BTC = "BTC/USDT:USDT"
ADD_MARGIN = "/v5/position/add-margin"
INSTRUMENTS = "GET /v5/market/instruments-info"


def btcusdt_listing() -> dict[str, Any]:
    """The loopback's linear instruments (LTCUSDT) plus BTCUSDT, with Bybit's filters."""
    listing: dict[str, Any] = copy.deepcopy(recorded_loopback("bybit", INSTRUMENTS))
    ltc = listing["result"]["list"][0]
    btc = {
        **copy.deepcopy(ltc),
        "symbol": "BTCUSDT",
        "baseCoin": "BTC",
        "launchTime": "1584230400000",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": "0.001",
            "qtyStep": "0.001",
            "postOnlyMaxOrderQty": "1190.000",
            "maxMktOrderQty": "119.000",
            "minNotionalValue": "5",
        },
    }
    listing["result"]["list"].append(btc)
    return listing


def position_after(body: dict[str, Any]) -> dict[str, Any]:
    """Bybit's reply to add-margin: retCode 0 and the isolated position afterwards."""
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {
            "category": "linear",
            "symbol": body["symbol"],
            "positionIdx": body["positionIdx"],
            "riskId": 1,
            "riskLimitValue": "2000000",
            "size": "0.1",
            "avgPrice": "60000",
            "liqPrice": "54300.5",
            "bustPrice": "54000",
            "markPrice": "60100",
            "positionValue": "6000",
            "leverage": "10",
            "autoAddMargin": 0,
            "positionStatus": "Normal",
            "positionIM": str(Decimal("600") + Decimal(body["margin"])),
            "positionMM": "30.6",
            "takeProfit": "0",
            "stopLoss": "0",
            "trailingStop": "0",
            "unrealisedPnl": "10",
            "cumRealisedPnl": "-3.3",
            "createdTime": "1699948800031",
            "updatedTime": "1699976600200",
        },
        "retExtInfo": {},
        "time": 1699976600200,
    }


def serve_isolated(venue: LoopbackVenue) -> None:
    """The bybit loopback account, listing BTCUSDT and answering add-margin."""
    serve(venue, "bybit")
    listing = btcusdt_listing()
    prelaunch = {**listing, "result": {"category": "linear", "list": []}}

    def instruments(request: RecordedRequest) -> Reply:
        return Reply(200, prelaunch if request.query.get("status") == "PreLaunch" else listing)

    venue.respond("GET", "/v5/market/instruments-info", instruments)
    venue.respond("POST", ADD_MARGIN, lambda request: Reply(200, position_after(request.json())))


def refusal(code: int, message: str) -> dict[str, Any]:
    """How Bybit refuses: HTTP 200 with a non-zero retCode."""
    return {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": 1}


def expected_signature(call: RecordedRequest) -> str:
    """Bybit V5's HMAC-SHA256 over timestamp + key + recv window + JSON body."""
    headers = call.headers
    payload = (
        headers["X-BAPI-TIMESTAMP"]
        + TEST_CREDENTIALS["bybit"]["api_key"]
        + headers["X-BAPI-RECV-WINDOW"]
        + call.body
    )
    secret = TEST_CREDENTIALS["bybit"]["secret"].encode()
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


async def test_adjust_margin_when_bybit_add_then_signed_post_to_add_margin(
    venue: LoopbackVenue,
) -> None:
    serve_isolated(venue)
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        result = await exchange.adjust_margin(BTC, Side.LONG, Decimal("12.5"), add=True)

    assert venue.unmatched == []
    (call,) = venue.calls(ADD_MARGIN)
    assert call.method == "POST"
    assert call.json() == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "margin": "12.5",
        "positionIdx": 0,
    }
    assert call.headers["X-BAPI-API-KEY"] == TEST_CREDENTIALS["bybit"]["api_key"]
    assert call.headers["X-BAPI-TIMESTAMP"].isdigit()
    assert call.headers["X-BAPI-RECV-WINDOW"].isdigit()
    assert call.headers["X-BAPI-SIGN"] == expected_signature(call)
    assert call.headers["Content-Type"].startswith("application/json")
    assert (result.symbol, result.side, result.amount, result.add) == (
        BTC,
        Side.LONG,
        Decimal("12.5"),
        True,
    )


async def test_adjust_margin_when_bybit_reduce_then_margin_is_negative(
    venue: LoopbackVenue,
) -> None:
    serve_isolated(venue)
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        result = await exchange.adjust_margin(BTC, Side.LONG, Decimal("5"), add=False)

    (call,) = venue.calls(ADD_MARGIN, "POST")
    assert call.json() == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "margin": "-5",
        "positionIdx": 0,
    }
    assert call.headers["X-BAPI-SIGN"] == expected_signature(call)
    assert (result.amount, result.add) == (Decimal("5"), False)


@pytest.mark.parametrize(
    ("amount", "add", "sent", "reported"),
    [
        # Bybit takes 4 decimal places: never round an amount up.
        ("12.34567", True, "12.3456", "12.3456"),
        ("7.99999", False, "-7.9999", "7.9999"),
        # No exponent, no trailing zeros.
        ("100.0000", True, "100", "100"),
        ("0.0001", False, "-0.0001", "0.0001"),
    ],
)
async def test_adjust_margin_when_bybit_amount_has_more_places_then_rounded_down(
    venue: LoopbackVenue, amount: str, add: bool, sent: str, reported: str
) -> None:
    serve_isolated(venue)
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        result = await exchange.adjust_margin(BTC, Side.LONG, Decimal(amount), add=add)

    (call,) = venue.calls(ADD_MARGIN, "POST")
    assert call.json()["margin"] == sent
    assert result.amount == Decimal(reported)


async def test_adjust_margin_when_bybit_amount_below_step_then_invalid_order_and_nothing_sent(
    venue: LoopbackVenue,
) -> None:
    serve_isolated(venue)
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        with pytest.raises(InvalidOrder, match="bybit"):
            await exchange.adjust_margin(BTC, Side.LONG, Decimal("0.00009"), add=True)

    assert venue.calls(ADD_MARGIN) == []


@pytest.mark.parametrize(
    ("side", "add", "position_idx", "margin"),
    [
        (Side.LONG, True, 1, "3"),
        (Side.LONG, False, 1, "-3"),
        (Side.SHORT, True, 2, "3"),
        (Side.SHORT, False, 2, "-3"),
    ],
)
async def test_adjust_margin_when_bybit_hedge_mode_then_position_idx_names_the_leg(
    venue: LoopbackVenue, side: Side, add: bool, position_idx: int, margin: str
) -> None:
    serve_isolated(venue)
    async with adapter_for(
        "bybit", venue, margin_mode=MarginMode.ISOLATED, hedged=True
    ) as exchange:
        await exchange.adjust_margin(BTC, side, Decimal("3"), add=add)

    (call,) = venue.calls(ADD_MARGIN, "POST")
    assert call.json() == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "margin": margin,
        "positionIdx": position_idx,
    }


@pytest.mark.parametrize(("side", "position_idx"), [(Side.LONG, 1), (Side.SHORT, 2)])
async def test_adjust_margin_when_bybit_hedged_per_call_then_position_idx_names_the_leg(
    venue: LoopbackVenue, side: Side, position_idx: int
) -> None:
    serve_isolated(venue)
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        await exchange.adjust_margin(BTC, side, Decimal("3"), add=True, hedged=True)

    (call,) = venue.calls(ADD_MARGIN, "POST")
    assert call.json()["positionIdx"] == position_idx


async def test_adjust_margin_when_bybit_one_way_short_then_position_idx_0(
    venue: LoopbackVenue,
) -> None:
    serve_isolated(venue)
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        await exchange.adjust_margin(BTC, Side.SHORT, Decimal("3"), add=True)

    (call,) = venue.calls(ADD_MARGIN, "POST")
    assert call.json()["positionIdx"] == 0


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (110014, "Available balance not enough to add margin"),
        (110004, "Insufficient wallet balance"),
    ],
)
async def test_adjust_margin_when_bybit_refuses_for_balance_then_insufficient_funds(
    venue: LoopbackVenue, code: int, message: str
) -> None:
    serve_isolated(venue)
    venue.reply("POST", ADD_MARGIN, refusal(code, message))
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        with pytest.raises(InsufficientFunds, match=str(code)) as raised:
            await exchange.adjust_margin(BTC, Side.LONG, Decimal("12.5"), add=True)

    # A refusal is final: not sent again.
    assert len(venue.calls(ADD_MARGIN, "POST")) == 1
    secrets = TEST_CREDENTIALS["bybit"].values()
    assert not any(secret in str(raised.value) for secret in secrets)


async def test_adjust_margin_when_bybit_position_is_cross_then_operational_error(
    venue: LoopbackVenue,
) -> None:
    """110015 is ccxt's BadRequest, which the port has no narrower error for."""
    serve_isolated(venue)
    venue.reply("POST", ADD_MARGIN, refusal(110015, "the position is in cross_margin"))
    async with adapter_for("bybit", venue) as exchange:
        with pytest.raises(OperationalError, match="110015"):
            await exchange.adjust_margin(BTC, Side.LONG, Decimal("12.5"), add=True)

    assert len(venue.calls(ADD_MARGIN, "POST")) == 1


async def test_snapshot_when_bybit_then_margin_can_be_adjusted(venue: LoopbackVenue) -> None:
    serve(venue, "bybit")
    async with adapter_for("bybit", venue, margin_mode=MarginMode.ISOLATED) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert venue.unmatched == []
    assert snapshot.can_adjust_margin is True
    # Reading the snapshot moves no margin.
    assert venue.calls(ADD_MARGIN) == []
