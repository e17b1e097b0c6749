"""Canned venues for the loopback server: real payloads from ccxt's static fixtures
(`tests/fixtures/ccxt/response/`) plus the few replies they do not record
(`tests/fixtures/ccxt/loopback/`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from bot.domain.models import MarginMode
from bot.exchange.ccxt import CcxtExchange, CcxtSettings, RetryPolicy, profile_for
from bot.exchange.ccxt.settings import CollateralSource, Environment
from bot.exchange.port import RequestObserver
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ccxt"
CLIENT_ID = "lb0123456789abcdef0123456789ab"
# Retries that keep a test fast: three tries, 10 ms then 20 ms apart.
FAST_RETRY = RetryPolicy(attempts=3, first_delay=0.01, factor=2.0, max_delay=0.05)

# Fake keys, by the names each venue's profile declares.
TEST_CREDENTIALS: dict[str, dict[str, str]] = {
    "binanceusdm": {"api_key": "test-api-key-0001", "secret": "test-secret-0002"},
    "bybit": {"api_key": "test-api-key-0001", "secret": "test-secret-0002"},
    "okx": {
        "api_key": "test-api-key-0001",
        "secret": "test-secret-0002",
        "password": "test-passphrase-0003",
    },
    # A throwaway secp256k1 key (ccxt signs with it offline) and an address of the right shape.
    "hyperliquid": {
        "wallet_address": "0x" + "ab12" * 10,
        "private_key": "0x" + "11" * 32,
    },
}

# Which recorded exchange reply answers which endpoint: (ccxt method, index) per path.
RECORDED: dict[str, dict[str, tuple[str, str, int]]] = {
    "binanceusdm": {
        # The account endpoint (v3) and positionRisk (v3) of one multi-assets account.
        "GET /fapi/v3/account": ("binance", "fetchPositions", 2),
        "GET /fapi/v3/positionRisk": ("binance", "fetchPositions", 0),
    },
    "bybit": {
        "GET /v5/account/wallet-balance": ("bybit", "fetchBalance", 0),
        "GET /v5/position/list": ("bybit", "fetchPositions", 0),
        "POST /v5/order/create": ("bybit", "createOrder", 0),
    },
    "okx": {
        "GET /api/v5/account/positions": ("okx", "fetchPositions", 0),
        "GET /api/v5/asset/balances": ("okx", "fetchBalance", 0),
        "POST /api/v5/trade/batch-orders": ("okx", "createOrder", 0),
    },
}


@cache
def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def recorded(exchange: str, method: str, index: int = 0) -> Any:
    """What the venue sent for ccxt's `method` in ccxt's static fixtures."""
    return _load(FIXTURES / "response" / f"{exchange}.json")["methods"][method][index]


def recorded_request(exchange: str, method: str, description: str) -> dict[str, Any]:
    """The URL and body ccxt builds for `method`, from ccxt's static request fixtures."""
    entries = _load(FIXTURES / "request" / f"{exchange}.json")["methods"][method]
    return next(entry for entry in entries if entry["description"] == description)


def recorded_loopback(exchange_id: str, key: str) -> Any:
    """An authored loopback reply, e.g. ("okx", "GET /api/v5/public/instruments")."""
    return _load(FIXTURES / "loopback" / f"{exchange_id}.json")["replies"][key]


def serve(venue: LoopbackVenue, exchange_id: str) -> None:
    """Program `venue` to answer as the account in the fixtures of `exchange_id`."""
    authored = _load(FIXTURES / "loopback" / f"{exchange_id}.json")
    for key, body in authored["replies"].items():
        method, path = key.split(" ", 1)
        venue.reply(method, path, body, authored["status"].get(key, 200))
    for key, (exchange, method_name, index) in RECORDED[exchange_id].items():
        method, path = key.split(" ", 1)
        venue.reply(method, path, recorded(exchange, method_name, index)["httpResponse"])
    if exchange_id == "bybit":
        instruments = authored["replies"]["GET /v5/market/instruments-info"]
        # ccxt asks for pre-launch markets separately: there are none.
        prelaunch = {**instruments, "result": {"category": "linear", "list": []}}

        def listing(request: RecordedRequest) -> Reply:
            upcoming = request.query.get("status") == "PreLaunch"
            return Reply(200, prelaunch if upcoming else instruments)

        venue.respond("GET", "/v5/market/instruments-info", listing)


def settings_for(
    exchange_id: str,
    venue: LoopbackVenue | None = None,
    *,
    environment: Environment = "live",
    collateral_source: CollateralSource | None = None,
    margin_mode: MarginMode = MarginMode.CROSS,
    hedged: bool = False,
    symbols: tuple[str, ...] = (),
    max_mark_move: Decimal = Decimal("0.3"),
) -> CcxtSettings:
    """Settings for a test account on the loopback venue, with fake keys."""
    source: CollateralSource = collateral_source or (
        "spot" if exchange_id == "binanceusdm" else "funding"
    )
    return CcxtSettings(
        account=f"test-{exchange_id}",
        exchange_id=exchange_id,
        environment=environment,
        credentials=TEST_CREDENTIALS[exchange_id],
        margin_mode=margin_mode,
        collateral_source=source,
        api_base_url=venue.url if venue is not None else None,
        hedged=hedged,
        symbols=symbols,
        max_mark_move=max_mark_move,
    )


def quicken(instance: Any) -> Any:
    """No request throttle, no 250 ms pause on close (for TLS; loopback is plain HTTP)."""
    instance.enableRateLimit = False
    instance.timeout_on_exit = 0
    return instance


def adapter_for(
    exchange_id: str,
    venue: LoopbackVenue,
    *,
    retry: RetryPolicy = FAST_RETRY,
    clock: Callable[[], datetime] | None = None,
    observer: RequestObserver | None = None,
    **overrides: Any,
) -> CcxtExchange:
    """The adapter on the loopback venue, built by its profile as in production, but
    `quicken`ed (ccxt's throttle and close pause would only make the tests wait)."""
    settings = settings_for(exchange_id, venue, **overrides)
    profile = profile_for(exchange_id)
    exchange = profile.build(settings)
    source = profile.build_source(settings)
    for instance in (exchange, source):
        if instance is not None:
            quicken(instance)
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    if observer is not None:
        extra["observer"] = observer
    return CcxtExchange(
        settings, profile, exchange=exchange, source_exchange=source, retry=retry, **extra
    )
