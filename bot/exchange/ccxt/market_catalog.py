"""One account's view of its venue's markets: rules, maintenance tiers, and when to
load them again (DESIGN.md §7). Markets change rarely: loaded once, then once a day, or
at once when a position names a market the loaded ones do not list. The markets and tiers
themselves are the venue's, shared with every account on it (`shared_markets`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ccxt.base.decimal_to_precision import DECIMAL_PLACES

from bot.clock import Clock
from bot.domain.models import ZERO, MarketRules
from bot.exchange.ccxt import payloads
from bot.exchange.ccxt.errors import translated
from bot.exchange.ccxt.exchange_profile import Ccxt, ExchangeProfile
from bot.exchange.ccxt.shared_markets import MARKETS_MAX_AGE, VenueMarkets
from bot.exchange.port import ExchangeError, UnknownSymbol

logger = logging.getLogger(__name__)

__all__ = ["MARKETS_MAX_AGE", "MarketCatalog"]


@dataclass(slots=True)
class MarketCatalog:
    """Markets and tiers of one account's ccxt instance, loaded when needed."""

    account: str
    exchange: Ccxt
    profile: ExchangeProfile
    settle: str
    watched: tuple[str, ...]
    secrets: tuple[str, ...]
    clock: Clock
    venue: VenueMarkets
    # When the account's own collateral mode was last read (it is not the venue's).
    pooling_at: datetime | None = None
    # Whether collateral is pooled across assets, where only a separate call tells.
    pooling: bool | None = None
    # The venue's markets generation in which a position named a market they do not list.
    _missing_since: int | None = None
    _unlisted: set[str] = field(default_factory=set)

    @property
    def markets(self) -> Mapping[str, Any]:
        markets: Mapping[str, Any] = self.exchange.markets or {}
        return markets

    def note_unlisted(self, symbol: str) -> None:
        """A position names a market the loaded ones do not list: load them again next
        time, once per symbol (one being delisted would otherwise cost a reload a cycle)."""
        if symbol not in self._unlisted:
            self._missing_since = self.venue.generation
        self._unlisted.add(symbol)

    async def rules(self, symbols: set[str]) -> dict[str, MarketRules]:
        """Market rules (with tiers) of `symbols` and every watched one."""
        markets: Mapping[str, Any] = self.exchange.markets or {}
        # A position on an unlisted market has no rules (see `note_unlisted`); a watched
        # symbol that is not listed is a configuration error.
        wanted = sorted({symbol for symbol in symbols if symbol in markets} | set(self.watched))
        unlisted = [symbol for symbol in wanted if symbol not in markets]
        if unlisted:
            raise UnknownSymbol(f"{self.profile.exchange_id} does not list {', '.join(unlisted)}")
        await self._load_tiers(wanted)
        mode = self.exchange.precisionMode
        tiers = self.venue.tiers
        return {
            symbol: payloads.market_rules(markets[symbol], tiers.get(symbol, ()), mode)
            for symbol in wanted
        }

    async def _load_tiers(self, symbols: list[str]) -> None:
        try:
            await self.venue.load_tiers(
                self.exchange, symbols, self.profile.fetch_tiers, self.secrets
            )
        except ExchangeError as error:
            # Tiers are a fallback (every venue here reports each position's maintenance
            # margin): go on without them and ask again next time.
            logger.warning("%s: no maintenance tiers for %s: %s", self.account, symbols, error)

    async def ensure(self) -> None:
        """Markets loaded (by this account or another on the venue), then again when a day
        old (keeping the old ones on failure); the account's collateral mode likewise."""
        now = self.clock()
        if self.venue.due(now, self._missing_since):
            try:
                await self.venue.load(self.exchange, now, self.secrets)
            except ExchangeError as error:
                if not self.venue.loaded:
                    raise
                logger.warning(
                    "%s: market refresh failed, keeping yesterday's: %s", self.account, error
                )
        if self.venue.tiers_before_positions(self.exchange):
            await self._load_tiers(list(self.watched))
        if self.pooling_at is not None and now - self.pooling_at < MARKETS_MAX_AGE:
            return
        try:
            with translated(self.secrets):
                self.pooling = await self.profile.fetch_collateral_pooling(self.exchange)
        except ExchangeError as error:
            if self.pooling_at is None:
                raise
            logger.warning(
                "%s: collateral mode refresh failed, keeping yesterday's: %s", self.account, error
            )
            return
        self.pooling_at = now

    def transfer_places(self) -> int:
        """The profile's places, fewer when ccxt would round the settle currency coarser."""
        currencies: Mapping[str, Any] = self.exchange.currencies or {}
        precision = payloads.decimal_or_none((currencies.get(self.settle) or {}).get("precision"))
        if precision is None or precision <= ZERO:
            return self.profile.transfer_places
        if self.exchange.precisionMode == DECIMAL_PLACES:
            places = int(precision)
        else:
            exponent = precision.normalize().as_tuple().exponent
            if not isinstance(exponent, int):
                return self.profile.transfer_places
            places = max(0, -exponent)
        return min(self.profile.transfer_places, places)
