"""The paper venue's replies have Binance's shapes: the same keys, with values of the
same JSON types, as real payloads recorded from Binance (ccxt's static fixtures, and
the authored loopback replies the ccxt tests already trust). Fetched raw through ccxt's
implicit API methods, so the HTTP, signing and routing are the real ones too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt
import pytest

from bot.domain.models import OrderSide, Side
from bot.exchange.port import OrderRequest
from tests.integration.exchange.paper_venue_support import (
    KEYS,
    RunningVenue,
    adapter_on,
    running_venue,
)
from tests.integration.exchange.venues import FIXTURES, recorded, recorded_loopback

ORDERS = json.loads((FIXTURES / "response" / "binance_futures_orders.json").read_text())


def _orders(method: str) -> Any:
    return ORDERS["methods"][method][0]["httpResponse"]


def shape_mismatches(ours: Any, theirs: Any, path: str = "$") -> list[str]:
    """Where `ours` differs from `theirs` in keys or JSON types (lists: every element of
    ours against the first of theirs)."""
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{path}: {type(ours).__name__}, Binance sends an object"]
        problems = [f"{path}.{key}: missing" for key in sorted(theirs.keys() - ours.keys())]
        extra = sorted(ours.keys() - theirs.keys())
        problems += [f"{path}.{key}: not sent by Binance" for key in extra]
        for key in sorted(ours.keys() & theirs.keys()):
            problems += shape_mismatches(ours[key], theirs[key], f"{path}.{key}")
        return problems
    if isinstance(theirs, list):
        if not isinstance(ours, list):
            return [f"{path}: {type(ours).__name__}, Binance sends a list"]
        if not theirs or not ours:
            return [] if ours == theirs or not theirs else [f"{path}: empty"]
        return [
            problem
            for i, item in enumerate(ours)
            for problem in shape_mismatches(item, _counterpart(item, theirs), f"{path}[{i}]")
        ]
    if type(ours) is not type(theirs):
        return [f"{path}: {type(ours).__name__}, Binance sends {type(theirs).__name__}"]
    return []


def _counterpart(item: Any, theirs: list[Any]) -> Any:
    """The reference element to hold `item` against: a filter against the same filter
    (exchangeInfo's filters differ by type), anything else against the first."""
    kind = item.get("filterType") if isinstance(item, dict) else None
    same = [t for t in theirs if isinstance(t, dict) and t.get("filterType") == kind]
    return same[0] if kind is not None and same else theirs[0]


@pytest.fixture
async def venue(tmp_path: Path) -> AsyncIterator[RunningVenue]:
    async with running_venue(tmp_path / "venue.json") as running:
        # One order and one transfer, so that every list has something in it.
        exchange = adapter_on(running.url)
        try:
            await exchange.transfer("USDT", Decimal(100), True, "shape-t")
            await exchange.create_order(
                OrderRequest(
                    symbol="BTC/USDT:USDT",
                    side=OrderSide.SELL,
                    amount=Decimal("0.01"),
                    reduce_only=True,
                    position_side=Side.LONG,
                    client_order_id="shape-1",
                )
            )
        finally:
            await exchange.close()
        yield running


def _raw(kind: str, url: str) -> Any:
    instance = getattr(ccxt, kind)(
        {"apiKey": KEYS["api_key"], "secret": KEYS["secret"], "enableRateLimit": False}
    )
    instance.urls["api"] = {
        key: url + "/" + value.split("://", 1)[1].partition("/")[2]
        for key, value in instance.urls["api"].items()
        if isinstance(value, str)
    }
    return instance


async def test_paper_venue_replies_when_compared_with_binance_then_same_keys_and_types(
    venue: RunningVenue,
) -> None:
    futures, spot = _raw("binanceusdm", venue.url), _raw("binance", venue.url)
    try:
        ours = {
            "account v3": await futures.fapiPrivateV3GetAccount(),
            "positionRisk v3": await futures.fapiPrivateV3GetPositionRisk(),
            "exchangeInfo": await futures.fapiPublicGetExchangeInfo(),
            "leverageBracket": await futures.fapiPrivateGetLeverageBracket(),
            "order query": await futures.fapiPrivateGetOrder(
                {"symbol": "BTCUSDT", "origClientOrderId": "shape-1"}
            ),
            "order create": await futures.fapiPrivatePostOrder(
                {
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": "MARKET",
                    "quantity": "0.01",
                    "reduceOnly": "true",
                    "newClientOrderId": "shape-2",
                }
            ),
            "spot account": await spot.privateGetAccount(),
            "transfer": await spot.sapiPostAssetTransfer(
                {"asset": "USDT", "amount": "5", "type": "UMFUTURE_MAIN"}
            ),
            "transfer history": await spot.sapiGetAssetTransfer({"type": "MAIN_UMFUTURE"}),
        }
    finally:
        await futures.close()
        await spot.close()
    binance = {
        "account v3": recorded("binance", "fetchPositions", 2)["httpResponse"],
        "positionRisk v3": recorded("binance", "fetchPositions", 0)["httpResponse"],
        "exchangeInfo": recorded_loopback("binanceusdm", "GET /fapi/v1/exchangeInfo"),
        "leverageBracket": recorded_loopback("binanceusdm", "GET /fapi/v1/leverageBracket"),
        "order query": _orders("fetchOpenOrder"),
        "order create": _orders("createOrders")[0],
        "spot account": recorded_loopback("binanceusdm", "GET /api/v3/account"),
        "transfer": recorded_loopback("binanceusdm", "POST /sapi/v1/asset/transfer"),
        "transfer history": _orders("fetchTransfers"),
    }
    for name, reply in ours.items():
        assert reply, f"{name}: empty reply"
        assert shape_mismatches(reply, binance[name]) == [], name


def test_shape_mismatches_when_a_key_or_type_differs_then_it_is_named() -> None:
    theirs = {"a": "1", "rows": [{"b": 1}]}
    assert shape_mismatches({"a": "1", "rows": [{"b": 2}]}, theirs) == []
    assert shape_mismatches({"a": 1, "rows": [{"b": 2, "c": 0}]}, theirs) == [
        "$.a: int, Binance sends str",
        "$.rows[0].c: not sent by Binance",
    ]
    assert shape_mismatches({"rows": []}, theirs) == ["$.a: missing", "$.rows: empty"]
