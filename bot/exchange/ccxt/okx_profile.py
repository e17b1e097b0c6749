"""OKX's trading account, perpetual swaps, under ccxt 4.5 (DESIGN.md §7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from bot.domain.models import ZERO, MarginMode, Side, WalletBalance
from bot.domain.stops import StopStatus
from bot.exchange.ccxt.exchange_profile import (
    API_KEY,
    PASSWORD,
    SECRET,
    Ccxt,
    ExchangeProfile,
    Params,
    TransferQuery,
    acknowledged,
)
from bot.exchange.ccxt.payloads import (
    StopFields,
    decimal_or_none,
    decimal_or_zero,
    entry_for,
    text_or_none,
)
from bot.exchange.ccxt.settings import CollateralSource, Environment
from bot.exchange.ccxt.verify import agree, number, optional_number
from bot.exchange.port import CapabilityMissing, OrderRequest, StopRequest

# An algo order's state: live (or paused) while it rests; effective once it triggered
# and its order was placed; order_failed when that order was refused.
_ALGO_STATE = {
    "live": StopStatus.OPEN,
    "pause": StopStatus.OPEN,
    "effective": StopStatus.TRIGGERED,
    "partially_effective": StopStatus.TRIGGERED,
    "canceled": StopStatus.CANCELED,
    "order_failed": StopStatus.REJECTED,
    "partially_failed": StopStatus.REJECTED,
}
_POS_SIDE = {"long": Side.LONG, "short": Side.SHORT}


class OkxProfile(ExchangeProfile):
    """OKX trading account, perpetual swaps."""

    exchange_id = "okx"
    # OKX's sandbox is its demo trading.
    environments = ("live", "demo")
    environment_notes: ClassVar[Mapping[str, str]] = {
        "testnet": 'OKX\'s sandbox is its demo trading; use environment = "demo"'
    }
    credentials = (API_KEY, SECRET, PASSWORD)
    default_collateral_source = "funding"
    source_notes: ClassVar[Mapping[str, str]] = {
        "spot": "okx keeps spot balances in the trading account"
    }
    options: ClassVar[Mapping[str, Any]] = {"fetchMarkets": {"types": ["swap"]}}
    derivatives_account = "trading"
    source_accounts: ClassVar[Mapping[CollateralSource, str]] = {"funding": "funding"}

    def apply_environment(self, exchange: Ccxt, environment: Environment) -> None:
        # OKX's sandbox is its demo trading: same host, header x-simulated-trading: 1.
        if environment == "demo":
            exchange.set_sandbox_mode(True)

    def positions_params(self, settle: str) -> Params:
        return {"instType": "SWAP"}

    def derivatives_wallet(self, balance: Mapping[str, Any], settle: str) -> WalletBalance:
        # ccxt's total is eq (with uPnL); the cash balance is W. Free: the smaller of the
        # available balance and equity (either may be empty, by account mode).
        detail = _okx_detail(balance, settle)
        available = [
            number
            for number in (decimal_or_none(detail.get(key)) for key in ("availBal", "availEq"))
            if number is not None
        ]
        free = min(available) if available else ZERO
        if not detail:
            return WalletBalance(ZERO, ZERO)  # nothing held in the settle currency
        cash = number(detail.get("cashBal"), f"balance: {settle} cashBal", signed=True)
        return WalletBalance(cash, free)

    def verify_account(
        self, balance: Mapping[str, Any], positions: Sequence[Mapping[str, Any]], settle: str
    ) -> str | None:
        # One view only of the positions (the account's figures also count futures and
        # options, which the SWAP positions reply leaves out); within the balance, the
        # settle currency's equity is its cash plus its unrealized PnL.
        account = _okx_account(balance)
        if not isinstance(account, Mapping) or not account:
            return "balance: no account in the reply"
        number(account.get("totalEq"), "balance: totalEq", signed=True)
        detail = _okx_detail(balance, settle)
        if not detail:
            return None  # nothing held in the settle currency
        what = f"balance: {settle}"
        equity = number(detail.get("eq"), f"{what} eq", signed=True)
        cash = number(detail.get("cashBal"), f"{what} cashBal", signed=True)
        upl = optional_number(detail.get("upl"), f"{what} upl", signed=True) or ZERO
        return agree(f"{what} eq", equity, cash + upl, "cashBal + upl")

    def pooled_equity(
        self, balance: Mapping[str, Any], settle: str, pooling: bool | None
    ) -> Decimal | None:
        # Multi-currency and portfolio margin: adjusted equity in USD across currencies.
        # Single-currency margin: the settle currency's equity minus its isolated part.
        adjusted = decimal_or_none(_okx_account(balance).get("adjEq"))
        if adjusted is not None:
            return adjusted
        detail = _okx_detail(balance, settle)
        equity = decimal_or_none(detail.get("eq"))
        if equity is None:
            return None
        return equity - decimal_or_zero(detail.get("isoEq"))

    def order_params(self, request: OrderRequest, hedged: bool, margin_mode: MarginMode) -> Params:
        # OKX wants the trade mode of the position the order belongs to (tdMode).
        return {
            **super().order_params(request, hedged, margin_mode),
            "marginMode": margin_mode.value,
        }

    async def modify_margin(
        self, exchange: Ccxt, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool
    ) -> Decimal | None:
        # ccxt 4.5.90's okx.add_margin / reduce_margin send the request, then fail on the
        # reply (parse_margin_modification indexes a str: TypeError), hiding a change that
        # happened. Call the endpoint they wrap, with the body they build.
        market = exchange.market(symbol)
        response = await exchange.privatePostAccountPositionMarginBalance(
            {
                "instId": market["id"],
                "amt": str(amount),
                "type": "add" if add else "reduce",
                "posSide": side.value if hedged else "net",
            }
        )
        acknowledged(response, f"margin change on {symbol}")
        return decimal_or_none(((response.get("data") or [{}])[0]).get("amt"))

    def transfer_params(self, client_id: str) -> Params:
        # OKX accepts a client id (1-32 letters and digits) on transfers.
        return {"clientId": client_id} if _client_id_ok(client_id) else {}

    async def find_transfer(self, exchange: Ccxt, query: TransferQuery) -> Mapping[str, Any] | None:
        # GET /api/v5/asset/transfer-state by the clientId sent with it (no unified ccxt
        # method); state success / pending / failed.
        if not _client_id_ok(query.client_id):
            raise CapabilityMissing(f"okx: transfer {query.client_id} went without a clientId")
        reply = acknowledged(
            await exchange.privateGetAssetTransferState({"clientId": query.client_id}),
            f"transfer state of {query.client_id}",
        )
        for entry in reply.get("data") or []:
            if entry.get("state") != "failed":
                return {"id": entry.get("transId"), "amount": entry.get("amt"), "info": entry}
        return None

    # -- backstops ----------------------------------------------------------------------

    def stop_order_args(
        self, request: StopRequest, trigger: str, hedged: bool, margin_mode: MarginMode
    ) -> tuple[str, float | None, Params]:
        # An algo order (POST /api/v5/trade/order-algo): ccxt makes a market order with a
        # stopLossPrice ordType "conditional", slTriggerPx, slOrdPx -1 (market). Triggered
        # by the mark (slTriggerPxType), in the leg's trade mode (tdMode); algoClOrdId is
        # the algo endpoints' client id (ccxt's clientOrderId would go in clOrdId).
        params: Params = {
            "stopLossPrice": trigger,
            "slTriggerPxType": "mark",
            "algoClOrdId": request.client_order_id,
            "reduceOnly": True,
            "marginMode": margin_mode.value,
        }
        if hedged:
            # ccxt sends posSide of the leg a protective order closes, without reduceOnly.
            params["hedged"] = True
        return "market", None, params

    def stop_fields(self, order: Mapping[str, Any]) -> StopFields:
        info: Mapping[str, Any] = order.get("info") or {}
        word = str(info.get("state") or "")
        side = str(info.get("side") or "").lower()
        leg = _POS_SIDE.get(str(info.get("posSide") or ""))
        closes = leg is not None and side == leg.closing_order_side.value
        conditional = info.get("ordType") == "conditional" and info.get("slOrdPx") == "-1"
        trigger = info.get("ordType") == "trigger" and info.get("ordPx") in ("-1", None)
        spawned = text_or_none(info.get("ordId"))
        return StopFields(
            exchange_id=info.get("algoId"),
            client_order_id=info.get("algoClOrdId"),
            side=side,
            amount=info.get("sz"),
            trigger_price=info.get("slTriggerPx") if conditional else info.get("triggerPx"),
            status=_ALGO_STATE.get(word),
            word=word,
            backstop=(conditional or trigger)
            and (str(info.get("reduceOnly")).lower() == "true" or closes),
            position_side=leg,
            # The algo order holds no fill: the order it placed (ordId) does.
            spawned_order_id=spawned,
        )

    async def fetch_open_stops(
        self, exchange: Ccxt, symbols: Sequence[str]
    ) -> list[Mapping[str, Any]]:
        # GET /api/v5/trade/orders-algo-pending?ordType=conditional (per instrument).
        rows: list[Mapping[str, Any]] = []
        for symbol in symbols:
            rows.extend(
                await exchange.fetch_open_orders(symbol, None, None, {"ordType": "conditional"})
            )
        return rows


def _client_id_ok(client_id: str) -> bool:
    """OKX accepts a client id of 1-32 letters and digits on transfers."""
    return client_id.isalnum() and len(client_id) <= 32


def _okx_account(balance: Mapping[str, Any]) -> Mapping[str, Any]:
    account: Mapping[str, Any] = (balance.get("info", {}).get("data") or [{}])[0]
    return account


def _okx_detail(balance: Mapping[str, Any], settle: str) -> Mapping[str, Any]:
    return entry_for(_okx_account(balance).get("details", []), "ccy", settle)
