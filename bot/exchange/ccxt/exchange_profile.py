"""The quirks every venue shares, and the hooks a venue's profile overrides (DESIGN.md §7).

Everything here touches raw ccxt objects (`Ccxt`, plain dicts); it is the border, so
`Any` stays in this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import ccxt.async_support as ccxt

from bot.domain.models import (
    ZERO,
    MaintenanceTier,
    MarginMode,
    MarketRules,
    Position,
    Side,
    WalletBalance,
)
from bot.exchange.ccxt.payloads import StopFields, decimal_or_none, decimal_or_zero
from bot.exchange.ccxt.settings import CcxtSettings, CollateralSource, Environment
from bot.exchange.ccxt.urls import rebase_urls
from bot.exchange.ccxt.verify import number
from bot.exchange.port import CapabilityMissing, OrderRequest, OutcomeUnknown, StopRequest


def transfer_failed(transfer: Mapping[str, Any]) -> bool:
    """Whether a ccxt transfer structure is one the venue refused or undid (ccxt maps
    some venues' status to "failed" and passes others' through, e.g. Binance "FAILED")."""
    return str(transfer.get("status") or "").lower() == "failed"


def acknowledged(reply: object, what: str) -> Mapping[str, Any]:
    """`reply` when it is a JSON object; else the reply was cut short or garbled and the
    write it answers may or may not have happened."""
    if not isinstance(reply, Mapping):
        raise OutcomeUnknown(f"{what}: the reply is unreadable")
    return reply


# A ccxt.async_support exchange instance (ccxt ships no type information).
Ccxt = Any
Params = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TransferQuery:
    """A transfer to look up: what was sent, in ccxt's account names, and since when
    (ms since epoch: the intent's time, written before the call)."""

    client_id: str
    currency: str
    amount: Decimal
    origin: str
    destination: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class Credential:
    """One credential a venue needs: its key in the config, and in ccxt's constructor."""

    name: str
    ccxt_key: str


API_KEY = Credential("api_key", "apiKey")
SECRET = Credential("secret", "secret")
PASSWORD = Credential("password", "password")


class ExchangeProfile:
    """The quirks of one venue. Subclasses override only what differs.

    The class attributes up to `can_adjust_margin` are the venue's declaration: the
    config validates an account against them, so a new venue is one profile and one
    line in `profiles.PROFILES`.
    """

    exchange_id: ClassVar[str]
    # The environments ccxt can reach for this venue, and what to say about the others.
    environments: ClassVar[tuple[Environment, ...]] = ("live",)
    environment_notes: ClassVar[Mapping[str, str]] = {}
    # What the config must name (as ${ENV_VAR}s), in the order a user is told about them.
    credentials: ClassVar[tuple[Credential, ...]] = (API_KEY, SECRET)
    default_settle: ClassVar[str] = "USDT"
    default_collateral_source: ClassVar[CollateralSource] = "spot"
    # Why a collateral source the venue lacks is missing, told with the refusal.
    source_notes: ClassVar[Mapping[str, str]] = {}
    can_hedge: ClassVar[bool] = True
    # Options passed to the ccxt constructor.
    options: ClassVar[Mapping[str, Any]] = {}
    # ccxt's `transfer` account names: the derivatives wallet, and each collateral source.
    derivatives_account: ClassVar[str]
    source_accounts: ClassVar[Mapping[CollateralSource, str]]
    can_adjust_margin: ClassVar[bool] = True
    # None of the three documents a minimum transfer above the amount's precision.
    min_transfer: ClassVar[Decimal] = Decimal("0.01")
    transfer_places: ClassVar[int] = 2
    # Whether ccxt's position `notional` is amount x mark (checked against them when so).
    notional_at_mark: ClassVar[bool] = True
    # Whether the balance reply lists every position with what a snapshot needs: then a
    # steady snapshot is that one request (see `balance_positions`).
    positions_in_balance: ClassVar[bool] = False

    # -- building the ccxt instances ------------------------------------------------

    @classmethod
    def environment_problem(cls, environment: str) -> str | None:
        """Why the venue cannot serve `environment`, or None when it can."""
        if environment in cls.environments:
            return None
        offered = ", ".join(cls.environments)
        note = cls.environment_notes.get(environment)
        return note or f"{cls.exchange_id} offers {offered} through ccxt"

    @classmethod
    def source_problem(cls, source: str) -> str | None:
        """Why `source` cannot be the collateral source, or None when it can."""
        if source in cls.source_accounts:
            return None
        offered = ", ".join(cls.source_accounts)
        note = cls.source_notes.get(source)
        return f"{note}; use {offered}" if note else f"not available; use {offered}"

    def check(self, settings: CcxtSettings) -> None:
        """Refuse settings the venue cannot serve, with a message that says what to do."""
        problem = self.environment_problem(settings.environment)
        if problem is not None:
            raise CapabilityMissing(f"{self.exchange_id}: environment: {problem}")
        problem = self.source_problem(settings.collateral_source)
        if problem is not None:
            raise CapabilityMissing(
                f"{self.exchange_id}: collateral_source {settings.collateral_source!r}: {problem}"
            )
        if settings.hedged and not self.can_hedge:
            raise CapabilityMissing(f"{self.exchange_id}: the venue has no hedge mode")

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
        for credential in self.credentials:
            value = settings.credentials.get(credential.name)
            if value is not None:
                config[credential.ccxt_key] = value
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
        """W (wallet balance without unrealized PnL) and what may leave it now.

        No entry for `settle` is an empty wallet; an entry that is not numbers is refused.
        """
        entry = balance.get(settle) or {}
        if not entry:
            return WalletBalance(ZERO, ZERO)
        # Signed: a unified account may owe the settle coin against other collateral.
        return WalletBalance(
            number(entry.get("total"), f"balance: {settle} total", signed=True),
            number(entry.get("free"), f"balance: {settle} free", signed=True),
        )

    def balance_positions(
        self, exchange: Ccxt, balance: Mapping[str, Any]
    ) -> list[Mapping[str, Any]] | None:
        """Where `positions_in_balance`: ccxt-shaped positions built from the balance reply
        alone, their marks derived from it (the adapter confirms a mark it has not seen
        with the positions endpoint). None: the reply cannot tell (read the positions)."""
        return None

    def with_liquidation_prices(
        self,
        positions: tuple[Position, ...],
        markets: Mapping[str, MarketRules],
        balance: Mapping[str, Any],
        wallet: Decimal,
        pooled: bool,
    ) -> tuple[Position, ...]:
        """`positions` with the liquidation prices the venue did not report, where the
        profile can work them out (from the tiers in `markets`)."""
        return positions

    def verify_source(self, balance: Mapping[str, Any], source: CollateralSource) -> str | None:
        """Why the source wallet's reply is not the complete document the venue sends, or
        None. A coin missing from a complete reply is a zero balance; a reply missing the
        list itself (or rows without their coin) is garbled, and the balance unknown."""
        return None

    def verify_account(
        self, balance: Mapping[str, Any], positions: Sequence[Mapping[str, Any]], settle: str
    ) -> str | None:
        """Why the balance and positions replies (the venue's two views of one account)
        contradict each other, or None when they agree or the venue gives one view only.
        May raise `UnverifiedData` for a field the check needs that is not a number."""
        return None

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

    def position_side(self, position: Mapping[str, Any]) -> str | None:
        """'long' or 'short'; None when the payload does not say."""
        side = position.get("side")
        return side if side in ("long", "short") else None

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

    def order_price(self, request: OrderRequest, mark: Decimal | None) -> float | None:
        """The price ccxt is given with a market order (`mark`: the leg's mark price at the
        last snapshot, None when unknown). None where the venue needs no price."""
        return None

    def margin_params(self, side: Side, hedged: bool) -> Params:
        return {}

    async def modify_margin(
        self, exchange: Ccxt, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool
    ) -> Decimal | None:
        """Add or remove isolated margin; returns the amount the venue reports taking."""
        params = self.margin_params(side, hedged)
        method = exchange.add_margin if add else exchange.reduce_margin
        result = await method(symbol, float(amount), params)
        acknowledged(result.get("info"), f"margin change on {symbol}")
        return decimal_or_none(result.get("amount"))

    def transfer_params(self, client_id: str) -> Params:
        return {}

    def transfer_acknowledged(self, result: Mapping[str, Any]) -> bool:
        """Whether ccxt's transfer structure shows the venue took the transfer (ccxt
        makes one out of a truncated or empty body too, with no id)."""
        return isinstance(result.get("info"), Mapping) and bool(result.get("id"))

    async def find_transfer(self, exchange: Ccxt, query: TransferQuery) -> Mapping[str, Any] | None:
        """The venue's record of the transfer (ccxt's transfer structure: `id`, `amount`),
        or None when it has none or refused it. Where the venue cannot say, raises
        `CapabilityMissing`: the transfer stays unknown."""
        raise CapabilityMissing(f"{self.exchange_id}: transfers cannot be looked up")

    async def key_warnings(self, exchange: Ccxt, settings: CcxtSettings) -> list[str]:
        """What the account's API key may do that it should not (withdraw, trade from
        anywhere), or may not do that the bot needs (transfer), where the venue tells.
        [] where it does not."""
        return []

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

    # -- backstops: reduce-only stop-market orders on the mark (DESIGN.md §11) -----------

    def stop_order_args(
        self, request: StopRequest, trigger: str, hedged: bool, margin_mode: MarginMode
    ) -> tuple[str, float | None, Params]:
        """ccxt `create_order`'s type, price and params for `request` as a reduce-only
        stop-market order triggered by the mark at `trigger` (already at the tick)."""
        raise CapabilityMissing(f"{self.exchange_id}: no stop orders through ccxt here")

    def stop_fields(self, order: Mapping[str, Any]) -> StopFields:
        """The stop in a ccxt order (a reply to placing, listing or looking one up)."""
        raise CapabilityMissing(f"{self.exchange_id}: no stop orders through ccxt here")

    def stop_cancel_params(self) -> Params:
        """ccxt `cancel_order`'s params for a stop, cancelled by its exchange id."""
        return {"trigger": True}

    async def fetch_open_stops(
        self, exchange: Ccxt, symbols: Sequence[str]
    ) -> list[Mapping[str, Any]]:
        """The venue's open conditional orders on `symbols` (ccxt orders, anyone's)."""
        rows: list[Mapping[str, Any]] = []
        for symbol in symbols:
            rows.extend(await exchange.fetch_open_orders(symbol, None, None, {"trigger": True}))
        return rows

    async def find_stop(
        self, exchange: Ccxt, symbol: str, client_order_id: str
    ) -> Mapping[str, Any] | None:
        """The stop sent with this client id in any state, or None when the venue does not
        know it."""
        try:
            order: Mapping[str, Any] = await exchange.fetch_order(
                "", symbol, {"trigger": True, "clientOrderId": client_order_id}
            )
        except ccxt.OrderNotFound:
            return None
        return order
