"""Writes whose reply is lost are `OutcomeUnknown` (never resent), reads are retried, and
transfers are looked up where the venue can say (issue 9 §2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest
from aiohttp import web

from bot.domain.models import OrderSide, Side
from bot.exchange.ccxt import CcxtExchange, RateLimited, profile_for
from bot.exchange.ccxt.errors import translate, translated
from bot.exchange.port import (
    CapabilityMissing,
    InsufficientFunds,
    InvalidOrder,
    OperationalError,
    OrderRequest,
    OutcomeUnknown,
    TemporaryError,
)
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply
from tests.integration.exchange.test_hyperliquid import hyperliquid_adapter, serve_hyperliquid
from tests.integration.exchange.venues import (
    CLIENT_ID,
    FAST_RETRY,
    adapter_for,
    quicken,
    serve,
    settings_for,
)

BTC = "BTC/USDT:USDT"
SELL = OrderRequest(BTC, OrderSide.SELL, Decimal("0.003"), True, Side.LONG, CLIENT_ID)
SENT_AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SENT_MS = int(SENT_AT.timestamp() * 1000)
ORDER = ("POST", "/fapi/v1/order")
TRANSFER = ("POST", "/sapi/v1/asset/transfer")


class FaultyVenue(LoopbackVenue):
    """The loopback venue, plus faults no canned reply can make: a reply that never comes
    (timeout), a connection dropped before the reply (reset), a body cut short."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[tuple[str, str], str] = {}

    async def start(self) -> None:
        @web.middleware
        async def inject(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            fault = self.faults.get((request.method, request.path))
            if fault is None:
                return await handler(request)
            self.requests.append(
                RecordedRequest(request.method, request.path, dict(request.query), {}, "")
            )
            if fault == "timeout":
                await asyncio.sleep(0.6)
            response = web.StreamResponse(headers={"Content-Length": "200"})
            await response.prepare(request)
            if fault == "cut":
                await response.write(b'{"orderId": 3377')
            assert request.transport is not None
            request.transport.close()
            return response

        app = web.Application(middlewares=[inject])
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyVenue]:
    server = FaultyVenue()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def impatient(exchange_id: str, venue: LoopbackVenue) -> CcxtExchange:
    """The adapter with ccxt's timeout at 300 ms (a lost reply should not take 10 s)."""
    settings = settings_for(exchange_id, venue)
    profile = profile_for(exchange_id)
    exchange = quicken(profile.build(settings))
    source = profile.build_source(settings)
    for instance in (exchange, source):
        if instance is not None:
            quicken(instance).timeout = 300
    return CcxtExchange(
        settings, profile, exchange=exchange, source_exchange=source, retry=FAST_RETRY
    )


# Replies that leave a write's outcome unknown: (status, body) from Binance or a proxy.
LOST: dict[str, tuple[int, Any]] = {
    "502 from a proxy": (502, "<html><body>502 Bad Gateway</body></html>"),
    "500 -1000 unknown error": (
        500,
        {"code": -1000, "msg": "An unknown error occured while processing the request."},
    ),
    "503 -1001 internal error": (
        503,
        {"code": -1001, "msg": "Internal error; unable to process your request."},
    ),
    "504 gateway timeout": (504, "<html>504 Gateway Time-out</html>"),
    "200 truncated": (200, '{"orderId": 3377, "symbol": "BTCUS'),
    "200 empty object": (200, {}),
    "200 empty body": (200, ""),
}


@pytest.mark.parametrize("case", list(LOST))
async def test_create_order_when_reply_lost_then_outcome_unknown_and_sent_once(
    venue: LoopbackVenue, case: str
) -> None:
    serve(venue, "binanceusdm")
    status, body = LOST[case]
    venue.reply(*ORDER, body, status)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.create_order(SELL)

    assert len(venue.calls(ORDER[1], ORDER[0])) == 1


@pytest.mark.parametrize("case", list(LOST))
async def test_transfer_when_reply_lost_then_outcome_unknown_and_sent_once(
    venue: LoopbackVenue, case: str
) -> None:
    serve(venue, "binanceusdm")
    status, body = LOST[case]
    venue.reply(*TRANSFER, body, status)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.transfer("USDT", Decimal("25"), True, CLIENT_ID)

    assert len(venue.calls(TRANSFER[1], TRANSFER[0])) == 1


@pytest.mark.parametrize("fault", ["timeout", "reset", "cut"])
async def test_write_when_connection_fails_mid_reply_then_outcome_unknown_and_sent_once(
    faulty: FaultyVenue, fault: str
) -> None:
    serve(faulty, "binanceusdm")
    faulty.faults[ORDER] = fault
    faulty.faults[TRANSFER] = fault
    async with impatient("binanceusdm", faulty) as exchange:
        with pytest.raises(OutcomeUnknown):
            await exchange.create_order(SELL)
        with pytest.raises(OutcomeUnknown):
            await exchange.transfer("USDT", Decimal("25"), True, CLIENT_ID)

    assert len(faulty.calls(ORDER[1], ORDER[0])) == 1
    assert len(faulty.calls(TRANSFER[1], TRANSFER[0])) == 1


@pytest.mark.parametrize(
    ("status", "body", "refusal"),
    [
        (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
         TemporaryError),
        (400, {"code": -2019, "msg": "Margin is insufficient."}, InsufficientFunds),
        (400, {"code": -2022, "msg": "ReduceOnly Order is rejected."}, InvalidOrder),
    ],
)  # fmt: skip
async def test_create_order_when_refused_before_acting_then_not_outcome_unknown(
    venue: LoopbackVenue, status: int, body: Any, refusal: type[Exception]
) -> None:
    serve(venue, "binanceusdm")
    venue.reply(*ORDER, body, status)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(refusal) as raised:
            await exchange.create_order(SELL)

    assert not isinstance(raised.value, OutcomeUnknown)
    assert len(venue.calls(ORDER[1], ORDER[0])) == 1


async def test_create_order_when_rate_limited_then_resent_not_unknown(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply(*ORDER, {"code": -1003, "msg": "Too many requests"}, 429)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(RateLimited):
            await exchange.create_order(SELL)

    assert len(venue.calls(ORDER[1], ORDER[0])) == 3


@pytest.mark.parametrize(
    ("status", "body"),
    [LOST["500 -1000 unknown error"], LOST["503 -1001 internal error"], LOST["502 from a proxy"]],
)
async def test_snapshot_when_read_reply_lost_once_then_retried_and_read(
    venue: LoopbackVenue, status: int, body: Any
) -> None:
    serve(venue, "binanceusdm")
    venue.reply_once("GET", "/fapi/v3/positionRisk", body, status)
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert snapshot.positions
    assert len(venue.calls("/fapi/v3/positionRisk")) == 2


@pytest.mark.parametrize("fault", ["timeout", "reset"])
async def test_snapshot_when_read_keeps_failing_then_temporary_error_after_bounded_tries(
    faulty: FaultyVenue, fault: str
) -> None:
    serve(faulty, "binanceusdm")
    faulty.faults[("GET", "/fapi/v3/positionRisk")] = fault
    async with impatient("binanceusdm", faulty) as exchange:
        with pytest.raises(TemporaryError) as raised:
            await exchange.fetch_snapshot()

    assert not isinstance(raised.value, OutcomeUnknown)
    assert len(faulty.calls("/fapi/v3/positionRisk")) == 3


@pytest.mark.parametrize(
    "error",
    [ccxt.OperationFailed("binanceusdm -1000"), ccxt.BadResponse("cut"), ccxt.RequestTimeout("t")],
)
def test_translate_when_reply_lost_then_unknown_for_writes_temporary_for_reads(
    error: Exception,
) -> None:
    assert type(translate(error, write=True)) is OutcomeUnknown
    assert type(translate(error)) is TemporaryError


def test_translated_when_ccxt_breaks_on_a_write_reply_then_outcome_unknown() -> None:
    with pytest.raises(OutcomeUnknown, match="TypeError"), translated(write=True):
        raise TypeError("string indices must be integers")
    with pytest.raises(OperationalError), translated():
        raise TypeError("string indices must be integers")


# -- looking transfers up -------------------------------------------------------------


def binance_history(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """GET /sapi/v1/asset/transfer, as Binance documents it."""
    return {"total": len(rows), "rows": rows}


async def test_fetch_transfer_when_binance_history_has_it_then_found_by_amount_and_time(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", "/sapi/v1/asset/transfer", binance_history([
        {"asset": "USDT", "amount": "25", "type": "MAIN_UMFUTURE", "status": "CONFIRMED",
         "tranId": 111, "timestamp": SENT_MS - 3_600_000},  # an older one, same amount
        {"asset": "USDT", "amount": "40", "type": "MAIN_UMFUTURE", "status": "CONFIRMED",
         "tranId": 222, "timestamp": SENT_MS + 400},
        {"asset": "USDT", "amount": "25.00000000", "type": "MAIN_UMFUTURE",
         "status": "CONFIRMED", "tranId": 333, "timestamp": SENT_MS + 900},
    ]))  # fmt: skip
    async with adapter_for("binanceusdm", venue) as exchange:
        found = await exchange.fetch_transfer(CLIENT_ID, "USDT", Decimal("25"), True, SENT_AT)

    assert found is not None
    assert (found.transfer_id, found.amount, found.into_derivatives) == ("333", 25, True)
    (call,) = venue.calls("/sapi/v1/asset/transfer", "GET")
    assert call.query["type"] == "MAIN_UMFUTURE"
    assert int(call.query["startTime"]) <= SENT_MS


async def test_fetch_transfer_when_binance_history_lacks_it_then_none(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", "/sapi/v1/asset/transfer", binance_history([
        {"asset": "USDT", "amount": "25", "type": "UMFUTURE_MAIN", "status": "FAILED",
         "tranId": 444, "timestamp": SENT_MS + 100},
    ]))  # fmt: skip
    async with adapter_for("binanceusdm", venue) as exchange:
        found = await exchange.fetch_transfer(CLIENT_ID, "USDT", Decimal("25"), False, SENT_AT)

    assert found is None
    (call,) = venue.calls("/sapi/v1/asset/transfer", "GET")
    assert call.query["type"] == "UMFUTURE_MAIN"


async def test_fetch_transfer_when_bybit_then_asked_by_the_derived_transfer_id(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    transfer_id = profile_for("bybit").transfer_params(CLIENT_ID)["transferId"]

    def listing(request: RecordedRequest) -> Reply:
        known = request.query.get("transferId") == transfer_id
        rows = [
            {"transferId": transfer_id, "coin": "USDT", "amount": "25",
             "fromAccountType": "FUND", "toAccountType": "UNIFIED",
             "timestamp": str(SENT_MS + 500), "status": "SUCCESS"}
        ] if known else []  # fmt: skip
        return Reply(200, {"retCode": 0, "retMsg": "success",
                           "result": {"list": rows, "nextPageCursor": ""},
                           "retExtInfo": {}, "time": SENT_MS})  # fmt: skip

    venue.respond("GET", "/v5/asset/transfer/query-inter-transfer-list", listing)
    async with adapter_for("bybit", venue) as exchange:
        found = await exchange.fetch_transfer(CLIENT_ID, "USDT", Decimal("25"), True, SENT_AT)
        missing = await exchange.fetch_transfer(
            "lb" + "f" * 28, "USDT", Decimal("25"), True, SENT_AT
        )

    assert found is not None and found.transfer_id == transfer_id
    assert missing is None


async def test_fetch_transfer_when_okx_then_asked_by_client_id(venue: LoopbackVenue) -> None:
    serve(venue, "okx")

    def state(request: RecordedRequest) -> Reply:
        known = request.query.get("clientId") == CLIENT_ID
        rows = [
            {"amt": "25", "ccy": "USDT", "clientId": CLIENT_ID, "from": "6", "to": "18",
             "instId": "", "state": "success", "subAcct": "", "toInstId": "",
             "transId": "754147", "type": "0"}
        ] if known else []  # fmt: skip
        return Reply(200, {"code": "0", "msg": "", "data": rows})

    venue.respond("GET", "/api/v5/asset/transfer-state", state)
    async with adapter_for("okx", venue) as exchange:
        found = await exchange.fetch_transfer(CLIENT_ID, "USDT", Decimal("25"), True, SENT_AT)
        missing = await exchange.fetch_transfer(
            "lb" + "f" * 28, "USDT", Decimal("25"), True, SENT_AT
        )

    assert found is not None and (found.transfer_id, found.amount) == ("754147", 25)
    assert missing is None


async def test_fetch_transfer_when_hyperliquid_then_capability_missing(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        with pytest.raises(CapabilityMissing):
            await exchange.fetch_transfer(CLIENT_ID, "USDC", Decimal("25"), True, SENT_AT)
