"""ccxt errors become the port's errors at the border; retries are bounded; keys never leak."""

from __future__ import annotations

import logging
from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from bot.domain.models import OrderSide, Side
from bot.exchange.ccxt import RateLimited, RetryPolicy
from bot.exchange.ccxt.errors import retrying, translate, translated
from bot.exchange.port import (
    AuthenticationError,
    CapabilityMissing,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OperationalError,
    OrderRequest,
    TemporaryError,
    UnknownSymbol,
)
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import CLIENT_ID, adapter_for, serve, settings_for

BTC = "BTC/USDT:USDT"
KEY = settings_for("binanceusdm").credentials["api_key"]
SELL = OrderRequest(BTC, OrderSide.SELL, Decimal("0.003"), True, Side.LONG, CLIENT_ID)


@pytest.mark.parametrize(
    ("ccxt_error", "port_error"),
    [
        (ccxt.DDoSProtection, RateLimited),
        (ccxt.RateLimitExceeded, RateLimited),
        (ccxt.RequestTimeout, TemporaryError),
        (ccxt.ExchangeNotAvailable, TemporaryError),
        (ccxt.OnMaintenance, TemporaryError),
        (ccxt.NetworkError, TemporaryError),
        (ccxt.InvalidNonce, TemporaryError),
        (ccxt.InsufficientFunds, InsufficientFunds),
        (ccxt.InvalidOrder, InvalidOrder),
        (ccxt.OrderNotFound, InvalidOrder),
        (ccxt.DuplicateOrderId, InvalidOrder),
        (ccxt.BadSymbol, UnknownSymbol),
        (ccxt.AuthenticationError, AuthenticationError),
        (ccxt.PermissionDenied, AuthenticationError),
        (ccxt.AccountSuspended, AuthenticationError),
        (ccxt.NotSupported, CapabilityMissing),
        (ccxt.BadRequest, OperationalError),
        (ccxt.ExchangeError, OperationalError),
        (ccxt.BaseError, OperationalError),
    ],
)
def test_translate_when_ccxt_error_then_port_error(
    ccxt_error: type[Exception], port_error: type[ExchangeError]
) -> None:
    translated = translate(ccxt_error("binanceusdm says no"))
    assert type(translated) is port_error
    assert "binanceusdm says no" in str(translated)


def test_translate_when_message_holds_credentials_then_they_are_scrubbed() -> None:
    error = ccxt.AuthenticationError(
        f'bybit {{"retMsg":"apiKey[{KEY}] secret[s3cr3t-value]"}} '
        "https://x/fapi/v1/order?timestamp=1&signature=8ca5378452bc"
    )
    message = str(translate(error, (KEY, "s3cr3t-value")))
    assert KEY not in message and "s3cr3t-value" not in message
    assert "8ca5378452bc" not in message
    assert "***" in message


def test_translated_when_ccxt_breaks_on_a_reply_then_operational_error_without_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(OperationalError, match="TypeError") as raised, translated((KEY,)):
        raise TypeError(f"string indices must be integers ({KEY})")
    assert KEY not in str(raised.value)
    assert "string indices" in caplog.text and KEY not in caplog.text


def test_retry_policy_when_delays_grow_then_they_are_capped() -> None:
    policy = RetryPolicy(attempts=5, first_delay=1.0, factor=2.0, max_delay=3.0)
    assert list(policy.delays()) == [1.0, 2.0, 3.0, 3.0]


async def test_retrying_when_always_temporary_then_gives_up_after_attempts() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise TemporaryError("down")

    with pytest.raises(TemporaryError):
        await retrying(flaky, RetryPolicy(attempts=4, first_delay=0.001))
    assert calls == 4


async def test_retrying_when_error_is_not_retryable_then_raised_at_once() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise InsufficientFunds("no")

    with pytest.raises(InsufficientFunds):
        await retrying(refused, RetryPolicy(attempts=4, first_delay=0.001))
    assert calls == 1


@pytest.mark.parametrize("status", [429, 418])
async def test_snapshot_when_binance_keeps_rate_limiting_then_rate_limited_after_3_tries(
    venue: LoopbackVenue, status: int
) -> None:
    serve(venue, "binanceusdm")
    body = {"code": -1003, "msg": "Too many requests; current limit is 2400 request weight."}
    venue.reply("GET", "/fapi/v3/account", body, status)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(RateLimited):
            await exchange.fetch_snapshot()

    assert len(venue.calls("/fapi/v3/account")) == 3


async def test_snapshot_when_venue_fails_once_with_5xx_then_retry_succeeds(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    venue.reply_once("GET", "/v5/position/list", "<html>502 Bad Gateway</html>", 502)
    async with adapter_for("bybit", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert len(snapshot.positions) == 1
    assert len(venue.calls("/v5/position/list")) == 2


async def test_create_order_when_5xx_then_temporary_error_and_not_sent_again(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("POST", "/fapi/v1/order", "<html>503 Service Unavailable</html>", 503)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(TemporaryError) as raised:
            await exchange.create_order(SELL)

    # It may have been executed: the service reconciles by client id, not by resending.
    assert not isinstance(raised.value, RateLimited)
    assert len(venue.calls("/fapi/v1/order", "POST")) == 1


async def test_create_order_when_rate_limited_once_then_sent_again_and_filled(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply_once("POST", "/fapi/v1/order", {"code": -1003, "msg": "Too many requests"}, 429)
    async with adapter_for("binanceusdm", venue) as exchange:
        result = await exchange.create_order(SELL)

    sent = [call.form()["newClientOrderId"] for call in venue.calls("/fapi/v1/order", "POST")]
    assert sent == [CLIENT_ID, CLIENT_ID]
    assert result.status == "closed"


async def test_snapshot_when_binance_rejects_the_key_then_authentication_error_untried(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    body = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
    venue.reply("GET", "/fapi/v3/account", body, 401)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(AuthenticationError):
            await exchange.fetch_snapshot()

    assert len(venue.calls("/fapi/v3/account")) == 1


async def test_create_order_when_binance_margin_insufficient_then_insufficient_funds(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("POST", "/fapi/v1/order", {"code": -2019, "msg": "Margin is insufficient."}, 400)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(InsufficientFunds):
            await exchange.create_order(SELL)


async def test_snapshot_when_bybit_echoes_the_key_in_an_auth_error_then_it_is_scrubbed(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    body = {
        "retCode": 10003,
        "retMsg": f"API key is invalid. apiKey[{KEY}]",
        "result": {},
        "retExtInfo": {},
        "time": 1699976566190,
    }
    venue.reply("GET", "/v5/account/wallet-balance", body)
    async with adapter_for("bybit", venue) as exchange:
        with pytest.raises(AuthenticationError) as raised:
            await exchange.fetch_snapshot()

    assert KEY not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is not None


async def test_transfer_when_okx_rate_limit_code_then_rate_limited_after_retries(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "okx")
    body = {"code": "50011", "msg": "Rate limit reached. Please refer to API documentation."}
    venue.reply("POST", "/api/v5/asset/transfer", body, 429)
    async with adapter_for("okx", venue) as exchange:
        with pytest.raises(RateLimited):
            await exchange.transfer("USDT", Decimal("1"), True, CLIENT_ID)

    assert len(venue.calls("/api/v5/asset/transfer")) == 3


async def test_create_order_when_symbol_unlisted_then_unknown_symbol_and_nothing_sent(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    order = OrderRequest("DOGE/USDT:USDT", OrderSide.SELL, Decimal("1"), True, Side.LONG, CLIENT_ID)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnknownSymbol):
            await exchange.create_order(order)

    assert venue.calls("/fapi/v1/order") == []


async def test_snapshot_when_watched_symbol_unlisted_then_unknown_symbol(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "okx")
    async with adapter_for("okx", venue, symbols=("DOGE/USDT:USDT",)) as exchange:
        with pytest.raises(UnknownSymbol, match="DOGE/USDT:USDT"):
            await exchange.fetch_snapshot()


async def test_ccxt_debug_log_when_requests_are_logged_then_keys_are_scrubbed(
    venue: LoopbackVenue, caplog: pytest.LogCaptureFixture
) -> None:
    serve(venue, "okx")
    settings = settings_for("okx", venue)
    with caplog.at_level(logging.DEBUG, logger="ccxt.base.exchange"):
        async with adapter_for("okx", venue) as exchange:
            await exchange.fetch_snapshot()

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "OK-ACCESS-KEY" in logged  # ccxt does log the signed headers...
    for secret in settings.secrets:
        assert secret not in logged  # ...with the key and the passphrase scrubbed
