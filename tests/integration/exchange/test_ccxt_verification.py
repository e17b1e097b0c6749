"""Replies that do not add up, through real ccxt over loopback HTTP (issue 9 §1, §4).

Each test starts from a real recorded reply and breaks it the way venues and proxies
do: a 200 whose body is cut off, `{}` or `[]`, a field missing, two views of the
account that disagree, a mark that jumps. A snapshot is only built from replies that
verify; the source wallet alone may be unknown.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from bot.exchange.port import UnverifiedData
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.test_hyperliquid import (
    CROSS_ACCOUNT,
    hyperliquid_adapter,
    serve_hyperliquid,
)
from tests.integration.exchange.venues import adapter_for, recorded, serve

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
ACCOUNT = "/fapi/v3/account"
POSITIONS = "/fapi/v3/positionRisk"
SPOT = "/api/v3/account"


def cut(body: Any) -> str:
    """`body` as JSON, cut off in the middle (a 200 whose connection dropped)."""
    text = json.dumps(body)
    return text[: len(text) // 2]


def binance_account() -> dict[str, Any]:
    reply: dict[str, Any] = copy.deepcopy(recorded("binance", "fetchPositions", 2)["httpResponse"])
    return reply


def binance_positions() -> list[dict[str, Any]]:
    reply: list[dict[str, Any]] = copy.deepcopy(
        recorded("binance", "fetchPositions", 0)["httpResponse"]
    )
    return reply


# -- Binance USDⓈ-M: the futures account and positions -------------------------------


async def test_snapshot_when_binance_account_is_empty_object_then_unverified(
    venue: LoopbackVenue,
) -> None:
    # Read as W = 0 with an open 607 USDT position: leverage ~1188, an emergency.
    serve(venue, "binanceusdm")
    venue.reply("GET", ACCOUNT, {})
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="balance"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_binance_account_is_truncated_then_unverified_not_a_crash(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", ACCOUNT, cut(binance_account()))
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData):
            await exchange.fetch_snapshot()


@pytest.mark.parametrize("body", [[], "TRUNCATED"], ids=["empty", "truncated"])
async def test_snapshot_when_binance_positions_empty_or_truncated_but_account_has_margin_then_unverified(  # noqa: E501
    venue: LoopbackVenue, body: Any
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", POSITIONS, cut(binance_positions()) if body == "TRUNCATED" else body)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="position"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_binance_margin_balance_disagrees_with_wallet_plus_upnl_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    account = binance_account()
    account["totalMarginBalance"] = "260.26840422"  # not 25.72610060 + 0.54230362
    venue.reply("GET", ACCOUNT, account)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="totalMarginBalance"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_binance_notional_disagrees_with_amount_times_mark_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    positions = binance_positions()
    positions[0]["notional"] = "6075.24166787"  # ten times 0.009 * 67502.685
    venue.reply("GET", POSITIONS, positions)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="notional"):
            await exchange.fetch_snapshot()


@pytest.mark.parametrize(
    ("field", "value"),
    [("positionAmt", "abc"), ("markPrice", "-67502.68"), ("entryPrice", "NaN")],
)
async def test_snapshot_when_binance_position_field_is_not_a_sane_number_then_unverified(
    venue: LoopbackVenue, field: str, value: str
) -> None:
    serve(venue, "binanceusdm")
    positions = binance_positions()
    positions[0][field] = value
    venue.reply("GET", POSITIONS, positions)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData):
            await exchange.fetch_snapshot()


async def test_snapshot_when_binance_wallet_balance_is_absurd_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    account = binance_account()
    usdt = next(row for row in account["assets"] if row["asset"] == "USDT")
    usdt["crossWalletBalance"] = "1e20"
    venue.reply("GET", ACCOUNT, account)
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="crossWalletBalance"):
            await exchange.fetch_snapshot()


# -- the source wallet: unknown, never zero, never the whole snapshot ----------------


@pytest.mark.parametrize(
    "body",
    ["TRUNCATED", {}, "NEGATIVE", "HUGE", "ERROR", "NO_BALANCES", "ROW_WITHOUT_ASSET"],
    ids=["truncated", "empty", "negative", "absurd", "http-500", "no-balances", "no-asset"],
)
async def test_snapshot_when_binance_spot_wallet_unreadable_then_source_unknown_not_zero(
    venue: LoopbackVenue, body: Any
) -> None:
    serve(venue, "binanceusdm")
    spot = copy.deepcopy(recorded_spot())
    if body == "TRUNCATED":
        venue.reply("GET", SPOT, cut(spot))
    elif body == "NEGATIVE":
        spot["balances"][1]["free"] = "-500.00000000"
        venue.reply("GET", SPOT, spot)
    elif body == "HUGE":
        spot["balances"][1]["free"] = "1e18"
        venue.reply("GET", SPOT, spot)
    elif body == "ERROR":
        venue.reply("GET", SPOT, {"code": -1000, "msg": "An unknown error occured"}, status=500)
    elif body == "NO_BALANCES":
        # Found by the chaos run: the account object without its balances list read as 0.
        del spot["balances"]
        venue.reply("GET", SPOT, spot)
    elif body == "ROW_WITHOUT_ASSET":
        del spot["balances"][1]["asset"]
        venue.reply("GET", SPOT, spot)
    else:
        venue.reply("GET", SPOT, body)
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert snapshot.source is None
    assert snapshot.source_unknown is True
    # The rest of the snapshot is the account's, as read.
    assert snapshot.derivatives.total == Decimal("3.72964781")
    assert len(snapshot.positions) == 1


async def test_snapshot_when_binance_spot_wallet_reads_then_source_known(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert snapshot.source is not None and snapshot.source.free == Decimal("500")
    assert snapshot.source_unknown is False


def recorded_spot() -> dict[str, Any]:
    from tests.integration.exchange.venues import recorded_loopback

    reply: dict[str, Any] = recorded_loopback("binanceusdm", "GET /api/v3/account")
    return reply


# -- a mark that jumps --------------------------------------------------------------
# Binance's steady snapshot is /fapi/v3/account alone, its mark |notional| / |amount|
# (0.009 BTC at 607.55548506: 67506.165); a mark that jumps past the bound there is
# believed only when positionRisk's own markPrice (a second read) confirms it.


def jumped_account(notional: str, upnl: str) -> dict[str, Any]:
    """The recorded account with its BTC leg at another notional (the totals still add up)."""
    account = binance_account()
    account["positions"][0].update(notional=notional, unrealizedProfit=upnl)
    return account


async def test_snapshot_when_mark_jumps_and_second_read_disagrees_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue, max_mark_move=Decimal("0.3")) as exchange:
        await exchange.fetch_snapshot()
        # The account says half the mark, positionRisk (every try) the old one.
        venue.reply("GET", ACCOUNT, jumped_account("303.77774253", "-303.23535747"))
        with pytest.raises(UnverifiedData, match="mark"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_mark_jumps_and_second_read_confirms_then_accepted(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue, max_mark_move=Decimal("0.3")) as exchange:
        await exchange.fetch_snapshot()
        jumped = binance_positions()
        jumped[0].update(markPrice="33751.34259929", notional="303.76208339")
        venue.reply("GET", POSITIONS, jumped)
        venue.reply("GET", ACCOUNT, jumped_account("303.76208339", "-303.25101661"))
        venue.forget()
        snapshot = await exchange.fetch_snapshot(include_source=False)

    assert snapshot.positions[0].mark_price == Decimal("33751.34259929")
    # The account read, and positionRisk read to confirm the move.
    assert [r.path for r in venue.requests] == [ACCOUNT, POSITIONS]


async def test_snapshot_when_mark_moves_within_bound_then_no_second_read(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue, max_mark_move=Decimal("0.3")) as exchange:
        await exchange.fetch_snapshot()
        # 0.009 at 60000: notional 540, uPnL 0.009 * (60000 - 67445.9) = -67.0131.
        venue.reply("GET", ACCOUNT, jumped_account("540", "-67.0131"))
        venue.forget()
        snapshot = await exchange.fetch_snapshot(include_source=False)

    assert [r.path for r in venue.requests] == [ACCOUNT]
    assert snapshot.positions[0].mark_price == Decimal("60000")
    assert snapshot.positions[0].entry_price == Decimal("67445.9")


async def test_snapshot_when_binance_leg_first_seen_then_positionrisk_confirms_its_mark(
    venue: LoopbackVenue,
) -> None:
    # A notional ten times amount x mark in the account: positionRisk's markPrice refutes it.
    serve(venue, "binanceusdm")
    venue.reply("GET", ACCOUNT, jumped_account("6075.5548506", "0.54238506"))
    async with adapter_for("binanceusdm", venue) as exchange:
        with pytest.raises(UnverifiedData, match="derived from the account"):
            await exchange.fetch_snapshot()


# -- §4: every leg counts, `symbols` limits what is acted on -------------------------


async def test_snapshot_when_symbols_watched_then_other_legs_kept_and_marked_unwatched(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue, symbols=(ETH,)) as exchange:
        snapshot = await exchange.fetch_snapshot()

    # BTC shares the cross collateral: its exposure stays in the account's figures.
    assert [p.symbol for p in snapshot.positions] == [BTC]
    assert snapshot.watched == frozenset({ETH})
    assert {BTC, ETH} <= set(snapshot.markets)


# -- the other venues -----------------------------------------------------------------


def bybit_wallet() -> dict[str, Any]:
    reply: dict[str, Any] = copy.deepcopy(recorded("bybit", "fetchBalance")["httpResponse"])
    return reply


@pytest.mark.parametrize("exchange_id", ["bybit", "okx"])
async def test_snapshot_when_derivatives_balance_is_empty_object_then_unverified(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    serve(venue, exchange_id)
    path = {"bybit": "/v5/account/wallet-balance", "okx": "/api/v5/account/balance"}
    venue.reply("GET", path[exchange_id], {})
    async with adapter_for(exchange_id, venue) as exchange:
        with pytest.raises(UnverifiedData):
            await exchange.fetch_snapshot()


@pytest.mark.parametrize("exchange_id", ["bybit", "okx"])
async def test_snapshot_when_positions_truncated_then_unverified(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    serve(venue, exchange_id)
    path = {"bybit": "/v5/position/list", "okx": "/api/v5/account/positions"}
    body = {
        "bybit": recorded("bybit", "fetchPositions")["httpResponse"],
        "okx": recorded("okx", "fetchPositions")["httpResponse"],
    }
    venue.reply("GET", path[exchange_id], cut(body[exchange_id]))
    async with adapter_for(exchange_id, venue) as exchange:
        with pytest.raises(UnverifiedData):
            await exchange.fetch_snapshot()


async def test_snapshot_when_bybit_positions_empty_but_usdt_holds_position_margin_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    reply = copy.deepcopy(recorded("bybit", "fetchPositions")["httpResponse"])
    reply["result"]["list"] = []
    venue.reply("GET", "/v5/position/list", reply)
    async with adapter_for("bybit", venue) as exchange:
        with pytest.raises(UnverifiedData, match="position"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_bybit_coin_equity_disagrees_with_wallet_plus_upnl_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    wallet = bybit_wallet()
    usdt = next(c for c in wallet["result"]["list"][0]["coin"] if c["coin"] == "USDT")
    usdt["equity"] = "9304.29766609"
    venue.reply("GET", "/v5/account/wallet-balance", wallet)
    async with adapter_for("bybit", venue) as exchange:
        with pytest.raises(UnverifiedData, match="equity"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_okx_equity_disagrees_with_cash_plus_upl_then_unverified(
    venue: LoopbackVenue,
) -> None:
    from tests.integration.exchange.venues import recorded_loopback

    serve(venue, "okx")
    balance = copy.deepcopy(recorded_loopback("okx", "GET /api/v5/account/balance"))
    balance["data"][0]["details"][0]["eq"] = "128.21006347"
    venue.reply("GET", "/api/v5/account/balance", balance)
    async with adapter_for("okx", venue) as exchange:
        with pytest.raises(UnverifiedData, match="eq"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_hyperliquid_state_without_positions_but_notional_then_unverified(
    venue: LoopbackVenue,
) -> None:
    state = copy.deepcopy(CROSS_ACCOUNT)
    state["assetPositions"] = []
    serve_hyperliquid(venue, state)
    async with hyperliquid_adapter(venue) as exchange:
        with pytest.raises(UnverifiedData, match="position"):
            await exchange.fetch_snapshot()


async def test_snapshot_when_hyperliquid_state_is_empty_object_then_unverified(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue, {})
    async with hyperliquid_adapter(venue) as exchange:
        with pytest.raises(UnverifiedData):
            await exchange.fetch_snapshot()


@pytest.mark.parametrize("exchange_id", ["binanceusdm", "bybit", "okx"])
async def test_snapshot_when_recorded_replies_then_they_verify(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    serve(venue, exchange_id)
    async with adapter_for(exchange_id, venue) as exchange:
        snapshot = await exchange.fetch_snapshot()
    assert snapshot.positions
    assert snapshot.source_unknown is False
