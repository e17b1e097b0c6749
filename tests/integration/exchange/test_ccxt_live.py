"""Read-only checks against a real testnet / demo account. Opt-in: `pytest -m live`.

Set LEVBOT_LIVE_EXCHANGE (binanceusdm | bybit | okx), LEVBOT_LIVE_API_KEY,
LEVBOT_LIVE_SECRET (and LEVBOT_LIVE_PASSWORD for OKX); LEVBOT_LIVE_ENVIRONMENT defaults
to demo (testnet for Bybit). Nothing here places orders or moves funds.
"""

from __future__ import annotations

import os
import uuid
from typing import cast

import pytest

from bot.domain.models import ZERO
from bot.exchange.ccxt import CcxtExchange, CcxtSettings
from bot.exchange.ccxt.settings import Environment

pytestmark = pytest.mark.live

PAPER: dict[str, Environment] = {"binanceusdm": "demo", "bybit": "testnet", "okx": "demo"}


def live_settings() -> CcxtSettings:
    exchange_id = os.environ.get("LEVBOT_LIVE_EXCHANGE", "")
    key, secret = os.environ.get("LEVBOT_LIVE_API_KEY"), os.environ.get("LEVBOT_LIVE_SECRET")
    if exchange_id not in PAPER or not key or not secret:
        pytest.skip("set LEVBOT_LIVE_EXCHANGE, LEVBOT_LIVE_API_KEY and LEVBOT_LIVE_SECRET")
    environment = os.environ.get("LEVBOT_LIVE_ENVIRONMENT", PAPER[exchange_id])
    if environment == "live":
        pytest.skip("the live tests only run against testnet or demo accounts")
    return CcxtSettings(
        account="live-check",
        exchange_id=exchange_id,
        environment=cast(Environment, environment),
        credentials={
            "api_key": key,
            "secret": secret,
            "password": os.environ.get("LEVBOT_LIVE_PASSWORD", ""),
        },
        collateral_source="spot" if exchange_id == "binanceusdm" else "funding",
    )


async def test_live_snapshot_when_paper_account_then_consistent_picture() -> None:
    settings = live_settings()
    async with CcxtExchange(settings) as exchange:
        snapshot = await exchange.fetch_snapshot()
        again = await exchange.fetch_snapshot()

    assert snapshot.account == "live-check"
    assert snapshot.derivatives.total >= ZERO
    for position in snapshot.positions:
        assert position.contracts > ZERO
        rules = snapshot.markets[position.symbol]
        assert rules.amount_step is not None and rules.amount_step > ZERO
    assert again.taken_at >= snapshot.taken_at


async def test_live_fetch_order_when_client_id_never_used_then_none() -> None:
    settings = live_settings()
    symbol = "BTC/USDT:USDT"
    async with CcxtExchange(settings) as exchange:
        found = await exchange.fetch_order_by_client_id(symbol, "lb" + uuid.uuid4().hex[:28])

    assert found is None
