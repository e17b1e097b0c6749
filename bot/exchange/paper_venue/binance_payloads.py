"""The paper venue's replies in Binance's own shapes (keys, and strings where Binance
sends strings), so ccxt parses them exactly as it parses the real venue's.

A test compares every shape here with real recorded payloads key by key and type by
type (tests/integration/exchange/test_paper_venue_payloads.py): change one only with
the venue's documentation in hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from bot.domain.leverage import notional, tier_brackets, unrealized_pnl
from bot.domain.models import ZERO, AccountSnapshot, MarketRules, Position, Side
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.port import OrderResult, OrderStatus

Json = dict[str, Any]

_EIGHT = Decimal("1e-8")
# The leverage every simulated position runs at: initial margin is notional / 20.
LEVERAGE_SETTING = Decimal(20)
PERPETUAL_DELIVERY = 4133404800000
TRANSFER_TYPES = {True: "MAIN_UMFUTURE", False: "UMFUTURE_MAIN"}


def market_id(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'BTCUSDT'."""
    base, _, rest = symbol.partition("/")
    return base + rest.partition(":")[0]


def _s(value: Decimal) -> str:
    """Binance's fixed eight places."""
    return str(value.quantize(_EIGHT))


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def server_time(now_ms: int) -> Json:
    return {"serverTime": now_ms}


def exchange_info(markets: dict[str, MarketRules], now_ms: int) -> Json:
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [_symbol_entry(rules) for rules in markets.values()],
    }


def _symbol_entry(rules: MarketRules) -> Json:
    base, _, rest = rules.symbol.partition("/")
    quote = rest.partition(":")[0]
    step = _plain(rules.amount_step or Decimal("0.001"))
    places = max(0, -int((rules.amount_step or Decimal("0.001")).as_tuple().exponent))
    return {
        "symbol": market_id(rules.symbol),
        "pair": market_id(rules.symbol),
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": 2,
        "quantityPrecision": places,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": ["PoW"],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764",
             "tickSize": "0.10"},
            {"filterType": "LOT_SIZE", "stepSize": step, "maxQty": "1000",
             "minQty": _plain(rules.min_amount)},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": step, "maxQty": "1000",
             "minQty": _plain(rules.min_amount)},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": _plain(rules.min_cost)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }  # fmt: skip


def leverage_brackets(markets: dict[str, MarketRules]) -> list[Json]:
    entries = []
    for rules in markets.values():
        brackets = tier_brackets(rules.tiers)
        rows = []
        for index, bracket in enumerate(brackets):
            cap = brackets[index + 1].floor if index + 1 < len(brackets) else Decimal(500_000_000)
            rows.append(
                {
                    "bracket": index + 1,
                    "initialLeverage": max(1, int(Decimal(1) / (bracket.rate * 2))),
                    "notionalCap": int(cap),
                    "notionalFloor": int(bracket.floor),
                    "maintMarginRatio": float(bracket.rate),
                    "cum": float(bracket.cum),
                }
            )
        entries.append({"symbol": market_id(rules.symbol), "notionalCoef": 1.0, "brackets": rows})
    return entries


def _signed(position: Position, value: Decimal) -> Decimal:
    return value if position.side is Side.LONG else -value


def _initial(position: Position) -> Decimal:
    return notional(position) / LEVERAGE_SETTING


def position_risk(snapshot: AccountSnapshot, now_ms: int) -> list[Json]:
    """GET /fapi/v3/positionRisk: the open legs."""
    rows = []
    for p in snapshot.positions:
        pnl = unrealized_pnl(p)
        rows.append(
            {
                "symbol": market_id(p.symbol),
                "positionSide": p.side.value.upper() if p.hedged else "BOTH",
                "positionAmt": _plain(_signed(p, p.contracts)),
                "entryPrice": _plain(p.entry_price),
                "breakEvenPrice": _plain(p.entry_price),
                "markPrice": _s(p.mark_price or ZERO),
                "unRealizedProfit": _s(pnl),
                "liquidationPrice": _s(p.liquidation_price or ZERO),
                "isolatedMargin": _s(p.isolated_margin + pnl if p.isolated_margin else ZERO),
                "notional": _s(_signed(p, notional(p))),
                "marginAsset": snapshot.settle,
                "isolatedWallet": _s(p.isolated_margin),
                "initialMargin": _s(_initial(p)),
                "maintMargin": _s(p.maintenance_margin or ZERO),
                "positionInitialMargin": _s(_initial(p)),
                "openOrderInitialMargin": "0",
                "adl": "0",
                "bidNotional": "0",
                "askNotional": "0",
                "updateTime": str(now_ms),
            }
        )
    return rows


def futures_account(snapshot: AccountSnapshot, now_ms: int) -> Json:
    """GET /fapi/v3/account (single-asset mode: one USDT row)."""
    cross = snapshot.cross_positions()
    wallet = snapshot.derivatives.total
    isolated = sum((p.isolated_margin for p in snapshot.isolated_positions()), ZERO)
    cross_pnl = sum((unrealized_pnl(p) for p in cross), ZERO)
    pnl = sum((unrealized_pnl(p) for p in snapshot.positions), ZERO)
    initial = sum((_initial(p) for p in snapshot.positions), ZERO)
    maintenance = sum((p.maintenance_margin or ZERO for p in snapshot.positions), ZERO)
    free = snapshot.derivatives.free
    total_wallet = wallet + isolated
    margin_balance = total_wallet + pnl
    return {
        "totalInitialMargin": _s(initial),
        "totalMaintMargin": _s(maintenance),
        "totalWalletBalance": _s(total_wallet),
        "totalUnrealizedProfit": _s(pnl),
        "totalMarginBalance": _s(margin_balance),
        "totalPositionInitialMargin": _s(initial),
        "totalOpenOrderInitialMargin": _s(ZERO),
        "totalCrossWalletBalance": _s(wallet),
        "totalCrossUnPnl": _s(cross_pnl),
        "availableBalance": _s(free),
        "maxWithdrawAmount": _s(free),
        "assets": [
            {
                "asset": snapshot.settle,
                "walletBalance": _s(total_wallet),
                "unrealizedProfit": _s(pnl),
                "marginBalance": _s(margin_balance),
                "maintMargin": _s(maintenance),
                "initialMargin": _s(initial),
                "positionInitialMargin": _s(initial),
                "openOrderInitialMargin": _s(ZERO),
                "crossWalletBalance": _s(wallet),
                "crossUnPnl": _s(cross_pnl),
                "availableBalance": _s(free),
                "maxWithdrawAmount": _s(free),
                "updateTime": str(now_ms),
            }
        ],
        "positions": [
            {
                "symbol": market_id(p.symbol),
                "positionSide": p.side.value.upper() if p.hedged else "BOTH",
                "positionAmt": _plain(_signed(p, p.contracts)),
                "unrealizedProfit": _s(unrealized_pnl(p)),
                "isolatedMargin": _s(p.isolated_margin),
                "notional": _s(_signed(p, notional(p))),
                "isolatedWallet": _s(p.isolated_margin),
                "initialMargin": _s(_initial(p)),
                "maintMargin": _s(p.maintenance_margin or ZERO),
                "updateTime": str(now_ms),
            }
            for p in snapshot.positions
        ],
    }


def multi_assets_margin() -> Json:
    return {"multiAssetsMargin": False}


def spot_account(settle: str, source: Decimal, now_ms: int) -> Json:
    """GET /api/v3/account: the spot wallet (the collateral source)."""
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "canTrade": True,
        "canWithdraw": False,
        "canDeposit": True,
        "updateTime": now_ms,
        "accountType": "SPOT",
        "balances": [{"asset": settle, "free": _s(source), "locked": _s(ZERO)}],
        "permissions": ["SPOT"],
    }


def order(
    result: OrderResult,
    *,
    reduce_only: bool,
    position_side: str,
    update_ms: int,
    with_time: bool = False,
) -> Json:
    """POST /fapi/v1/order (newOrderRespType=RESULT) and, `with_time`, GET /fapi/v1/order."""
    price = result.average_price or ZERO
    body: Json = {
        "orderId": exchange_number(result.exchange_id),
        "symbol": market_id(result.symbol),
        "status": "FILLED" if result.status is OrderStatus.CLOSED else "NEW",
        "clientOrderId": result.client_order_id,
        "price": "0.00",
        "avgPrice": _plain(price),
        "origQty": _plain(result.amount),
        "executedQty": _plain(result.filled),
        "cumQty": _plain(result.filled),
        "cumQuote": _s(result.filled * price),
        "timeInForce": "GTC",
        "type": "MARKET",
        "reduceOnly": reduce_only,
        "closePosition": False,
        "side": result.side.value.upper(),
        "positionSide": position_side,
        "stopPrice": "0.00",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": "MARKET",
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
        "updateTime": update_ms,
    }
    if with_time:
        # The query reply carries the order's time, and Binance sends both as strings there.
        body.pop("cumQty")
        body["time"] = str(update_ms)
        body["updateTime"] = str(update_ms)
        body["goodTillDate"] = "0"
        body["orderId"] = str(body["orderId"])
    return body


def exchange_number(exchange_id: str) -> int:
    """The simulator's 'O12' / 'T13' / 'S14' as Binance's numeric orderId / tranId / algoId."""
    return int(exchange_id.lstrip("OTS"))


# A triggered stop's market order fills at once, so Binance reports it FINISHED; one
# that found nothing to reduce expired.
_ALGO_STATUS = {
    StopStatus.OPEN: "NEW",
    StopStatus.TRIGGERED: "FINISHED",
    StopStatus.CANCELED: "CANCELED",
    StopStatus.REJECTED: "EXPIRED",
}


def algo_order(
    stop: StopOrder,
    *,
    position_side: str,
    working_type: str,
    create_ms: int,
    update_ms: int,
    trigger_ms: int = 0,
    actual: OrderResult | None = None,
    query: bool = False,
) -> Json:
    """POST /fapi/v1/algoOrder (a conditional STOP_MARKET) and, `query`, GET
    /fapi/v1/algoOrder and the rows of GET /fapi/v1/openAlgoOrders, which add the spawned
    order (`actualOrderId`, `actualPrice`) and the TP/SL fields."""
    body: Json = {
        "algoId": exchange_number(stop.exchange_id),
        "clientAlgoId": stop.client_order_id,
        "algoType": "CONDITIONAL",
        "orderType": "STOP_MARKET",
        "symbol": market_id(stop.symbol),
        "side": stop.side.value.upper(),
        "positionSide": position_side,
        "timeInForce": "GTC",
        "quantity": _plain(stop.amount),
        "algoStatus": _ALGO_STATUS[stop.status],
        "triggerPrice": _plain(stop.trigger_price),
        "price": "0.00",
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": working_type,
        "priceMatch": "NONE",
        "closePosition": False,
        "priceProtect": False,
        "reduceOnly": position_side == "BOTH",
        "createTime": create_ms,
        "updateTime": update_ms,
        "triggerTime": trigger_ms,
        "goodTillDate": 0,
    }
    if query:
        body["actualOrderId"] = "" if actual is None else str(exchange_number(actual.exchange_id))
        body["actualPrice"] = _plain((actual.average_price if actual else None) or ZERO)
        body["tpTriggerPrice"] = "0.000"
        body["tpPrice"] = "0.000"
        body["slTriggerPrice"] = "0.000"
        body["slPrice"] = "0.000"
        body["tpOrderType"] = ""
    return body


def algo_canceled(stop: StopOrder) -> Json:
    """DELETE /fapi/v1/algoOrder."""
    return {
        "algoId": exchange_number(stop.exchange_id),
        "clientAlgoId": stop.client_order_id,
        "code": "200",
        "msg": "success",
    }


def transfer(tran_id: int) -> Json:
    return {"tranId": tran_id}


def transfer_rows(rows: Iterable[Json], total: int) -> Json:
    """GET /sapi/v1/asset/transfer: {"total": n, "rows": [...]}."""
    return {"total": total, "rows": list(rows)}


def transfer_row(tran_id: int, asset: str, amount: Decimal, kind: str, at_ms: int) -> Json:
    return {
        "timestamp": at_ms,
        "asset": asset,
        "amount": _plain(amount),
        "type": kind,
        "status": "CONFIRMED",
        "tranId": tran_id,
    }


def position_margin(amount: Decimal, add: bool) -> Json:
    return {
        "amount": float(amount),
        "code": 200,
        "msg": "Successfully modify position margin.",
        "type": 1 if add else 2,
    }


def error(code: int, message: str) -> Json:
    return {"code": code, "msg": message}


def symbols_of(markets: Sequence[str]) -> dict[str, str]:
    """Binance id -> unified symbol."""
    return {market_id(symbol): symbol for symbol in markets}
