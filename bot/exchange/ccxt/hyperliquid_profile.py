"""Hyperliquid perpetuals (the USDC perp clearinghouse) under ccxt 4.5 (DESIGN.md §7)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from bot.domain.models import ONE, ZERO, MaintenanceTier, MarginMode, Side, WalletBalance
from bot.domain.stops import StopStatus
from bot.exchange.ccxt.exchange_profile import Ccxt, Credential, ExchangeProfile, Params
from bot.exchange.ccxt.payloads import StopFields, decimal_or_none
from bot.exchange.ccxt.settings import CcxtSettings, CollateralSource, Environment
from bot.exchange.ccxt.verify import agree, empty_but_margined, number
from bot.exchange.port import (
    CapabilityMissing,
    InvalidOrder,
    OrderRequest,
    StopRequest,
    UnverifiedData,
)

WALLET_ADDRESS = Credential("wallet_address", "walletAddress")
PRIVATE_KEY = Credential("private_key", "privateKey")

# A market order is an immediate-or-cancel limit order at the mark moved by this much
# against us: the worst price it may fill at. Ours, not left to ccxt's default (also 5%).
MARKET_SLIPPAGE = Decimal("0.05")
# Account modes in which spot balances back the perps (the clearinghouse state alone
# no longer holds the account's equity).
_POOLED_ABSTRACTIONS = frozenset({"unifiedAccount", "portfolioMargin"})
# A trigger order's status (orderStatus): open while it rests ("waitingForTrigger" in
# the reply to placing it); triggered, then filled, once the mark crossed; canceled (or
# a reason ending in Canceled, e.g. reduceOnlyCanceled when the position closed first).
_TRIGGER_STATUS = {
    "open": StopStatus.OPEN,
    "waitingForTrigger": StopStatus.OPEN,
    "triggered": StopStatus.TRIGGERED,
    "filled": StopStatus.TRIGGERED,
    "canceled": StopStatus.CANCELED,
    "rejected": StopStatus.REJECTED,
}
_CLOID = re.compile(r"0x[0-9a-f]{32}")


def cloid(client_order_id: str) -> str:
    """Hyperliquid's client order id (0x + 32 hex digits) for one of ours: always the same
    one, so an order placed before a restart is found by the id the journal kept."""
    return "0x" + hashlib.sha256(client_order_id.encode()).hexdigest()[:32]


async def _approve_no_builder() -> bool:
    return True


class HyperliquidProfile(ExchangeProfile):
    """Hyperliquid perpetuals: one USDC perp account beside the spot account."""

    exchange_id = "hyperliquid"
    environments = ("live", "testnet")
    environment_notes: ClassVar[Mapping[str, str]] = {
        "demo": 'hyperliquid trades on paper on its testnet; use environment = "testnet" '
        "(with a wallet funded on app.hyperliquid-testnet.xyz)"
    }
    credentials = (WALLET_ADDRESS, PRIVATE_KEY)
    default_settle = "USDC"
    default_collateral_source = "spot"
    source_notes: ClassVar[Mapping[str, str]] = {
        "funding": "hyperliquid has no funding wallet; USDC moves between spot and perps"
    }
    can_hedge = False
    options: ClassVar[Mapping[str, Any]] = {
        # Perps only: no spot or HIP-3 market lists on every load.
        "fetchMarkets": {"types": ["swap"]},
        # ccxt otherwise signs a setReferrer action on the first authenticated call.
        "refSet": True,
        # No builder fee on our orders (ccxt's default adds 0.01% to every fill).
        "builderFee": False,
        # Read the perp clearinghouse, never the spot one ccxt switches to for unified
        # accounts (those are refused in fetch_collateral_pooling).
        "enableUnifiedMargin": False,
    }
    # usdClassTransfer between the two (ccxt also accepts 'perp' for 'swap').
    derivatives_account = "swap"
    source_accounts: ClassVar[Mapping[CollateralSource, str]] = {"spot": "spot"}
    # Hyperliquid documents no minimum for usdClassTransfer.
    min_transfer = Decimal("0.01")
    transfer_places = 2

    def check(self, settings: CcxtSettings) -> None:
        super().check(settings)
        if settings.settle != self.default_settle:
            raise CapabilityMissing(
                f"{self.exchange_id}: settle {settings.settle!r}: the perp clearinghouse "
                f"settles in {self.default_settle}"
            )

    def build(self, settings: CcxtSettings) -> Ccxt:
        exchange = super().build(settings)
        # Before the first order (and on loading markets) ccxt signs an approveBuilderFee
        # action for its own builder address, then tags every order with that builder:
        # a write to the owner's account nobody asked for. Without the approval, ccxt
        # attaches no builder.
        exchange.handle_builder_fee_approval = _approve_no_builder
        return exchange

    def apply_environment(self, exchange: Ccxt, environment: Environment) -> None:
        # api.hyperliquid-testnet.xyz, and actions signed for the testnet chain.
        if environment == "testnet":
            exchange.set_sandbox_mode(True)

    # -- reading ------------------------------------------------------------------------

    async def fetch_collateral_pooling(self, exchange: Ccxt) -> None:
        # Asked with the markets: a unified or portfolio-margin account pools spot
        # collateral into the perps, and its equity is not the clearinghouse state's.
        abstraction = await exchange.publicPostInfo(
            {"type": "userAbstraction", "user": exchange.walletAddress}
        )
        if str(abstraction).strip('"') in _POOLED_ABSTRACTIONS:
            raise CapabilityMissing(
                f"{self.exchange_id}: the account runs as {abstraction!s} (spot balances "
                "back the perps); levbot reads a standard perp account only"
            )

    def derivatives_balance_params(self) -> Params:
        return {"type": "swap"}

    def source_balance_params(self, source: CollateralSource) -> Params:
        return {"type": "spot"}

    def derivatives_wallet(self, balance: Mapping[str, Any], settle: str) -> WalletBalance:
        # ccxt's total is marginSummary.accountValue: equity with every position's uPnL
        # and the isolated positions' margin in it. W is the cross account's cash:
        # totalRawUsd + sum(szi * entryPx) over the cross positions. Hyperliquid's own
        # accountValue is totalRawUsd + sum(szi * mark), so W + sum(u_p) (u_p at the mark
        # positionValue / |szi|) gives it back to the last digit, where subtracting the
        # payload's unrealizedPnl (rounded separately) would not.
        state: Mapping[str, Any] = balance.get("info") or {}
        raw_usd = decimal_or_none((state.get("crossMarginSummary") or {}).get("totalRawUsd"))
        if raw_usd is None:
            raise UnverifiedData(f"{self.exchange_id}: clearinghouse state without totalRawUsd")
        cross = [p for p in _positions(state) if _leverage(p).get("type") == "cross"]
        cash = raw_usd + sum((_size(p) * _entry(p) for p in cross), ZERO)
        withdrawable = decimal_or_none(state.get("withdrawable"))
        return WalletBalance(cash, withdrawable if withdrawable is not None else ZERO)

    def verify_account(
        self, balance: Mapping[str, Any], positions: Sequence[Mapping[str, Any]], settle: str
    ) -> str | None:
        # Within one clearinghouse state, accountValue is totalRawUsd plus every
        # position's signed value; the positions come from a second read of that state,
        # a few milliseconds later, and must add up to its total notional.
        state: Mapping[str, Any] = balance.get("info") or {}
        summary = state.get("marginSummary")
        if not isinstance(summary, Mapping):
            return "clearinghouse state without marginSummary"
        value = number(summary.get("accountValue"), "marginSummary.accountValue", signed=True)
        raw_usd = number(summary.get("totalRawUsd"), "marginSummary.totalRawUsd", signed=True)
        total = number(summary.get("totalNtlPos"), "marginSummary.totalNtlPos")
        own = sum((_signed_value(p) for p in _positions(state)), ZERO)
        problem = agree(
            "marginSummary.accountValue", value, raw_usd + own, "totalRawUsd + position values"
        )
        if problem is not None:
            return problem
        rows = [(row.get("info") or {}).get("position") or {} for row in positions]
        read = sum((abs(_signed_value(row)) for row in rows), ZERO)
        if positions:
            return agree("marginSummary.totalNtlPos", total, read, "the positions' values")
        return empty_but_margined(positions, {"totalNtlPos": total})

    def maintenance_margin(self, position: Mapping[str, Any]) -> Decimal | None:
        # Hyperliquid reports the account's crossMaintenanceMarginUsed, never a position's:
        # the domain computes each from the margin tiers (fetch_tiers).
        return None

    def isolated_margin(self, position: Mapping[str, Any]) -> Decimal:
        # marginUsed of an isolated position already holds its uPnL (it is
        # rawUsd + szi * mark); the margin without it is rawUsd + szi * entryPx.
        raw: Mapping[str, Any] = (position.get("info") or {}).get("position") or {}
        raw_usd = decimal_or_none(_leverage(raw).get("rawUsd"))
        if raw_usd is None:
            return ZERO
        return raw_usd + _size(raw) * _entry(raw)

    async def fetch_tiers(
        self, exchange: Ccxt, symbols: Sequence[str], reload: bool
    ) -> dict[str, tuple[MaintenanceTier, ...]]:
        # One `meta` read: each asset's marginTableId, and the tiered tables by id.
        meta: Mapping[str, Any] = await exchange.publicPostInfo({"type": "meta"})
        tables = {
            str(entry[0]): (entry[1] or {}).get("marginTiers") or []
            for entry in meta.get("marginTables") or []
            if isinstance(entry, list) and len(entry) == 2
        }
        assets = {str(asset.get("name")): asset for asset in meta.get("universe") or []}
        tiers: dict[str, tuple[MaintenanceTier, ...]] = {}
        for symbol in symbols:
            asset = assets.get(str(exchange.market(symbol).get("baseName")))
            if asset is not None:
                tiers[symbol] = _margin_tiers(asset, tables)
        return tiers

    # -- writing ------------------------------------------------------------------------

    def order_params(self, request: OrderRequest, hedged: bool, margin_mode: MarginMode) -> Params:
        # No hedge mode on Hyperliquid: a reduce-only order closes the one-way position.
        params: Params = {
            "clientOrderId": cloid(request.client_order_id),
            "slippage": str(MARKET_SLIPPAGE),
        }
        if request.reduce_only:
            params["reduceOnly"] = True
        return params

    def order_price(self, request: OrderRequest, mark: Decimal | None) -> float | None:
        # ccxt sends a market order as an IOC limit at this price moved by the slippage.
        if mark is None or mark <= ZERO:
            raise InvalidOrder(
                f"{request.symbol}: no mark price from the last snapshot to bound the "
                "market order's price"
            )
        return float(mark)

    async def modify_margin(
        self, exchange: Ccxt, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool
    ) -> Decimal | None:
        # updateIsolatedMargin carries ntli = USDC * 1e6, but ccxt first rounds the USDC
        # amount to the coin's size step (szDecimals): report what it sent.
        await super().modify_margin(exchange, symbol, side, amount, add, hedged)
        return Decimal(exchange.amount_to_precision(symbol, float(amount)))

    def transfer_acknowledged(self, result: Mapping[str, Any]) -> bool:
        # usdClassTransfer answers {"status": "ok", "response": {"type": "default"}}: no id
        # (and ccxt's status defaults to "ok" even for a garbled body: read the reply).
        info = result.get("info")
        return isinstance(info, Mapping) and info.get("status") == "ok"

    async def find_order(
        self, exchange: Ccxt, symbol: str, client_order_id: str
    ) -> Mapping[str, Any] | None:
        # orderStatus by cloid; Hyperliquid answers unknownOid (OrderNotFound) otherwise.
        return await super().find_order(exchange, symbol, cloid(client_order_id))

    # -- backstops ----------------------------------------------------------------------

    def stop_order_args(
        self, request: StopRequest, trigger: str, hedged: bool, margin_mode: MarginMode
    ) -> tuple[str, float | None, Params]:
        # A trigger order {isMarket: true, triggerPx, tpsl: "sl"}, reduce-only; Hyperliquid
        # triggers TP/SL orders on the mark. ccxt's price is the trigger moved by the
        # slippage: the worst price the triggered market order may fill at.
        params: Params = {
            "stopLossPrice": trigger,
            "reduceOnly": True,
            "clientOrderId": stop_cloid(request.client_order_id),
            "slippage": str(MARKET_SLIPPAGE),
        }
        return "market", float(trigger), params

    def stop_fields(self, order: Mapping[str, Any]) -> StopFields:
        # orderStatus wraps the order ({order: {order: {...}, status}}); frontendOpenOrders
        # rows are the order itself (open); the reply to placing is a status or {resting}.
        info: Mapping[str, Any] = order.get("info") or {}
        inner = info.get("order")
        entry: Mapping[str, Any] = inner if isinstance(inner, Mapping) else info
        word = str(info.get("status") or ("open" if "oid" in entry else ""))
        status = _TRIGGER_STATUS.get(word)
        if status is None and word.endswith("Canceled"):
            status = StopStatus.CANCELED
        elif status is None and word.endswith("Rejected"):
            status = StopStatus.REJECTED
        side = {"A": "sell", "B": "buy"}.get(str(entry.get("side")), "")
        resting = info.get("resting")
        return StopFields(
            exchange_id=entry.get("oid")
            or (resting.get("oid") if isinstance(resting, Mapping) else None),
            client_order_id=entry.get("cloid"),
            side=side,
            amount=entry.get("origSz"),
            trigger_price=entry.get("triggerPx"),
            status=status,
            word=word,
            backstop=entry.get("isTrigger") is True
            and entry.get("orderType") == "Stop Market"
            and entry.get("reduceOnly") is True,
            # What the payload holds: the trigger order's size left (no average price).
            filled=order.get("filled") if status is StopStatus.TRIGGERED else None,
        )

    def stop_cancel_params(self) -> Params:
        # POST /exchange {type: cancel, cancels: [{a, o}]} by the order id.
        return {}

    async def fetch_open_stops(
        self, exchange: Ccxt, symbols: Sequence[str]
    ) -> list[Mapping[str, Any]]:
        # One frontendOpenOrders read lists every open order of the account.
        rows: list[Mapping[str, Any]] = await exchange.fetch_open_orders()
        return [row for row in rows if row.get("symbol") in symbols]

    async def find_stop(
        self, exchange: Ccxt, symbol: str, client_order_id: str
    ) -> Mapping[str, Any] | None:
        # orderStatus by cloid (ccxt would send a `trigger` param into the info body).
        return await super().find_order(exchange, symbol, stop_cloid(client_order_id))


def stop_cloid(client_order_id: str) -> str:
    """The cloid of a stop: ours hashed (`cloid`), or the venue's own form as listed."""
    return client_order_id if _CLOID.fullmatch(client_order_id) else cloid(client_order_id)


def _positions(state: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """The `position` entries of a clearinghouse state's assetPositions."""
    for entry in state.get("assetPositions") or []:
        yield entry.get("position") or {}


def _leverage(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """A raw position's leverage block: {type, value} (isolated: and rawUsd)."""
    leverage: Mapping[str, Any] = raw.get("leverage") or {}
    return leverage


def _size(raw: Mapping[str, Any]) -> Decimal:
    """szi: signed, positive for a long."""
    return _number(raw, "szi")


def _entry(raw: Mapping[str, Any]) -> Decimal:
    return _number(raw, "entryPx")


def _number(raw: Mapping[str, Any], key: str) -> Decimal:
    value = decimal_or_none(raw.get(key))
    if value is None:
        raise UnverifiedData(f"hyperliquid: position {raw.get('coin')} without {key}")
    return value


def _signed_value(raw: Mapping[str, Any]) -> Decimal:
    """positionValue (|szi| * mark) with the sign of szi."""
    value = number(raw.get("positionValue"), f"position {raw.get('coin')}: positionValue")
    return value if _size(raw) >= ZERO else -value


def _margin_tiers(
    asset: Mapping[str, Any], tables: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[MaintenanceTier, ...]:
    """An asset's maintenance tiers: from each tier's notional lower bound, the rate is
    half the initial margin at the tier's max leverage, 1 / (2 * maxLeverage).

    `meta` lists only tiered tables; a flat table is the asset's maxLeverage from 0 on.
    """
    rows = tables.get(str(asset.get("marginTableId")))
    if rows is None:
        rows = [{"lowerBound": "0", "maxLeverage": asset.get("maxLeverage")}]
    tiers = []
    for row in rows:
        floor = decimal_or_none(row.get("lowerBound"))
        leverage = decimal_or_none(row.get("maxLeverage"))
        if floor is None or leverage is None or leverage <= ZERO:
            return ()
        tiers.append(MaintenanceTier(floor, ONE / (2 * leverage)))
    return tuple(sorted(tiers, key=lambda tier: tier.floor))
