"""Bybit's unified trading account, linear contracts, under ccxt 4.5 (DESIGN.md §7)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

from bot.domain.models import ZERO, MaintenanceTier, MarginMode, OrderSide, Side
from bot.domain.stops import StopStatus
from bot.exchange.ccxt.exchange_profile import (
    Ccxt,
    ExchangeProfile,
    Params,
    TransferQuery,
    acknowledged,
    transfer_failed,
)
from bot.exchange.ccxt.payloads import (
    StopFields,
    decimal_or_none,
    decimal_or_zero,
    entry_for,
    tiers_from_ccxt,
)
from bot.exchange.ccxt.settings import CollateralSource, Environment
from bot.exchange.ccxt.verify import agree, empty_but_margined, number, optional_number
from bot.exchange.port import InvalidOrder, StopRequest

# Names transfer ids are derived from (Bybit wants a UUID, the service gives its own id).
_TRANSFER_NAMESPACE = uuid.UUID("6f1c8a52-3c4e-4d38-9a4b-7c1f0e2b5d90")
# POST /v5/position/add-margin takes the margin to 4 decimal places.
_MARGIN_STEP = Decimal("0.0001")
# positionIdx: 0 one-way; in hedge mode 1 is the buy-side (long) leg, 2 the sell-side.
_POSITION_IDX = {Side.LONG: 1, Side.SHORT: 2}
_LEG_OF_IDX = {"1": Side.LONG, "2": Side.SHORT}
# A conditional order's orderStatus: Untriggered while it rests; once triggered it is a
# market order under the same orderId (Triggered, New, ..., Filled); Deactivated when
# cancelled before triggering; Rejected when the triggered order was refused.
_STOP_STATUS = {
    "Untriggered": StopStatus.OPEN,
    "Triggered": StopStatus.TRIGGERED,
    "Active": StopStatus.TRIGGERED,
    "New": StopStatus.TRIGGERED,
    "Created": StopStatus.TRIGGERED,
    "PartiallyFilled": StopStatus.TRIGGERED,
    "Filled": StopStatus.TRIGGERED,
    "PartiallyFilledCanceled": StopStatus.TRIGGERED,
    "Deactivated": StopStatus.CANCELED,
    "Cancelled": StopStatus.CANCELED,
    "Rejected": StopStatus.REJECTED,
}


class BybitProfile(ExchangeProfile):
    """Bybit unified trading account (UTA), linear contracts."""

    exchange_id = "bybit"
    environments = ("live", "testnet", "demo")
    default_collateral_source = "funding"
    source_notes: ClassVar[Mapping[str, str]] = {
        "spot": "bybit keeps spot balances in the trading account"
    }
    options: ClassVar[Mapping[str, Any]] = {"fetchMarkets": {"types": ["linear"]}}
    derivatives_account = "unified"
    source_accounts: ClassVar[Mapping[CollateralSource, str]] = {"funding": "funding"}
    # ccxt has no add_margin / reduce_margin for Bybit: modify_margin calls the endpoint.
    can_adjust_margin = True
    # positionValue (ccxt's notional) is the size at the entry price, not at the mark.
    notional_at_mark = False

    def apply_environment(self, exchange: Ccxt, environment: Environment) -> None:
        if environment == "testnet":
            exchange.set_sandbox_mode(True)
        elif environment == "demo":
            exchange.enable_demo_trading(True)

    async def fetch_collateral_pooling(self, exchange: Ccxt) -> bool:
        # ccxt asks once (two requests) and caches it; asking here, before the snapshot's
        # concurrent reads, keeps each of them from asking too.
        unified_margin, unified_account = await exchange.is_unified_enabled()
        return bool(unified_margin or unified_account)

    def pooled_equity(
        self, balance: Mapping[str, Any], settle: str, pooling: bool | None
    ) -> Decimal | None:
        # ccxt's total is the wallet balance without uPnL; a unified account's margin
        # balance (USD, all collateral coins) is what its margin ratio is measured on.
        if not pooling:
            return None
        accounts = balance.get("info", {}).get("result", {}).get("list", [])
        account = entry_for(accounts, "accountType", "UNIFIED")
        return decimal_or_none(account.get("totalMarginBalance"))

    def positions_params(self, settle: str) -> Params:
        return {"settleCoin": settle}

    def verify_account(
        self, balance: Mapping[str, Any], positions: Sequence[Mapping[str, Any]], settle: str
    ) -> str | None:
        # The wallet's coin row is one view (equity = wallet + uPnL, the margin its
        # positions hold), /v5/position/list for that settle coin the other.
        accounts = balance.get("info", {}).get("result", {}).get("list") or []
        account = entry_for(accounts, "accountType", "UNIFIED") or (
            accounts[0] if accounts and isinstance(accounts[0], Mapping) else {}
        )
        if not account:
            return "wallet balance: no account in the reply"
        for key in ("totalEquity", "totalWalletBalance", "totalMarginBalance"):
            number(account.get(key), f"wallet balance: {key}", signed=True)
        coin = entry_for(account.get("coin"), "coin", settle)
        if not coin:
            return None  # nothing held in the settle coin
        what = f"wallet balance: {settle}"
        equity = number(coin.get("equity"), f"{what} equity", signed=True)
        wallet = number(coin.get("walletBalance"), f"{what} walletBalance", signed=True)
        upnl = number(coin.get("unrealisedPnl"), f"{what} unrealisedPnl", signed=True)
        problem = agree(f"{what} equity", equity, wallet + upnl, "walletBalance + unrealisedPnl")
        if problem is not None:
            return problem
        held = {
            f"{settle} {key}": value
            for key in ("totalPositionMM", "totalPositionIM")
            if (value := optional_number(coin.get(key), f"{what} {key}")) is not None
        }
        return empty_but_margined(positions, held)

    def margin_mode(self, position: Mapping[str, Any], default: MarginMode) -> MarginMode:
        # ccxt's marginMode is always None here (tradeMode is deprecated): a unified
        # account sets the margin mode for the whole account, as the settings say.
        return default

    def isolated_margin(self, position: Mapping[str, Any]) -> Decimal:
        return decimal_or_zero(position.get("info", {}).get("positionBalance"))

    async def fetch_tiers(
        self, exchange: Ccxt, symbols: Sequence[str], reload: bool
    ) -> dict[str, tuple[MaintenanceTier, ...]]:
        # fetch_leverage_tiers pages through every linear symbol; ask per symbol instead.
        tiers: dict[str, tuple[MaintenanceTier, ...]] = {}
        for symbol in symbols:
            rows = await exchange.fetch_market_leverage_tiers(symbol)
            tiers[symbol] = tiers_from_ccxt(rows)
        return tiers

    async def modify_margin(
        self, exchange: Ccxt, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool
    ) -> Decimal | None:
        # ccxt 4.5 lists Bybit's V5 endpoint but wraps it in no unified method: one signed
        # amount, positive adds, negative reduces. A non-zero retCode is raised by ccxt's
        # handle_errors (110014, not enough available balance to add: InsufficientFunds).
        moved = amount.quantize(_MARGIN_STEP, rounding=ROUND_DOWN)
        if moved <= ZERO:
            raise InvalidOrder(f"bybit: margin {amount} is below Bybit's step {_MARGIN_STEP}")
        reply = await exchange.privatePostV5PositionAddMargin(
            {
                "category": "linear",
                "symbol": exchange.market(symbol)["id"],
                "margin": _plain(moved if add else -moved),
                "positionIdx": _POSITION_IDX[side] if hedged else 0,
            }
        )
        acknowledged(reply, f"margin change on {symbol}")
        # The reply is the position afterwards (positionIM, liqPrice, ...), not the change;
        # Bybit moves exactly the margin it accepts: report what was sent.
        return moved

    def transfer_params(self, client_id: str) -> Params:
        # Bybit refuses a transferId it has seen: deriving it from the client id makes a
        # repeated transfer fail instead of moving the money twice.
        return {"transferId": _transfer_id(client_id)}

    async def find_transfer(self, exchange: Ccxt, query: TransferQuery) -> Mapping[str, Any] | None:
        # The transferId was derived from our client id (transfer_params): ask for it.
        transfers = await exchange.fetch_transfers(
            query.currency, None, None, {"transferId": _transfer_id(query.client_id)}
        )
        for transfer in transfers:
            if not transfer_failed(transfer):
                found: Mapping[str, Any] = transfer
                return found
        return None

    async def find_order(
        self, exchange: Ccxt, symbol: str, client_order_id: str
    ) -> Mapping[str, Any] | None:
        # fetch_order only sees the last 500 orders (and wants an order id): look in the
        # open orders, then the order history.
        params = {"orderLinkId": client_order_id}
        for orders in (
            await exchange.fetch_open_orders(symbol, None, None, params),
            await exchange.fetch_canceled_and_closed_orders(symbol, None, None, params),
        ):
            if orders:
                found: Mapping[str, Any] = orders[0]
                return found
        return None

    # -- backstops ----------------------------------------------------------------------

    def stop_order_args(
        self, request: StopRequest, trigger: str, hedged: bool, margin_mode: MarginMode
    ) -> tuple[str, float | None, Params]:
        # A conditional market order (POST /v5/order/create with triggerPrice): it
        # triggers when the mark (triggerBy) rises to (triggerDirection 1) or falls to (2)
        # the trigger; a long's stop sells when the mark falls.
        falls = request.side is OrderSide.SELL
        params: Params = {
            "triggerPrice": trigger,
            "triggerDirection": "descending" if falls else "ascending",
            "triggerBy": "MarkPrice",
            "clientOrderId": request.client_order_id,
            "reduceOnly": True,
        }
        if hedged:
            # ccxt sends positionIdx of the leg a reduce-only order closes (1 long, 2 short).
            params["hedged"] = True
        return "market", None, params

    def stop_fields(self, order: Mapping[str, Any]) -> StopFields:
        info: Mapping[str, Any] = order.get("info") or {}
        word = str(info.get("orderStatus") or "")
        status = _STOP_STATUS.get(word)
        filled = decimal_or_none(info.get("cumExecQty"))
        if word == "Cancelled" and filled:
            status = StopStatus.TRIGGERED  # triggered, part filled, the rest cancelled
        side = str(info.get("side") or "").lower()
        leg = _LEG_OF_IDX.get(str(info.get("positionIdx")))
        closes = leg is not None and side == leg.closing_order_side.value
        return StopFields(
            exchange_id=info.get("orderId"),
            client_order_id=info.get("orderLinkId"),
            side=side,
            amount=info.get("qty"),
            trigger_price=info.get("triggerPrice"),
            status=status,
            word=word,
            backstop=info.get("orderType") == "Market"
            and bool(decimal_or_none(info.get("triggerPrice")))
            and (info.get("reduceOnly") is True or info.get("closeOnTrigger") is True or closes),
            position_side=leg,
            filled=info.get("cumExecQty"),
            average_price=info.get("avgPrice"),
            fee=info.get("cumExecFee"),
        )

    def stop_cancel_params(self) -> Params:
        # POST /v5/order/cancel by orderId; orderFilter is for spot only.
        return {}

    async def find_stop(
        self, exchange: Ccxt, symbol: str, client_order_id: str
    ) -> Mapping[str, Any] | None:
        # Untriggered conditional orders are in /v5/order/realtime, triggered and
        # cancelled ones in the history: both answer every order kind by orderLinkId.
        return await self.find_order(exchange, symbol, client_order_id)


def _transfer_id(client_id: str) -> str:
    return str(uuid.uuid5(_TRANSFER_NAMESPACE, client_id))


def _plain(number: Decimal) -> str:
    """`number` as Bybit reads it: no exponent, no trailing zeros ("12.5", "-3", "100")."""
    return format(number.normalize(), "f")
