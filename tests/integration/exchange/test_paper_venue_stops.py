"""Stop orders on the paper venue through real ccxt binanceusdm: the algo-order endpoints
ccxt 4.5 uses for Binance conditional orders (place, list, look up, cancel), a stop that
fires when the replay moves the mark past it, and a lost placement reply."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt
import pytest

from bot.clock import utc_now
from bot.domain.stops import StopStatus
from tests.integration.exchange.paper_venue_support import KEYS, RunningVenue, running_venue

BTC = "BTC/USDT:USDT"
# The built-in feed's first close is 40415; the second and third bars reach 40334.43 and
# 40258.49, so a stop at 40300 rests at first and fires on the third bar.
TRIGGER = 40300
HOUR = timedelta(hours=1)


class Clock:
    """Wall time plus an offset the test moves (one bar of the replay per hour)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset


@asynccontextmanager
async def binanceusdm(url: str) -> AsyncIterator[Any]:
    """Real ccxt, every Binance API root pointed at the paper venue."""
    instance = ccxt.binanceusdm(
        {
            "apiKey": KEYS["api_key"],
            "secret": KEYS["secret"],
            "enableRateLimit": False,
            # As the bot's Binance profile: the venue serves no wallet or margin lists.
            "options": {"fetchCurrencies": False, "fetchMargins": False},
        }
    )
    instance.urls["api"] = {
        key: url + "/" + value.split("://", 1)[1].partition("/")[2]
        for key, value in instance.urls["api"].items()
        if isinstance(value, str)
    }
    try:
        await instance.load_markets()
        yield instance
    finally:
        await instance.close()


async def place(exchange: Any, client_id: str, trigger: float = TRIGGER) -> Any:
    return await exchange.create_order(
        BTC,
        "market",
        "sell",
        0.1,
        None,
        {
            "triggerPrice": trigger,
            "reduceOnly": True,
            "workingType": "MARK_PRICE",
            "clientOrderId": client_id,
        },
    )


TRIGGERED: dict[str, Any] = {"trigger": True}


@asynccontextmanager
async def venue_and_ccxt(
    tmp_path: Path, clock: Callable[[], datetime], faults: str = ""
) -> AsyncIterator[tuple[RunningVenue, Any]]:
    async with (
        running_venue(tmp_path / "venue.json", faults=faults, clock=clock) as running,
        binanceusdm(running.url) as exchange,
    ):
        yield running, exchange


async def test_paper_venue_when_ccxt_places_lists_finds_and_cancels_a_stop_then_binance_shapes(
    tmp_path: Path,
) -> None:
    async with venue_and_ccxt(tmp_path, Clock()) as (running, exchange):
        placed = await place(exchange, "bs-1")
        other = await place(exchange, "bs-2", trigger=40000)

        listed = await exchange.fetch_open_orders(BTC, None, None, TRIGGERED)
        by_id = await exchange.fetch_order(placed["id"], BTC, TRIGGERED)
        by_client = await exchange.fetch_order(None, BTC, {**TRIGGERED, "clientOrderId": "bs-1"})
        await exchange.cancel_order(other["id"], BTC, TRIGGERED)
        canceled = await exchange.fetch_order(other["id"], BTC, TRIGGERED)
        remaining = await exchange.fetch_open_orders(BTC, None, None, TRIGGERED)

    assert placed["clientOrderId"] == "bs-1"
    assert placed["status"] == "open"
    assert placed["triggerPrice"] == TRIGGER
    assert placed["amount"] == 0.1
    assert placed["reduceOnly"] is True
    assert placed["info"]["workingType"] == "MARK_PRICE"
    assert placed["info"]["algoStatus"] == "NEW"
    assert [o["id"] for o in listed] == [placed["id"], other["id"]]
    assert by_id["clientOrderId"] == by_client["clientOrderId"] == "bs-1"
    assert by_id["info"]["actualOrderId"] == ""
    assert canceled["status"] == "canceled"
    assert [o["id"] for o in remaining] == [placed["id"]]
    assert [s["client_id"] for s in running.book.record.stops] == ["bs-1", "bs-2"]


async def test_paper_venue_when_the_mark_moves_past_a_stop_then_it_fills_reduce_only(
    tmp_path: Path,
) -> None:
    clock = Clock()
    async with venue_and_ccxt(tmp_path, clock) as (running, exchange):
        before = (await running.book.snapshot()).positions[0].contracts
        placed = await place(exchange, "bs-1")
        clock.offset = 2 * HOUR
        # ccxt learns the server's clock, as adjustForTimeDifference would.
        await exchange.load_time_difference()

        fired = await exchange.fetch_order(placed["id"], BTC, TRIGGERED)
        spawned = await exchange.fetch_order(fired["info"]["actualOrderId"], BTC)
        listed = await exchange.fetch_open_orders(BTC, None, None, TRIGGERED)
        with pytest.raises(ccxt.OrderNotFound):
            await exchange.cancel_order(placed["id"], BTC, TRIGGERED)
        after = (await running.book.snapshot()).positions[0].contracts

    price = Decimal(TRIGGER) * (1 - Decimal("0.0005"))
    assert fired["status"] == "closed"
    assert fired["info"]["algoStatus"] == "FINISHED"
    assert Decimal(fired["info"]["actualPrice"]) == price
    assert spawned["status"] == "closed"
    assert spawned["side"] == "sell"
    assert spawned["filled"] == 0.1
    assert spawned["reduceOnly"] is True
    assert Decimal(str(spawned["average"])) == price
    assert listed == []
    assert after == before - Decimal("0.1")
    stop = await running.book.paper.fetch_stop(BTC, "bs-1")
    assert stop is not None and stop.status is StopStatus.TRIGGERED
    # The record accounts for the contracts the stop took out of the position.
    (entry,) = running.book.record.stops
    assert (entry["status"], entry["filled"]) == ("triggered", "0.1")
    assert entry["order_id"] == fired["info"]["actualOrderId"]
    assert entry["fired_at"] == fired["info"]["triggerTime"] > 0


async def test_paper_venue_when_a_stop_would_trigger_at_once_then_binance_minus_2021(
    tmp_path: Path,
) -> None:
    async with venue_and_ccxt(tmp_path, Clock()) as (running, exchange):
        # (ccxt maps -2021 per market type only on Binance's own hostnames.)
        with pytest.raises(ccxt.ExchangeError, match="-2021"):
            await place(exchange, "bs-1", trigger=41000)
        with pytest.raises(ccxt.OrderNotFound):
            await exchange.fetch_order(None, BTC, {**TRIGGERED, "clientOrderId": "bs-1"})

    assert running.book.record.stops == []


async def test_paper_venue_when_a_stop_reply_is_lost_then_the_stop_rests_and_is_found(
    tmp_path: Path,
) -> None:
    async with venue_and_ccxt(tmp_path, Clock(), faults="algo_order:lost=1") as (
        running,
        exchange,
    ):
        with pytest.raises(ccxt.NetworkError):
            await place(exchange, "bs-1")
        found = await exchange.fetch_order(None, BTC, {**TRIGGERED, "clientOrderId": "bs-1"})

    assert found["status"] == "open"
    assert running.book.record.faults["lost"] == 1
