"""The paper venue through real ccxt: the bot's adapter reads, transfers, orders and
looks orders up on it exactly as on Binance; signatures are checked; faults happen."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import ccxt.async_support as ccxt
import pytest

from bot.domain.models import OrderSide, Side
from bot.exchange.paper_venue.fault_replies import without_one_field
from bot.exchange.paper_venue.faults import FaultKind, FaultPlan, FaultSpecError, parse_spec
from bot.exchange.paper_venue.signing import Refusal, Signer
from bot.exchange.port import ExchangeError, OrderRequest
from tests.integration.exchange.paper_venue_support import adapter_on, running_venue

SYMBOL = "BTC/USDT:USDT"


def _reduce(client_id: str, amount: str = "0.01") -> OrderRequest:
    return OrderRequest(
        symbol=SYMBOL, side=OrderSide.SELL, amount=Decimal(amount), reduce_only=True,
        position_side=Side.LONG, client_order_id=client_id,
    )  # fmt: skip


async def test_paper_venue_when_ccxt_snapshots_transfers_and_orders_then_the_venue_did_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "venue.json"
    async with running_venue(state) as venue, adapter_on(venue.url) as exchange:
        before = await exchange.fetch_snapshot()
        (position,) = before.positions
        assert position.side is Side.LONG and position.contracts > 0
        assert before.derivatives.total == Decimal(10000)
        assert before.source is not None and before.source.total == Decimal(5000)
        assert position.maintenance_margin is not None and position.maintenance_margin > 0

        moved = await exchange.transfer("USDT", Decimal("250.5"), True, "t-1")
        order = await exchange.create_order(_reduce("lb-order-1"))
        found = await exchange.fetch_order_by_client_id(SYMBOL, "lb-order-1")
        missing = await exchange.fetch_order_by_client_id(SYMBOL, "never-sent")
        after = await exchange.fetch_snapshot()

    assert missing is None
    assert found is not None and found.exchange_id == order.exchange_id
    assert found.filled == Decimal("0.01") and found.side is OrderSide.SELL
    assert after.positions[0].contracts == position.contracts - Decimal("0.01")
    assert after.source is not None and after.source.total == Decimal("4749.5")
    record = json.loads(state.read_text())
    assert [(o["client_id"], o["exchange_id"]) for o in record["orders"]] == [
        ("lb-order-1", order.exchange_id)
    ]
    assert [(t["tran_id"], t["amount"], t["type"]) for t in record["transfers"]] == [
        (moved.transfer_id, "250.5", "MAIN_UMFUTURE")
    ]


async def test_paper_venue_when_restarted_from_its_file_then_the_account_and_record_carry_on(
    tmp_path: Path,
) -> None:
    state = tmp_path / "venue.json"
    async with running_venue(state) as venue, adapter_on(venue.url) as exchange:
        order = await exchange.create_order(_reduce("before-restart"))
    async with running_venue(state) as venue, adapter_on(venue.url) as exchange:
        found = await exchange.fetch_order_by_client_id(SYMBOL, "before-restart")
        snapshot = await exchange.fetch_snapshot()
    assert found is not None and found.exchange_id == order.exchange_id
    assert len(venue.book.record.orders) == 1
    assert snapshot.derivatives.total < Decimal(10000)  # the fee and PnL stayed paid


async def test_paper_venue_when_the_signature_is_wrong_then_binance_minus_1022(
    tmp_path: Path,
) -> None:
    async with running_venue(None) as venue:
        raw = ccxt.binanceusdm(
            {"apiKey": "test-api-key-0001", "secret": "not-the-secret", "enableRateLimit": False}
        )
        raw.urls["api"] = {
            key: value.replace("https://fapi.binance.com", venue.url)
            for key, value in raw.urls["api"].items()
            if isinstance(value, str)
        }
        try:
            with pytest.raises(ccxt.AuthenticationError, match="-1022"):
                await raw.fapiPrivateV3GetAccount()
        finally:
            await raw.close()
        assert venue.book.record.orders == []


async def test_paper_venue_when_the_api_key_is_unknown_then_the_adapter_refuses(
    tmp_path: Path,
) -> None:
    async with (
        running_venue(None) as venue,
        adapter_on(
            venue.url, credentials={"api_key": "someone-else", "secret": "test-secret-0002"}
        ) as exchange,
    ):
        with pytest.raises(ExchangeError):
            await exchange.fetch_snapshot()


async def test_paper_venue_when_an_order_reply_is_lost_then_the_order_is_applied_and_recorded(
    tmp_path: Path,
) -> None:
    async with (
        running_venue(None, faults="order:lost=1") as venue,
        adapter_on(venue.url) as exchange,
    ):
        await exchange.fetch_snapshot()
        with pytest.raises(ExchangeError):
            await exchange.create_order(_reduce("lost-1"))
        found = await exchange.fetch_order_by_client_id(SYMBOL, "lost-1")
    assert found is not None
    assert [o["client_id"] for o in venue.book.record.orders] == ["lost-1"]
    assert venue.venue.faults.injected["lost"] == 1


async def test_paper_venue_when_a_transfer_is_refused_with_429_then_nothing_moved(
    tmp_path: Path,
) -> None:
    async with (
        running_venue(None, faults="transfer:429=1") as venue,
        adapter_on(venue.url) as exchange,
    ):
        await exchange.fetch_snapshot()
        with pytest.raises(ExchangeError):
            await exchange.transfer("USDT", Decimal(10), True, "t-429")
    assert venue.book.record.transfers == []
    assert venue.venue.faults.injected["429"] >= 1


@pytest.mark.parametrize("kind", [FaultKind.TRUNCATED, FaultKind.EMPTY, FaultKind.SERVER_HTML])
async def test_paper_venue_when_account_replies_are_broken_then_no_snapshot_comes_back(
    tmp_path: Path, kind: FaultKind
) -> None:
    async with (
        running_venue(None, faults=f"account:{kind.value}=1") as venue,
        adapter_on(venue.url) as exchange,
    ):
        with pytest.raises(Exception):  # noqa: B017 - which error is the adapter's business
            await exchange.fetch_snapshot()
    assert venue.venue.faults.injected[kind.value] >= 1


async def test_paper_venue_when_a_read_times_out_then_the_connection_is_dropped(
    tmp_path: Path,
) -> None:
    async with (
        running_venue(None, faults="account:timeout=1", hold_seconds=0.0) as venue,
        adapter_on(venue.url) as exchange,
    ):
        with pytest.raises(ExchangeError):
            await exchange.fetch_snapshot()


async def test_paper_venue_when_transfer_history_is_asked_then_binance_rows_come_back(
    tmp_path: Path,
) -> None:
    async with (
        running_venue(None) as venue,
        adapter_on(venue.url) as exchange,
    ):
        await exchange.transfer("USDT", Decimal(12), True, "t-a")
        await exchange.transfer("USDT", Decimal(3), False, "t-b")
        raw = ccxt.binance({**_keys(), "enableRateLimit": False})
        raw.urls["api"] = {
            k: v.replace("https://api.binance.com", venue.url) for k, v in raw.urls["api"].items()
        }
        try:
            inbound = await raw.sapiGetAssetTransfer({"type": "MAIN_UMFUTURE"})
            outbound = await raw.sapiGetAssetTransfer({"type": "UMFUTURE_MAIN"})
        finally:
            await raw.close()
    assert inbound["total"] == 1 and inbound["rows"][0]["amount"] == "12"
    assert outbound["rows"][0]["type"] == "UMFUTURE_MAIN"


def _keys() -> dict[str, str]:
    return {"apiKey": "test-api-key-0001", "secret": "test-secret-0002"}


def test_fault_spec_when_parsed_then_rates_apply_per_endpoint_and_kind() -> None:
    rules = parse_spec("all:0.3,order:lost=0.1")
    assert {r.rate for r in rules["account"]} == {0.3}
    assert [(r.kind, r.rate) for r in rules["order"]] == [(None, 0.3), (FaultKind.LOST, 0.1)]
    assert "account" not in parse_spec("account:lost=0.5")  # reads have no reply to lose
    for bad in ("nowhere:0.1", "all:1.5", "order:gone=0.1", "order"):
        with pytest.raises(FaultSpecError):
            parse_spec(bad)


def test_fault_plan_when_seeded_then_the_same_faults_come_back() -> None:
    plans = [FaultPlan("all:0.3", seed=11) for _ in range(2)]
    draws = [[plan.draw("account") for _ in range(50)] for plan in plans]
    assert draws[0] == draws[1]
    assert 5 < sum(d is not None for d in draws[0]) < 30


def test_signer_when_the_timestamp_is_stale_or_the_signature_missing_then_binance_codes() -> None:
    import hashlib
    import hmac

    signer = Signer("k", "s")

    def signed(query: str) -> str:
        digest = hmac.new(b"s", query.encode(), hashlib.sha256).hexdigest()
        return f"{query}&signature={digest}"

    now = 1_700_000_000_000
    fresh = signed(f"symbol=BTCUSDT&timestamp={now - 100}&recvWindow=5000")
    assert signer.verify("k", fresh, "", now)["symbol"] == "BTCUSDT"
    # POST: the signed parameters travel in the body.
    assert signer.verify("k", "", signed(f"amount=5&timestamp={now}"), now)["amount"] == "5"
    stale = signed(f"timestamp={now - 6000}&recvWindow=5000")
    cases = {
        "stale": (("k", stale, ""), -1021),
        "future": (("k", signed(f"timestamp={now + 5000}"), ""), -1021),
        "unsigned": (("k", f"timestamp={now}", ""), -1102),
        "tampered": (("k", fresh.replace("BTCUSDT", "ETHUSDT"), ""), -1022),
        "no key": ((None, fresh, ""), -2015),
    }
    for name, (args, code) in cases.items():
        with pytest.raises(Refusal) as refused:
            signer.verify(*args, now)
        assert refused.value.code == code, name


def test_without_one_field_when_garbling_then_exactly_one_key_is_gone() -> None:
    body = {"a": "1", "rows": [{"b": "2", "c": "3"}]}
    garbled = without_one_field(body, random.Random(3))
    assert body == {"a": "1", "rows": [{"b": "2", "c": "3"}]}  # the original is untouched

    def keys(node: object) -> int:
        if isinstance(node, dict):
            return len(node) + sum(keys(v) for v in node.values())
        if isinstance(node, list):
            return sum(keys(v) for v in node)
        return 0

    assert keys(garbled) == keys(body) - 1


async def test_paper_venue_when_a_transfer_reply_is_lost_then_its_history_shows_it(
    tmp_path: Path,
) -> None:
    async with (
        running_venue(None, faults="transfer:lost=1") as venue,
        adapter_on(venue.url) as exchange,
    ):
        await exchange.fetch_snapshot()
        with pytest.raises(ExchangeError):
            await exchange.transfer("USDT", Decimal("42.5"), True, "t-lost")
        after = await exchange.fetch_snapshot()
        raw = ccxt.binance({**_keys(), "enableRateLimit": False})
        raw.urls["api"] = {
            k: v.replace("https://api.binance.com", venue.url) for k, v in raw.urls["api"].items()
        }
        try:
            history = await raw.sapiGetAssetTransfer({"type": "MAIN_UMFUTURE"})
        finally:
            await raw.close()
    assert after.source is not None and after.source.total == Decimal("4957.5")
    assert [(r["amount"], r["status"]) for r in history["rows"]] == [("42.5", "CONFIRMED")]
    assert [t["amount"] for t in venue.book.record.transfers] == ["42.5"]


async def test_paper_venue_when_an_order_breaks_a_rule_then_refused_and_nothing_recorded(
    tmp_path: Path,
) -> None:
    async with running_venue(None) as venue, adapter_on(venue.url) as exchange:
        snapshot = await exchange.fetch_snapshot()
        too_big = snapshot.positions[0].contracts + Decimal("0.001")
        with pytest.raises(ExchangeError):
            await exchange.create_order(_reduce("too-big", str(too_big)))
        await exchange.create_order(_reduce("once"))
        with pytest.raises(ExchangeError):
            await exchange.create_order(_reduce("once"))  # the same client id again
    assert [o["client_id"] for o in venue.book.record.orders] == ["once"]


async def test_paper_venue_when_restarted_then_fault_counts_carry_on(tmp_path: Path) -> None:
    state = tmp_path / "venue.json"
    async with (
        running_venue(state, faults="positions:500=1") as venue,
        adapter_on(venue.url) as exchange,
    ):
        with pytest.raises(ExchangeError):
            await exchange.fetch_snapshot()
        first = venue.venue.faults.injected["500"]
    async with running_venue(state) as venue:
        assert venue.venue.faults.injected["500"] == first > 0
    assert json.loads(state.read_text())["faults"]["500"] == first
