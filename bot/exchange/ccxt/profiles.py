"""What differs between Binance USDⓈ-M, Bybit and OKX under ccxt 4.5 (DESIGN.md §7).

One small profile per venue. The adapter asks its profile and never branches on the
venue's name. Everything here touches raw ccxt objects (`Ccxt`, plain dicts); it is
the border, so `Any` stays in this package.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import ccxt.async_support as ccxt

from bot.domain.models import ZERO, MaintenanceTier, MarginMode, Side, WalletBalance
from bot.exchange.ccxt.payloads import (
    decimal_or_none,
    decimal_or_zero,
    entry_for,
    tiers_from_ccxt,
)
from bot.exchange.ccxt.settings import CcxtSettings, CollateralSource, Environment
from bot.exchange.ccxt.urls import classify_by_original_urls, rebase_urls
from bot.exchange.port import CapabilityMissing, OrderRequest

# A ccxt.async_support exchange instance (ccxt ships no type information).
Ccxt = Any
Params = dict[str, Any]

# Names transfer ids are derived from (Bybit wants a UUID, the service gives its own id).
_TRANSFER_NAMESPACE = uuid.UUID("6f1c8a52-3c4e-4d38-9a4b-7c1f0e2b5d90")


class ExchangeProfile:
    """The quirks of one venue. Subclasses override only what differs."""

    exchange_id: ClassVar[str]
    # Options passed to the ccxt constructor.
    options: ClassVar[Mapping[str, Any]] = {}
    # ccxt's `transfer` account names: the derivatives wallet, and each collateral source.
    derivatives_account: ClassVar[str]
    source_accounts: ClassVar[Mapping[CollateralSource, str]]
    can_adjust_margin: ClassVar[bool] = True
    # None of the three documents a minimum transfer above the amount's precision.
    min_transfer: ClassVar[Decimal] = Decimal("0.01")
    transfer_places: ClassVar[int] = 2

    # -- building the ccxt instances ------------------------------------------------

    def check(self, settings: CcxtSettings) -> None:
        """Refuse settings the venue cannot serve, with a message that says what to do."""
        if settings.collateral_source not in self.source_accounts:
            offered = ", ".join(self.source_accounts)
            raise CapabilityMissing(
                f"{self.exchange_id}: collateral_source {settings.collateral_source!r} is not "
                f"available; use {offered}"
            )

    def build(self, settings: CcxtSettings) -> Ccxt:
        """The derivatives-account ccxt instance, in the settings' environment."""
        self.check(settings)
        return self._instance(self.exchange_id, settings)

    def build_source(self, settings: CcxtSettings) -> Ccxt | None:
        """A second instance for reading the source wallet, when the first cannot."""
        return None

    def apply_environment(self, exchange: Ccxt, environment: Environment) -> None:
        raise NotImplementedError

    def _instance(self, ccxt_id: str, settings: CcxtSettings) -> Ccxt:
        config: Params = {"enableRateLimit": True, "options": dict(self.options)}
        if settings.api_key is not None:
            config["apiKey"] = settings.api_key
        if settings.secret is not None:
            config["secret"] = settings.secret
        if settings.password is not None:
            config["password"] = settings.password
        exchange = getattr(ccxt, ccxt_id)(config)
        self.apply_environment(exchange, settings.environment)
        if settings.api_base_url is not None:
            self.point_at(exchange, settings.api_base_url)
        return exchange

    def point_at(self, exchange: Ccxt, base_url: str) -> None:
        """Send every API call to `base_url` (same paths): a proxy, or a loopback fake."""
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], base_url)

    # -- reading balances and positions -------------------------------------------

    def derivatives_balance_params(self) -> Params:
        return {}

    def source_balance_params(self, source: CollateralSource) -> Params:
        return {"type": "funding"}

    def positions_params(self, settle: str) -> Params:
        return {}

    def derivatives_wallet(self, balance: Mapping[str, Any], settle: str) -> WalletBalance:
        """W (wallet balance without unrealized PnL) and what may leave it now."""
        entry = balance.get(settle) or {}
        return WalletBalance(
            decimal_or_zero(entry.get("total")), decimal_or_zero(entry.get("free"))
        )

    async def fetch_collateral_pooling(self, exchange: Ccxt) -> bool | None:
        """Whether collateral is pooled across assets, when only a separate call tells.

        None means the balance payload itself says (see `pooled_equity`).
        """
        return None

    def pooled_equity(
        self, balance: Mapping[str, Any], settle: str, pooling: bool | None
    ) -> Decimal | None:
        """The venue's own cross equity where it pools collateral, else None."""
        return None

    def margin_mode(self, position: Mapping[str, Any], default: MarginMode) -> MarginMode:
        mode = position.get("marginMode")
        return MarginMode(mode) if mode in ("cross", "isolated") else default

    def maintenance_margin(self, position: Mapping[str, Any]) -> Decimal | None:
        return decimal_or_none(position.get("maintenanceMargin"))

    def isolated_margin(self, position: Mapping[str, Any]) -> Decimal:
        """Margin held by an isolated position, without its unrealized PnL."""
        return decimal_or_zero(position.get("positionMargin"))

    async def fetch_tiers(
        self, exchange: Ccxt, symbols: Sequence[str], reload: bool
    ) -> dict[str, tuple[MaintenanceTier, ...]]:
        """Maintenance tiers (notional floor, rate) for `symbols`; {} where unknown."""
        return {}

    # -- writing ------------------------------------------------------------------------

    def order_params(self, request: OrderRequest, hedged: bool, margin_mode: MarginMode) -> Params:
        # 'clientOrderId' is ccxt's unified name: newClientOrderId / orderLinkId / clOrdId.
        params: Params = {"clientOrderId": request.client_order_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        if hedged:
            # ccxt turns this into positionSide / positionIdx / posSide from the order side
            # and reduceOnly (and drops reduceOnly where the venue rejects it in hedge mode).
            params["hedged"] = True
        return params

    def margin_params(self, side: Side, hedged: bool) -> Params:
        return {}

    async def modify_margin(
        self, exchange: Ccxt, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool
    ) -> Decimal | None:
        """Add or remove isolated margin; returns the amount the venue reports taking."""
        params = self.margin_params(side, hedged)
        method = exchange.add_margin if add else exchange.reduce_margin
        result = await method(symbol, float(amount), params)
        return decimal_or_none(result.get("amount"))

    def transfer_params(self, client_id: str) -> Params:
        return {}

    async def find_order(
        self, exchange: Ccxt, symbol: str, client_order_id: str
    ) -> Mapping[str, Any] | None:
        """The order with this client id, or None when the venue does not know it."""
        try:
            order: Mapping[str, Any] = await exchange.fetch_order(
                "", symbol, {"clientOrderId": client_order_id}
            )
        except ccxt.OrderNotFound:
            return None
        return order


class BinanceUsdmProfile(ExchangeProfile):
    """Binance USDⓈ-M futures."""

    exchange_id = "binanceusdm"
    # Without these, load_markets also calls spot and margin endpoints.
    options: ClassVar[Mapping[str, Any]] = {"fetchCurrencies": False, "fetchMargins": False}
    # 'swap' is UMFUTURE: spot -> swap is MAIN_UMFUTURE. Never 'future': ccxt reads an
    # unknown account name as an isolated-margin symbol and moves funds there.
    derivatives_account = "swap"
    source_accounts: ClassVar[Mapping[CollateralSource, str]] = {
        "spot": "spot",
        "funding": "funding",
    }

    def check(self, settings: CcxtSettings) -> None:
        if settings.environment == "testnet":
            # set_sandbox_mode still exists, but every private call then raises NotSupported.
            raise CapabilityMissing(
                "binanceusdm: ccxt 4.5 deprecates the Binance futures testnet; use "
                'environment = "demo" (demo trading, with keys made on demo.binance.com)'
            )
        super().check(settings)

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
        asset = entry_for(balance.get("info", {}).get("assets", []), "asset", settle)
        return WalletBalance(
            decimal_or_zero(asset.get("crossWalletBalance")),
            decimal_or_zero(asset.get("maxWithdrawAmount")),
        )

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
        return decimal_or_none(balance.get("info", {}).get("totalMarginBalance"))

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

    def margin_params(self, side: Side, hedged: bool) -> Params:
        return {"positionSide": side.value.upper()} if hedged else {}


class BybitProfile(ExchangeProfile):
    """Bybit unified trading account (UTA), linear contracts."""

    exchange_id = "bybit"
    options: ClassVar[Mapping[str, Any]] = {"fetchMarkets": {"types": ["linear"]}}
    derivatives_account = "unified"
    source_accounts: ClassVar[Mapping[CollateralSource, str]] = {"funding": "funding"}
    # ccxt has no add_margin / reduce_margin for Bybit.
    can_adjust_margin = False

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

    def transfer_params(self, client_id: str) -> Params:
        # Bybit refuses a transferId it has seen: deriving it from the client id makes a
        # repeated transfer fail instead of moving the money twice.
        return {"transferId": str(uuid.uuid5(_TRANSFER_NAMESPACE, client_id))}

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


class OkxProfile(ExchangeProfile):
    """OKX trading account, perpetual swaps."""

    exchange_id = "okx"
    options: ClassVar[Mapping[str, Any]] = {"fetchMarkets": {"types": ["swap"]}}
    derivatives_account = "trading"
    source_accounts: ClassVar[Mapping[CollateralSource, str]] = {"funding": "funding"}

    def apply_environment(self, exchange: Ccxt, environment: Environment) -> None:
        # OKX's sandbox is its demo trading: same host, header x-simulated-trading: 1.
        if environment in ("testnet", "demo"):
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
        return WalletBalance(decimal_or_zero(detail.get("cashBal")), free)

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
        return decimal_or_none(((response.get("data") or [{}])[0]).get("amt"))

    def transfer_params(self, client_id: str) -> Params:
        # OKX accepts a client id (1-32 letters and digits) on transfers.
        return {"clientId": client_id} if client_id.isalnum() and len(client_id) <= 32 else {}


PROFILES: Mapping[str, type[ExchangeProfile]] = {
    profile.exchange_id: profile for profile in (BinanceUsdmProfile, BybitProfile, OkxProfile)
}


def profile_for(exchange_id: str) -> ExchangeProfile:
    """The profile of a supported venue."""
    try:
        return PROFILES[exchange_id]()
    except KeyError:
        supported = ", ".join(PROFILES)
        raise CapabilityMissing(f"no ccxt profile for {exchange_id!r}; use {supported}") from None


def _okx_account(balance: Mapping[str, Any]) -> Mapping[str, Any]:
    account: Mapping[str, Any] = (balance.get("info", {}).get("data") or [{}])[0]
    return account


def _okx_detail(balance: Mapping[str, Any], settle: str) -> Mapping[str, Any]:
    return entry_for(_okx_account(balance).get("details", []), "ccy", settle)
