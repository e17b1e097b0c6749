"""Canned venues for the loopback server: real payloads from ccxt's static fixtures
(`tests/fixtures/ccxt/response/`) plus the few replies they do not record
(`tests/fixtures/ccxt/loopback/`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from bot.domain.models import MarginMode
from bot.exchange.ccxt import CcxtSettings
from bot.exchange.ccxt.settings import CollateralSource, Environment, ExchangeId
from tests.integration.exchange.loopback import LoopbackVenue

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ccxt"
CLIENT_ID = "lb0123456789abcdef0123456789ab"

# Which recorded exchange reply answers which endpoint: (ccxt method, index) per path.
RECORDED: dict[ExchangeId, dict[str, tuple[str, str, int]]] = {
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


def serve(venue: LoopbackVenue, exchange_id: ExchangeId) -> None:
    """Program `venue` to answer as the account in the fixtures of `exchange_id`."""
    authored = _load(FIXTURES / "loopback" / f"{exchange_id}.json")
    for key, body in authored["replies"].items():
        method, path = key.split(" ", 1)
        venue.reply(method, path, body, authored["status"].get(key, 200))
    for key, (exchange, method_name, index) in RECORDED[exchange_id].items():
        method, path = key.split(" ", 1)
        venue.reply(method, path, recorded(exchange, method_name, index)["httpResponse"])
    if exchange_id == "bybit":
        # New listings: none (ccxt asks for pre-launch markets separately).
        venue.reply_once("GET", "/v5/market/instruments-info", _bybit_instruments_page(exchange_id))


def _bybit_instruments_page(exchange_id: ExchangeId) -> Any:
    authored = _load(FIXTURES / "loopback" / f"{exchange_id}.json")
    return authored["replies"]["GET /v5/market/instruments-info"]


def settings_for(
    exchange_id: ExchangeId,
    venue: LoopbackVenue | None = None,
    *,
    environment: Environment = "live",
    collateral_source: CollateralSource | None = None,
    margin_mode: MarginMode = MarginMode.CROSS,
    hedged: bool = False,
    symbols: tuple[str, ...] = (),
) -> CcxtSettings:
    """Settings for a test account on the loopback venue, with fake keys."""
    source: CollateralSource = collateral_source or (
        "spot" if exchange_id == "binanceusdm" else "funding"
    )
    return CcxtSettings(
        account=f"test-{exchange_id}",
        exchange_id=exchange_id,
        environment=environment,
        api_key="test-api-key-0001",
        secret="test-secret-0002",
        password="test-passphrase-0003" if exchange_id == "okx" else None,
        margin_mode=margin_mode,
        collateral_source=source,
        api_base_url=venue.url if venue is not None else None,
        hedged=hedged,
        symbols=symbols,
    )
