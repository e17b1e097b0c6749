"""One account's view of its venue's markets: rules, maintenance tiers, and when to
load them again (DESIGN.md §7). Markets change rarely: loaded once, then once a day, or
at once when a position names a market the loaded ones do not list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ccxt.base.decimal_to_precision import DECIMAL_PLACES

from bot.clock import Clock
from bot.domain.models import ZERO, MaintenanceTier, MarketRules
from bot.exchange.ccxt import payloads
from bot.exchange.ccxt.errors import translated
from bot.exchange.ccxt.exchange_profile import Ccxt, ExchangeProfile
from bot.exchange.port import ExchangeError, UnknownSymbol

logger = logging.getLogger(__name__)

# Markets (precision, minimums) and maintenance tiers change rarely: reload once a day.
MARKETS_MAX_AGE = timedelta(days=1)


@dataclass(slots=True)
class MarketCatalog:
    """Markets and tiers of one ccxt instance, loaded when needed."""

    account: str
    exchange: Ccxt
    profile: ExchangeProfile
    settle: str
    watched: tuple[str, ...]
    secrets: tuple[str, ...]
    clock: Clock
    loaded_at: datetime | None = None
    # Set when a position names a market the loaded ones do not list.
    stale: bool = False
    # Whether collateral is pooled across assets, where only a separate call tells.
    pooling: bool | None = None
    _unlisted: set[str] = field(default_factory=set)
    _tiers: dict[str, tuple[MaintenanceTier, ...]] = field(default_factory=dict)
    _reload_tiers: bool = False

    @property
    def markets(self) -> Mapping[str, Any]:
        markets: Mapping[str, Any] = self.exchange.markets or {}
        return markets

    def note_unlisted(self, symbol: str) -> None:
        """A position names a market the loaded ones do not list: load them again next
        time, once per symbol (one being delisted would otherwise cost a reload a cycle)."""
        self.stale |= symbol not in self._unlisted
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
        return {
            symbol: payloads.market_rules(markets[symbol], self._tiers.get(symbol, ()), mode)
            for symbol in wanted
        }

    async def _load_tiers(self, symbols: list[str]) -> None:
        missing = [symbol for symbol in symbols if symbol not in self._tiers]
        if not missing:
            return
        try:
            with translated(self.secrets):
                tiers = await self.profile.fetch_tiers(self.exchange, missing, self._reload_tiers)
        except ExchangeError as error:
            # Tiers are a fallback (every venue here reports each position's maintenance
            # margin): go on without them and ask again next time.
            logger.warning("%s: no maintenance tiers for %s: %s", self.account, missing, error)
            return
        self._reload_tiers = False
        self._tiers.update({symbol: () for symbol in missing})
        self._tiers.update(tiers)

    async def ensure(self) -> None:
        """Load markets once, then again when a day old (keeping the old ones on failure)."""
        now = self.clock()
        fresh = self.loaded_at is not None and now - self.loaded_at < MARKETS_MAX_AGE
        if fresh and not self.stale:
            return
        reload = self.loaded_at is not None
        try:
            with translated(self.secrets):
                await self.exchange.load_markets(reload)
                self.pooling = await self.profile.fetch_collateral_pooling(self.exchange)
        except ExchangeError as error:
            if not reload:
                raise
            logger.warning(
                "%s: market refresh failed, keeping yesterday's: %s", self.account, error
            )
            return
        self.loaded_at = now
        self.stale = False
        if reload:
            self._tiers.clear()
            self._reload_tiers = True

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
