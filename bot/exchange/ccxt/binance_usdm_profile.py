"""Binance USDⓈ-M futures under ccxt 4.5 (DESIGN.md §7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, ClassVar

from bot.domain.leverage import liquidation_price, maintenance_margin, unrealized_pnl
from bot.domain.models import (
    ZERO,
    MaintenanceTier,
    MarginMode,
    MarketRules,
    Position,
    Side,
    WalletBalance,
)
from bot.domain.stops import StopStatus
from bot.exchange.ccxt.exchange_profile import (
    Ccxt,
    ExchangeProfile,
    Params,
    TransferQuery,
    transfer_failed,
)
from bot.exchange.ccxt.payloads import (
    StopFields,
    contract_size,
    decimal_or_none,
    decimal_or_zero,
    entry_for,
    text_or_none,
    tiers_from_ccxt,
)
from bot.exchange.ccxt.settings import CcxtSettings, CollateralSource, Environment
from bot.exchange.ccxt.urls import classify_by_original_urls
from bot.exchange.ccxt.verify import agree, empty_but_margined, number, optional_number
from bot.exchange.port import StopRequest, UnverifiedData

# Binance refuses requests more than recvWindow (5 s by default) off its clock.
_CLOCK_SKEW_MS = 5_000
# An algo (conditional) order's algoStatus. TRIGGERING: the trigger fired and the market
# order is being sent (no longer cancellable); FINISHED: that order is done.
_ALGO_STATUS = {
    "NEW": StopStatus.OPEN,
    "TRIGGERING": StopStatus.TRIGGERED,
    "TRIGGERED": StopStatus.TRIGGERED,
    "FINISHED": StopStatus.TRIGGERED,
    "CANCELED": StopStatus.CANCELED,
    "CANCELLED": StopStatus.CANCELED,
    "REJECTED": StopStatus.REJECTED,
    "EXPIRED": StopStatus.REJECTED,
}
_LEG = {"LONG": Side.LONG, "SHORT": Side.SHORT}


class BinanceUsdmProfile(ExchangeProfile):
    """Binance USDⓈ-M futures."""

    exchange_id = "binanceusdm"
    environments = ("live", "demo")
    # set_sandbox_mode still exists, but every private call then raises NotSupported.
    environment_notes: ClassVar[Mapping[str, str]] = {
        "testnet": "ccxt 4.5 deprecates the Binance futures testnet; use "
        'environment = "demo" (demo trading, with keys made on demo.binance.com)'
    }
    default_collateral_source = "spot"
    # Without these, load_markets also calls spot and margin endpoints.
    options: ClassVar[Mapping[str, Any]] = {"fetchCurrencies": False, "fetchMargins": False}
    # 'swap' is UMFUTURE: spot -> swap is MAIN_UMFUTURE. Never 'future': ccxt reads an
    # unknown account name as an isolated-margin symbol and moves funds there.
    derivatives_account = "swap"
    source_accounts: ClassVar[Mapping[CollateralSource, str]] = {
        "spot": "spot",
        "funding": "funding",
    }

    def apply_environment(self, exchange: Ccxt, environment: Environment) -> None:
        if environment == "demo":
            exchange.enable_demo_trading(True)

    def point_at(self, exchange: Ccxt, base_url: str) -> None:
        # ccxt picks Binance's error table (spot, linear, ...) by the request URL's host:
        # behind a rebased URL, -2019 "Margin is insufficient" would no longer read as
        # InsufficientFunds.
        original = exchange.urls["api"]
        super().point_at(exchange, base_url)
        classify_by_original_urls(exchange, original)

    def build_source(self, settings: CcxtSettings) -> Ccxt:
        # binanceusdm.fetch_balance ignores type='spot' / 'funding' (its default subType
        # 'linear' wins) and returns the futures wallet: the spot and funding wallets are
        # read through a plain binance instance with the same keys.
        spot = self._instance("binance", settings)
        # binance.fetch_balance would otherwise load every spot market first.
        spot.set_markets([])
        return spot

    def source_balance_params(self, source: CollateralSource) -> Params:
        return {} if source == "spot" else {"type": "funding"}

    def derivatives_wallet(self, balance: Mapping[str, Any], settle: str) -> WalletBalance:
        # ccxt's total is the margin balance (with uPnL, and isolated wallets): read the
        # cross wallet balance W and the transferable amount from the asset's row.
        assets = balance.get("info", {}).get("assets")
        if not isinstance(assets, list) or not assets:
            raise UnverifiedData("account: no assets")
        asset = entry_for(assets, "asset", settle)
        if not asset:
            # A multi-assets account may hold no USDT at all (its equity is pooled).
            return WalletBalance(ZERO, ZERO)
        # Signed: in multi-assets mode USDT may go negative against other collateral.
        return WalletBalance(
            number(
                asset.get("crossWalletBalance"),
                f"account: {settle} crossWalletBalance",
                signed=True,
            ),
            number(asset.get("maxWithdrawAmount"), f"account: {settle} maxWithdrawAmount"),
        )

    # /fapi/v3/account carries each position's amount, notional, uPnL, maintenance and
    # isolated margin: a steady snapshot is that one request (positionRisk, which has the
    # venue's own mark, confirms a mark the adapter has not seen, or one that jumped).
    positions_in_balance = True

    def balance_positions(
        self, exchange: Ccxt, balance: Mapping[str, Any]
    ) -> list[Mapping[str, Any]] | None:
        info = balance.get("info")
        rows = info.get("positions") if isinstance(info, Mapping) else None
        if not isinstance(rows, list):
            return None  # not the v3 account document: positionRisk tells
        positions: list[Mapping[str, Any]] = []
        for row in rows:
            if not isinstance(row, Mapping) or not isinstance(row.get("symbol"), str):
                raise UnverifiedData("account: a position row names no symbol")
            position = _account_position(exchange, row)
            if position is None:
                return None  # an open leg without a notional: no mark here
            if position:
                positions.append(position)
        return positions

    def with_liquidation_prices(
        self,
        positions: tuple[Position, ...],
        markets: Mapping[str, MarketRules],
        balance: Mapping[str, Any],
        wallet: Decimal,
        pooled: bool,
    ) -> tuple[Position, ...]:
        # Binance's formula, one leg moving at a time (bot.domain.leverage): the other
        # cross legs keep their maintenance and uPnL. In multi-assets mode the cross
        # wallet is the account's, in USD.
        if pooled:
            info: Mapping[str, Any] = balance.get("info") or {}
            wallet = number(
                info.get("totalCrossWalletBalance"), "account: totalCrossWalletBalance", signed=True
            )
        cross = [p for p in positions if p.margin_mode is MarginMode.CROSS and p.priced]
        done: list[Position] = []
        for p in positions:
            rules = markets.get(p.symbol)
            if p.liquidation_price is not None or not p.priced or rules is None:
                done.append(p)
                continue
            if p.margin_mode is MarginMode.ISOLATED:
                liq = liquidation_price(
                    p.side, p.contracts, p.entry_price, p.contract_size, p.isolated_margin,
                    rules.tiers,
                )  # fmt: skip
            elif any(o.symbol == p.symbol and o.side is not p.side for o in positions):
                # Two hedged legs move together; the one-leg formula would misplace it.
                liq = None
            else:
                others = [o for o in cross if o is not p]
                liq = liquidation_price(
                    p.side, p.contracts, p.entry_price, p.contract_size, wallet, rules.tiers,
                    other_maintenance=sum(
                        (maintenance_margin(o, markets.get(o.symbol)) or ZERO for o in others),
                        ZERO,
                    ),
                    other_unrealized=sum((unrealized_pnl(o) for o in others), ZERO),
                )  # fmt: skip
            done.append(replace(p, liquidation_price=liq))
        return tuple(done)

    def verify_source(self, balance: Mapping[str, Any], source: CollateralSource) -> str | None:
        # Spot (/api/v3/account): an object whose `balances` lists every coin held (zero
        # ones may be left out). Funding (get-funding-asset): the list itself.
        info = balance.get("info")
        rows = info.get("balances") if isinstance(info, Mapping) else info
        if not isinstance(rows, list):
            return f"{source} wallet: the reply has no list of balances"
        if not all(isinstance(row, Mapping) and isinstance(row.get("asset"), str) for row in rows):
            return f"{source} wallet: a balance row names no coin"
        return None

    def verify_account(
        self, balance: Mapping[str, Any], positions: Sequence[Mapping[str, Any]], settle: str
    ) -> str | None:
        # The account's totals are one view, positionRisk the other: margin balance is
        # wallet + uPnL, and an account holding maintenance margin (or listing open
        # positions of its own) has positions.
        info: Mapping[str, Any] = balance.get("info") or {}
        wallet = number(info.get("totalWalletBalance"), "account: totalWalletBalance", signed=True)
        upnl = number(
            info.get("totalUnrealizedProfit"), "account: totalUnrealizedProfit", signed=True
        )
        margin = number(info.get("totalMarginBalance"), "account: totalMarginBalance", signed=True)
        problem = agree(
            "account: totalMarginBalance",
            margin,
            wallet + upnl,
            "totalWalletBalance + totalUnrealizedProfit",
        )
        if problem is not None:
            return problem
        held = {
            "totalMaintMargin": number(info.get("totalMaintMargin"), "account: totalMaintMargin")
        }
        initial = optional_number(
            info.get("totalPositionInitialMargin"), "account: totalPositionInitialMargin"
        )
        if initial is not None:
            held["totalPositionInitialMargin"] = initial
        listed = [
            row
            for row in info.get("positions") or []
            if isinstance(row, Mapping) and decimal_or_zero(row.get("positionAmt")) != ZERO
        ]
        if listed:
            held["open positions"] = Decimal(len(listed))
        return empty_but_margined(positions, held)

    async def fetch_collateral_pooling(self, exchange: Ccxt) -> bool:
        # /fapi/v3/account no longer says whether multi-assets mode is on.
        response = await exchange.fapiPrivateGetMultiAssetsMargin()
        return bool(response.get("multiAssetsMargin"))

    def pooled_equity(
        self, balance: Mapping[str, Any], settle: str, pooling: bool | None
    ) -> Decimal | None:
        # In multi-assets mode the account totals are in USD across all collateral
        # (and isolated margin is not allowed, so the margin balance is all cross).
        if not pooling:
            return None
        return number(
            balance.get("info", {}).get("totalMarginBalance"),
            "account: totalMarginBalance",
            signed=True,
        )

    def position_side(self, position: Mapping[str, Any]) -> str | None:
        # ccxt reads the side from the notional's sign, and the notional is 0 or '' when
        # the venue has no mark price: the open leg would vanish from the snapshot (and
        # its exposure with it). The hedge-mode leg, or the amount's sign, still says it.
        side = super().position_side(position)
        if side is not None:
            return side
        info = position.get("info", {})
        leg = str(info.get("positionSide") or "").lower()
        if leg in ("long", "short"):
            return leg
        amount = decimal_or_zero(info.get("positionAmt"))
        if amount == ZERO:
            return None
        return "long" if amount > ZERO else "short"

    def maintenance_margin(self, position: Mapping[str, Any]) -> Decimal | None:
        # ccxt computes rate * notional and forgets the tier's cumulative amount; the
        # venue's own figure is in positionRisk v3.
        reported = decimal_or_none(position.get("info", {}).get("maintMargin"))
        return reported if reported is not None else super().maintenance_margin(position)

    def isolated_margin(self, position: Mapping[str, Any]) -> Decimal:
        return decimal_or_zero(position.get("info", {}).get("isolatedWallet"))

    async def fetch_tiers(
        self, exchange: Ccxt, symbols: Sequence[str], reload: bool
    ) -> dict[str, tuple[MaintenanceTier, ...]]:
        # ccxt keeps the leverage brackets for its own position parsing: reading them
        # through the same cache costs one request for every symbol, shared with it.
        brackets: Mapping[str, Sequence[Sequence[str]]] = await exchange.load_leverage_brackets(
            reload
        )
        return {
            symbol: tiers_from_ccxt(
                [{"minNotional": floor, "maintenanceMarginRate": rate} for floor, rate in rows]
            )
            for symbol, rows in brackets.items()
        }

    async def key_warnings(self, exchange: Ccxt, settings: CcxtSettings) -> list[str]:
        # GET /sapi/v1/account/apiRestrictions: what the key may do, as Binance holds it.
        found: Mapping[str, Any] = await exchange.sapiGetAccountApiRestrictions()
        warnings: list[str] = []
        if found.get("enableWithdrawals") is not False:
            warnings.append(
                "the API key can withdraw funds: turn withdrawals off (levbot never withdraws)"
            )
        if found.get("ipRestrict") is not True:
            warnings.append(
                "the API key is not restricted to trusted IPs: restrict it to this host's address"
            )
        if found.get("enableInternalTransfer") is True:
            warnings.append(
                "the API key can transfer funds to other Binance accounts (internal transfer): "
                "turn it off"
            )
        if found.get("permitsUniversalTransfer") is not True:
            warnings.append(
                "the API key cannot move funds between wallets (Permits Universal Transfer is "
                f"off): collateral cannot come from {settings.collateral_source}; enable it, "
                "or the bot de-levers with orders only"
            )
        if found.get("enableFutures") is not True:
            warnings.append("the API key cannot trade futures: enable futures on the key")
        return warnings

    def margin_params(self, side: Side, hedged: bool) -> Params:
        return {"positionSide": side.value.upper()} if hedged else {}

    async def find_transfer(self, exchange: Ccxt, query: TransferQuery) -> Mapping[str, Any] | None:
        # Universal transfers take no client id: the history (GET /sapi/v1/asset/transfer,
        # type MAIN_UMFUTURE / UMFUTURE_MAIN from ccxt's account names) is matched on
        # direction, currency and amount since the intent was written, less the clock
        # skew Binance tolerates (recvWindow). Two unknown transfers of the same amount
        # in that window would match the same record: good enough to settle, not to audit.
        since = query.since_ms - _CLOCK_SKEW_MS
        transfers = await exchange.fetch_transfers(
            query.currency,
            since,
            None,
            {"fromAccount": query.origin, "toAccount": query.destination},
        )
        for transfer in sorted(transfers, key=lambda t: t.get("timestamp") or 0):
            if (
                not transfer_failed(transfer)
                and (transfer.get("timestamp") or 0) >= since
                and decimal_or_none(transfer.get("amount")) == query.amount
            ):
                found: Mapping[str, Any] = transfer
                return found
        return None

    # -- backstops ----------------------------------------------------------------------

    def stop_order_args(
        self, request: StopRequest, trigger: str, hedged: bool, margin_mode: MarginMode
    ) -> tuple[str, float | None, Params]:
        # Since December 2025 USDⓈ-M conditional orders go to the algo order endpoint:
        # ccxt 4.5 sends a market order with a triggerPrice there (POST /fapi/v1/algoOrder,
        # algoType CONDITIONAL, type STOP_MARKET, clientAlgoId from clientOrderId).
        # workingType MARK_PRICE: triggered by the mark, as liquidation is.
        params: Params = {
            "triggerPrice": trigger,
            "workingType": "MARK_PRICE",
            "clientOrderId": request.client_order_id,
            "reduceOnly": True,
        }
        if hedged:
            # ccxt drops reduceOnly (refused in hedge mode) and names the leg it closes.
            params["hedged"] = True
        return "market", None, params

    def stop_fields(self, order: Mapping[str, Any]) -> StopFields:
        info: Mapping[str, Any] = order.get("info") or {}
        word = str(info.get("algoStatus") or "")
        side = str(info.get("side") or "").lower()
        leg = _LEG.get(str(info.get("positionSide") or ""))
        closes = leg is not None and side == leg.closing_order_side.value
        return StopFields(
            exchange_id=info.get("algoId"),
            client_order_id=info.get("clientAlgoId"),
            side=side,
            amount=info.get("quantity"),
            trigger_price=info.get("triggerPrice"),
            status=_ALGO_STATUS.get(word),
            word=word,
            backstop=info.get("orderType") == "STOP_MARKET"
            and (info.get("reduceOnly") is True or info.get("closePosition") is True or closes),
            position_side=leg,
            # The algo order holds no fill: the market order it sent (actualOrderId) does.
            spawned_order_id=text_or_none(info.get("actualOrderId")),
        )


# Prices derived from the account's figures carry no more places than Binance's own.
_PRICE_PLACES = Decimal("1e-8")


def _account_position(exchange: Ccxt, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ccxt-shaped position from one /fapi/v3/account row: mark |notional| / |amount|,
    entry from the uPnL (u = s * q * (m - e)), liquidation left to the tiers. {} for a
    flat row; None when an open row has no notional (the venue has no mark for it)."""
    symbol_id = row["symbol"]
    amount = number(row.get("positionAmt"), f"account: {symbol_id} positionAmt", signed=True)
    if amount == ZERO:
        return {}
    what = f"account: {symbol_id}"
    notional = optional_number(row.get("notional"), f"{what} notional", signed=True)
    if not notional:
        return None
    upnl = number(row.get("unrealizedProfit"), f"{what} unrealizedProfit", signed=True)
    market: Mapping[str, Any] = exchange.safe_market(symbol_id, None, None, "contract")
    size = contract_size(market)
    quantity = abs(amount) * size
    sign = 1 if amount > ZERO else -1
    mark = (abs(notional) / quantity).quantize(_PRICE_PLACES)
    entry = ((abs(notional) - sign * upnl) / quantity).quantize(_PRICE_PLACES)
    leg = str(row.get("positionSide") or "BOTH")
    isolated = decimal_or_zero(row.get("isolatedWallet")) != ZERO or (
        decimal_or_zero(row.get("isolatedMargin")) != ZERO
    )
    return {
        "info": row,
        "symbol": market.get("symbol") or symbol_id,
        "contracts": str(abs(amount)),
        "contractSize": str(size),
        "side": "long" if sign > 0 else "short",
        "notional": str(abs(notional)),
        "markPrice": str(mark),
        "entryPrice": str(entry),
        "unrealizedPnl": str(upnl),
        "liquidationPrice": None,
        "maintenanceMargin": row.get("maintMargin"),
        "marginMode": "isolated" if isolated else "cross",
        "hedged": leg != "BOTH",
    }
