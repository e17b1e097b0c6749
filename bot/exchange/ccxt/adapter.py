"""The Exchange port on Binance USDⓈ-M, Bybit and OKX, through ccxt's async API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

import ccxt.async_support as ccxt

from bot.clock import Clock, utc_now
from bot.domain.models import (
    ZERO,
    AccountSnapshot,
    MarginMode,
    OrderSide,
    Position,
    Side,
    WalletBalance,
)
from bot.exchange.ccxt import payloads, verify
from bot.exchange.ccxt.errors import (
    RateLimited,
    RetryPolicy,
    SecretFilter,
    redact,
    retrying,
    translated,
)
from bot.exchange.ccxt.exchange_profile import TransferQuery
from bot.exchange.ccxt.market_catalog import MarketCatalog
from bot.exchange.ccxt.profiles import Ccxt, ExchangeProfile, profile_for
from bot.exchange.ccxt.settings import CcxtSettings
from bot.exchange.ccxt.shared_markets import MarketRegistry
from bot.exchange.ccxt.stop_orders import StopDesk
from bot.exchange.port import (
    CapabilityMissing,
    ExchangeError,
    InvalidOrder,
    MarginResult,
    OperationalError,
    OrderRequest,
    OrderResult,
    OutcomeUnknown,
    RequestObserver,
    StopOrder,
    StopRequest,
    TransferResult,
    UnverifiedData,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CcxtExchange:
    """One account on a real venue.

    Reads retry on any `TemporaryError`; writes retry only on `RateLimited` (refused
    before anything happened), since a timed-out write may have gone through. Pass
    `exchange` (and `source_exchange`) to use pre-built ccxt instances, e.g. in tests;
    a venue whose profile needs a source instance (Binance) gets one from `settings`
    unless it is given.
    """

    def __init__(
        self,
        settings: CcxtSettings,
        profile: ExchangeProfile | None = None,
        *,
        exchange: Ccxt | None = None,
        source_exchange: Ccxt | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock = utc_now,
        observer: RequestObserver | None = None,
        markets: MarketRegistry | None = None,
    ) -> None:
        self.name = settings.account
        self._observer = observer
        self.settings = settings
        self.profile = profile if profile is not None else profile_for(settings.exchange_id)
        self.profile.check(settings)
        self._secrets = settings.secrets
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock = clock
        self._exchange = exchange if exchange is not None else self.profile.build(settings)
        self._source = (
            source_exchange if source_exchange is not None else self.profile.build_source(settings)
        )
        for instance in (self._exchange, self._source):
            if instance is not None:
                verify.refuse_cut_json(instance)
        self._log_filter = SecretFilter(self._secrets)
        self._exchange.logger.addFilter(self._log_filter)
        # Markets and tiers are the venue's: shared with every account built with the same
        # registry (one per process); without one, this account's own.
        registry = markets if markets is not None else MarketRegistry()
        if self._source is not None:
            registry.adopt(self._source)
        self._catalog = MarketCatalog(
            self.name, self._exchange, self.profile, settings.settle, settings.symbols,
            self._secrets, clock,
            registry.venue(self._exchange, settings.environment, settings.api_base_url),
        )  # fmt: skip
        # Margin mode of each leg at the last snapshot (OKX orders must name it).
        self._margin_modes: dict[tuple[str, Side], MarginMode] = {}
        # Mark price of each leg at the last snapshot (Hyperliquid's market orders need one).
        self._marks: dict[tuple[str, Side], Decimal] = {}
        self._source_missing_logged = False
        # The mark of each symbol at the last snapshot that verified: a later mark that
        # moved further than settings.max_mark_move is read again before it is believed.
        self._accepted_marks: dict[str, Decimal] = {}
        self._stops = StopDesk(
            self.name,
            self._exchange,
            self.profile,
            secrets=self._secrets,
            retry=self._retry,
            write=self._write,
            observed=self._observed,
            hedged=settings.hedged,
            margin_mode=lambda symbol, side: self._margin_modes.get(
                (symbol, side), settings.margin_mode
            ),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the Exchange port ----------------------------------------------------------

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        return await retrying(
            lambda: self._snapshot(include_source), self._retry, what=f"{self.name}: snapshot"
        )

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        source, unknown = await self._fetch_source_wallet()
        return snapshot.with_source(source, unknown)

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        if amount <= ZERO:
            raise InvalidOrder(f"transfer amount must be positive, got {amount}")
        await self._catalog.ensure()
        source = self.profile.source_accounts[self.settings.collateral_source]
        target = self.profile.derivatives_account
        origin, destination = (source, target) if into_derivatives else (target, source)
        params = self.profile.transfer_params(client_id)
        result = await self._write(
            lambda: self._exchange.transfer(currency, float(amount), origin, destination, params),
            f"transfer {amount} {currency} {origin}->{destination}",
            kind="transfer",
        )
        if not self.profile.transfer_acknowledged(result):
            # ccxt reads a truncated or empty body as a transfer with nothing in it.
            raise OutcomeUnknown(f"transfer {client_id}: the reply does not confirm it")
        return TransferResult(
            transfer_id=str(result.get("id") or client_id),
            currency=currency,
            amount=payloads.decimal_or_none(result.get("amount")) or amount,
            into_derivatives=into_derivatives,
        )

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        if not self.profile.can_adjust_margin:
            raise CapabilityMissing(
                f"{self.profile.exchange_id}: ccxt cannot add or remove isolated margin here"
            )
        if amount <= ZERO:
            raise InvalidOrder(f"margin amount must be positive, got {amount}")
        await self._catalog.ensure()
        taken = await self._write(
            lambda: self.profile.modify_margin(
                self._exchange, symbol, side, amount, add, hedged or self.settings.hedged
            ),
            f"{'add' if add else 'reduce'} margin {amount} on {symbol} {side.value}",
            kind="margin",
        )
        # Binance rounds the amount to the market's amount step: report what it took.
        return MarginResult(
            symbol=symbol, side=side, amount=taken if taken is not None else amount, add=add
        )

    async def create_order(self, request: OrderRequest) -> OrderResult:
        leg = request.position_side
        expected = leg.closing_order_side if request.reduce_only else leg.opening_order_side
        if request.side is not expected:
            verb = "reduce" if request.reduce_only else "add to"
            raise InvalidOrder(f"a {request.side.value} order cannot {verb} a {leg.value} leg")
        if request.amount <= ZERO:
            raise InvalidOrder(f"order amount must be positive, got {request.amount}")
        await self._catalog.ensure()
        mode = self._margin_modes.get((request.symbol, leg), self.settings.margin_mode)
        params = self.profile.order_params(request, request.hedged or self.settings.hedged, mode)
        price = self.profile.order_price(request, self._marks.get((request.symbol, leg)))
        order = await self._write(
            lambda: self._exchange.create_order(
                request.symbol, "market", request.side.value, float(request.amount), price, params
            ),
            f"{request.side.value} {request.amount} {request.symbol} ({request.client_order_id})",
            kind="order",
        )
        if not isinstance(order.get("info"), Mapping) or not order.get("id"):
            # ccxt reads a truncated or empty body as an open order with nothing filled.
            raise OutcomeUnknown(f"order {request.client_order_id}: the reply carries no order")
        return payloads.order_result(
            order,
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            side=request.side,
            amount=request.amount,
        )

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        await self._catalog.ensure()

        async def find() -> Mapping[str, Any] | None:
            with translated(self._secrets):
                return await self.profile.find_order(self._exchange, symbol, client_order_id)

        order = await retrying(find, self._retry, what=f"{self.name}: find {client_order_id}")
        if order is None:
            return None
        side = order.get("side")
        if side not in ("buy", "sell"):
            raise OperationalError(f"order {client_order_id} came back without a side")
        return payloads.order_result(
            order,
            symbol=symbol,
            client_order_id=client_order_id,
            side=OrderSide(side),
            amount=ZERO,
        )

    async def fetch_transfer(
        self,
        client_id: str,
        currency: str,
        amount: Decimal,
        into_derivatives: bool,
        since: datetime,
    ) -> TransferResult | None:
        await self._catalog.ensure()
        source = self.profile.source_accounts[self.settings.collateral_source]
        target = self.profile.derivatives_account
        origin, destination = (source, target) if into_derivatives else (target, source)
        query = TransferQuery(
            client_id, currency, amount, origin, destination, int(since.timestamp() * 1000)
        )

        async def find() -> Mapping[str, Any] | None:
            with translated(self._secrets):
                return await self.profile.find_transfer(self._exchange, query)

        found = await retrying(find, self._retry, what=f"{self.name}: find {client_id}")
        if found is None:
            return None
        return TransferResult(
            transfer_id=str(found.get("id") or client_id),
            currency=currency,
            amount=payloads.decimal_or_none(found.get("amount")) or amount,
            into_derivatives=into_derivatives,
        )

    async def place_stop(self, request: StopRequest) -> StopOrder:
        await self._catalog.ensure()
        return await self._stops.place(request)

    async def cancel_stop(self, order: StopOrder) -> StopOrder:
        await self._catalog.ensure()
        return await self._stops.cancel(order)

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        await self._catalog.ensure()
        return await self._stops.listing(symbols)

    async def fetch_stop(self, symbol: str, client_order_id: str) -> StopOrder | None:
        await self._catalog.ensure()
        return await self._stops.find(symbol, client_order_id)

    async def key_warnings(self) -> list[str]:
        """What the API key may do that it should not, or may not do that the bot needs
        (for `levbot check`); [] where the venue does not tell. A failed look is one
        warning line, never an error: the key's reach is advice, not a reason to stop."""
        try:
            with translated(self._secrets):
                return await self.profile.key_warnings(self._exchange, self.settings)
        except CapabilityMissing:
            return []
        except ExchangeError as error:
            return [f"could not read the API key's permissions: {error}"]

    async def close(self) -> None:
        self._exchange.logger.removeFilter(self._log_filter)
        # Each close waits ccxt's timeout_on_exit (250 ms) for TLS transports: together.
        await asyncio.gather(
            *(ex.close() for ex in (self._exchange, self._source) if ex is not None)
        )

    # -- the snapshot ---------------------------------------------------------------

    async def _snapshot(self, include_source: bool = True) -> AccountSnapshot:
        await self._catalog.ensure()
        settle = self.settings.settle
        in_balance = self.profile.positions_in_balance
        with translated(self._secrets):
            balance, raw_positions, (source, source_unknown) = await _gather(
                self._read(
                    self._exchange.fetch_balance(self.profile.derivatives_balance_params()),
                    "balance",
                ),
                _nothing(None) if in_balance else self._read_positions(),
                self._fetch_source_wallet() if include_source else _nothing((None, False)),
            )
        taken_at = self._clock()
        balance = verify.balance_reply(balance, "balance")
        derived = False
        unsettled: dict[str, tuple[Decimal, Decimal | None]] = {}
        if in_balance:
            rows = self.profile.balance_positions(self._exchange, balance)
            unsettled = {} if rows is None else self._unsettled_marks(rows)
            if rows is not None and not unsettled:
                raw_positions, derived = verify.position_rows(rows), True
            else:
                # A leg seen for the first time, a mark that moved past the bound, or one
                # the balance cannot tell: the positions endpoint (the venue's own marks)
                # builds this snapshot, and must confirm the marks the balance gave.
                with translated(self._secrets):
                    raw_positions = await self._read_positions()
        problem = self.profile.verify_account(balance, raw_positions, settle)
        if problem is not None:
            raise UnverifiedData(f"{self.name}: {problem}")
        positions = self._positions(raw_positions)
        if unsettled:
            second = {p.symbol: p.mark_price for p in positions if p.mark_price}
            for symbol, (mark, change) in sorted(unsettled.items()):
                verify.confirmed_mark(symbol, mark, second.get(symbol), change)
        elif not derived:
            await self._confirm_marks(positions)
        derivatives = self.profile.derivatives_wallet(balance, settle)
        pooled_equity = self.profile.pooled_equity(balance, settle, self._catalog.pooling)
        if derivatives.total < ZERO and pooled_equity is None:
            # Only an account pooling other collateral may owe the settle currency.
            raise UnverifiedData(f"{self.name}: wallet balance {derivatives.total} is negative")
        markets = await self._catalog.rules({p.symbol for p in positions})
        if derived:
            positions = self.profile.with_liquidation_prices(
                positions, markets, balance, derivatives.total, pooled_equity is not None
            )
        self._margin_modes = {(p.symbol, p.side): p.margin_mode for p in positions}
        self._marks = {(p.symbol, p.side): p.mark_price for p in positions if p.mark_price}
        self._accepted_marks = {p.symbol: p.mark_price for p in positions if p.mark_price}
        return AccountSnapshot(
            account=self.name,
            settle=settle,
            taken_at=taken_at,
            derivatives=derivatives,
            source=source,
            positions=positions,
            markets=markets,
            pooled_equity=pooled_equity,
            min_transfer=self.profile.min_transfer,
            transfer_places=self._catalog.transfer_places(),
            can_adjust_margin=self.profile.can_adjust_margin,
            source_unknown=source_unknown,
            source_read=include_source,
            watched=frozenset(self.settings.symbols),
        )

    async def _read(self, call: Awaitable[T], what: str) -> T:
        """Await one ccxt read; a reply ccxt could not parse is unverified, not a bug."""
        try:
            with self._observed(what):
                return await call
        except ccxt.BadResponse as error:
            raise UnverifiedData(f"{self.name}: {what}: {error}") from None
        except ccxt.ExchangeError as error:
            if type(error) is not ccxt.ExchangeError:
                raise
            # ccxt's bare base class: a reply it could not classify at all (Bybit and
            # OKX answered `{}` with it). A read changed nothing: try again later.
            raise UnverifiedData(f"{self.name}: {what}: reply not understood") from None
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
            # ccxt parsed a garbled reply (a body cut short, a field not a number) into a
            # Python error. Only the error's type is told: its text may quote the reply.
            raise UnverifiedData(
                f"{self.name}: {what}: reply could not be parsed ({type(error).__name__})"
            ) from None

    async def _read_positions(self) -> list[Mapping[str, Any]]:
        """Every position of the account (all symbols: they share the collateral)."""
        params = self.profile.positions_params(self.settings.settle)
        rows = await self._read(self._exchange.fetch_positions(None, params), "positions")
        return verify.position_rows(rows)

    def _unsettled_marks(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, tuple[Decimal, Decimal | None]]:
        """The marks a balance gave (notional / amount) that are not to be believed alone:
        first seen (change None), or moved past the bound since the last snapshot."""
        unsettled: dict[str, tuple[Decimal, Decimal | None]] = {}
        for row in rows:
            mark = payloads.decimal_or_none(row.get("markPrice"))
            symbol = row.get("symbol")
            if mark is None or mark <= ZERO or not isinstance(symbol, str):
                continue
            last = self._accepted_marks.get(symbol)
            if last is None:
                unsettled[symbol] = (mark, None)
            elif abs(mark - last) / last > self.settings.max_mark_move:
                unsettled[symbol] = (mark, abs(mark - last) / last)
        if any(change is not None for _, change in unsettled.values()):
            logger.warning("%s: marks moved past %s, reading the positions: %s", self.name,
                           self.settings.max_mark_move, unsettled)  # fmt: skip
        return unsettled

    async def _confirm_marks(self, positions: tuple[Position, ...]) -> None:
        """Read the positions again when a mark moved past the bound since the last
        snapshot; believe the move only when the second read confirms it."""
        bound = self.settings.max_mark_move
        jumped: dict[str, tuple[Decimal, Decimal]] = {}
        for position in positions:
            last = self._accepted_marks.get(position.symbol)
            mark = position.mark_price
            if last is None or mark is None:
                continue
            moved = abs(mark - last) / last
            if moved > bound:
                jumped[position.symbol] = (mark, moved)
        if not jumped:
            return
        logger.warning("%s: marks moved past %s, reading again: %s", self.name, bound, jumped)
        with translated(self._secrets):
            again = self._positions(await self._read_positions())
        second = {p.symbol: p.mark_price for p in again if p.mark_price}
        for symbol, (mark, moved) in sorted(jumped.items()):
            verify.confirmed_mark(symbol, mark, second.get(symbol), moved)

    async def _fetch_source_wallet(self) -> tuple[WalletBalance | None, bool]:
        """The source wallet, and whether it is unknown.

        (None, False): the environment has no such wallet (Binance demo trading has no
        /sapi: no funding wallet, no transfers). (None, True): the read failed or did not
        verify; it never fails the snapshot, and its balance is unknown, never zero.
        """
        exchange = self._source if self._source is not None else self._exchange
        params = self.profile.source_balance_params(self.settings.collateral_source)
        try:
            try:
                balance = await self._read(exchange.fetch_balance(params), "source wallet")
            except ccxt.NotSupported as error:
                if not self._source_missing_logged:
                    message = redact(str(error), self._secrets)
                    logger.warning(
                        "%s: no source wallet, collateral moves off: %s", self.name, message
                    )
                    self._source_missing_logged = True
                return None, False
            source = self.settings.collateral_source
            problem = self.profile.verify_source(verify.balance_reply(balance, source), source)
            if problem is not None:
                raise UnverifiedData(problem)
            with translated(self._secrets):
                return _source_wallet(balance, self.settings.settle), False
        except ExchangeError as error:
            logger.warning("%s: source wallet unknown: %s", self.name, error)
            return None, True
        except ccxt.BaseError as error:
            message = redact(f"{type(error).__name__}: {error}", self._secrets)
            logger.warning("%s: source wallet unknown: %s", self.name, message)
            return None, True

    def _positions(self, raw_positions: Iterable[Mapping[str, Any]]) -> tuple[Position, ...]:
        # Every leg in the settle currency, watched or not: on a cross account they all
        # share the collateral, so all count in its leverage and margin ratio (the
        # snapshot's `watched` limits what the bot acts on).
        markets: Mapping[str, Any] = self._exchange.markets or {}
        positions: list[Position] = []
        for raw in raw_positions:
            symbol = raw.get("symbol")
            if not isinstance(symbol, str):
                continue
            market = markets.get(symbol)
            if market is None:
                # Listed since the markets were loaded (or being delisted): keep the leg, so
                # its exposure is not silently missing and the planner, finding no market
                # rules for it, holds off; and load the markets again next time.
                logger.warning("%s: a position on unlisted market %s", self.name, symbol)
                self._catalog.note_unlisted(symbol)
                market = {}
            elif market.get("settle") != self.settings.settle:
                continue
            side = self.profile.position_side(raw)
            at_mark = self.profile.notional_at_mark and market.get("linear") is not False
            verify.check_position_row(raw, side, notional_at_mark=at_mark)
            position = payloads.position(
                raw,
                side=side,
                contract_size=payloads.contract_size(market),
                margin_mode=self.profile.margin_mode(raw, self.settings.margin_mode),
                isolated_margin=self.profile.isolated_margin(raw),
                maintenance_margin=self.profile.maintenance_margin(raw),
                hedged=bool(raw.get("hedged")) or self.settings.hedged,
            )
            if position is not None:
                verify.check_position(position)
                positions.append(position)
        return tuple(positions)

    async def _write(self, call: Callable[[], Awaitable[T]], what: str, *, kind: str) -> T:
        # Sent again only when refused before acting (RateLimited); a lost reply is
        # OutcomeUnknown, which the service looks up instead of resending.
        async def attempt() -> T:
            with translated(self._secrets, write=True), self._observed(kind):
                return await call()

        return await retrying(attempt, self._retry, (RateLimited,), what=f"{self.name}: {what}")

    @contextmanager
    def _observed(self, what: str) -> Iterator[None]:
        """Tell the observer (metrics) how long one ccxt call took and how it ended (the
        raw ccxt error class: translation happens outside)."""
        started = time.perf_counter()
        error: str | None = None
        try:
            yield
        except BaseException as failure:
            error = type(failure).__name__
            raise
        finally:
            if self._observer is not None:
                elapsed = time.perf_counter() - started
                self._observer.request(self.profile.exchange_id, what, elapsed, error)


def _source_wallet(balance: object, settle: str) -> WalletBalance:
    """The source wallet's balance in `settle` (none held: zero); garbled: UnverifiedData.

    A spot or funding wallet cannot owe anything: a negative balance is a bad reply.
    """
    reply = verify.balance_reply(balance, "source wallet")
    entry = reply.get(settle) or {}
    if not entry:
        return WalletBalance(ZERO, ZERO)
    return WalletBalance(
        verify.number(entry.get("total"), f"source wallet: {settle} total"),
        verify.number(entry.get("free"), f"source wallet: {settle} free"),
    )


async def _nothing(value: T) -> T:
    """A read not made (its place in `_gather`)."""
    return value


async def _gather(*calls: Awaitable[Any]) -> list[Any]:
    """Await concurrently; every call finishes before the first error is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)
