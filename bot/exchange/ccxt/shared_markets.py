"""Markets and maintenance tiers loaded once per venue and shared by every account on it
(issue 12 §3).

A venue's full market list is 1-2 MiB once ccxt has parsed it; held by each of a thousand
accounts it would be the process's largest cost. A `MarketRegistry` (one per process, made
by the composition root) keeps one `VenueMarkets` per ccxt class, environment and API base
URL: the first account that needs markets loads them with its own ccxt instance (one
request, however many accounts wait for it), and every instance on the venue is given the
same dicts (ccxt's own `set_markets_from_exchange`: assignment, no copy). The daily
reload is one request too, and every account on the venue sees the new markets at once.

ccxt instances also carry large read-only tables of their class (the implicit API
definition, error tables, capabilities) and create a TLS context each (~0.7 MiB with the
CA bundle loaded): `adopt` points every instance of a class at one copy of both.

What belongs to an account (balances, positions, its own options, whether it pools
collateral) stays on its own instance and catalog.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.domain.models import MaintenanceTier
from bot.exchange.ccxt.errors import translated
from bot.exchange.ccxt.exchange_profile import Ccxt
from bot.exchange.port import ExchangeError, OperationalError

logger = logging.getLogger(__name__)

# Markets (precision, minimums) and maintenance tiers change rarely: reload once a day.
MARKETS_MAX_AGE = timedelta(days=1)
# After a failed load, the venue's accounts go on with what they have (or fail their
# cycle) instead of each asking again at once.
RETRY_AFTER = timedelta(minutes=1)

# Tables ccxt builds per instance from its class's `describe()` and only reads afterwards
# (Python ccxt's implicit API methods are class attributes: `api` is not read at all).
_CLASS_TABLES = ("api", "exceptions", "has", "features", "fees", "httpExceptions", "timeframes")
# ccxt options that hold venue data loaded with the markets or tiers (Binance keeps its
# leverage brackets there and parses positions with them).
_SHARED_OPTIONS = ("leverageBrackets",)
# The ccxt method that fills them, which such a class's position parsing calls itself.
_OWN_TIER_LOADER = "load_leverage_brackets"

VenueKey = tuple[str, str, str | None]
Tiers = Mapping[str, tuple[MaintenanceTier, ...]]
TierFetch = Callable[[Ccxt, Sequence[str], bool], Awaitable[Tiers]]


@dataclass(slots=True)
class VenueMarkets:
    """One venue's markets and tiers, and the ccxt instances that share them."""

    key: VenueKey
    loaded_at: datetime | None = None
    # Bumped at every successful load; an account that saw generation n and finds a
    # market missing asks for a reload only if nobody has reloaded since.
    generation: int = 0
    tiers: dict[str, tuple[MaintenanceTier, ...]] = field(default_factory=dict)
    _source: Ccxt | None = None
    _options: dict[str, Any] = field(default_factory=dict)
    _instances: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    _lock: asyncio.Lock | None = None
    _attempts: int = 0
    _failed_at: datetime | None = None
    _error: ExchangeError | None = None
    _tier_attempts: int = 0
    # Whether the venue's tiers were asked for since the markets were (re)loaded.
    _tiers_fetched: bool = False
    _reload_tiers: bool = False

    @property
    def loaded(self) -> bool:
        return self._source is not None

    def tiers_before_positions(self, exchange: Ccxt) -> bool:
        """Whether the tiers should be loaded before `exchange` reads positions: its ccxt
        class parses positions with tiers it loads itself, once per instance, unless the
        venue's (shared) ones are there first."""
        return not self._tiers_fetched and hasattr(type(exchange), _OWN_TIER_LOADER)

    def join(self, exchange: Ccxt) -> None:
        """Share this venue's markets (once loaded) with `exchange`, now and at reloads."""
        self._instances.add(exchange)
        if self._source is not None and exchange is not self._source:
            exchange.set_markets_from_exchange(self._source)
        for name, value in self._options.items():
            exchange.options[name] = value

    def due(self, now: datetime, missing_since: int | None) -> bool:
        """Whether to load markets: never loaded, a day old, or an account found one missing
        at generation `missing_since` and nobody has loaded them again since."""
        if self.loaded_at is None:
            return True
        return now - self.loaded_at >= MARKETS_MAX_AGE or missing_since == self.generation

    async def load(self, exchange: Ccxt, now: datetime, secrets: Sequence[str]) -> None:
        """Load the venue's markets through `exchange` (again, when loaded before), once
        for everyone asking at the same time: who waited takes the outcome of the load
        they waited for. A failed reload keeps yesterday's markets (and is not tried again
        for `RETRY_AFTER`); a failed first load raises, for every waiting account."""
        attempts = self._attempts
        async with self._guard():
            reload = self._source is not None
            if self._attempts != attempts:
                self._raise_if_never_loaded()
                return
            if reload and self._failed_at is not None and now - self._failed_at < RETRY_AFTER:
                return
            try:
                with translated(secrets):
                    await exchange.load_markets(reload)
            except ExchangeError as error:
                self._failed_at, self._error = now, error
                raise
            finally:
                # Counted when done: whoever started waiting meanwhile takes this outcome.
                self._attempts += 1
            self._failed_at = self._error = None
            self._source = exchange
            self.loaded_at = now
            self.generation += 1
            if reload:
                self.tiers.clear()
                self._reload_tiers = True
                self._tiers_fetched = False
            for instance in list(self._instances):
                if instance is not exchange:
                    instance.set_markets_from_exchange(exchange)

    async def load_tiers(
        self, exchange: Ccxt, symbols: Sequence[str], fetch: TierFetch, secrets: Sequence[str]
    ) -> None:
        """Fetch the tiers of `symbols` not known yet (and, see `tiers_before_positions`,
        for no symbols), once for everyone asking at the same time (a failure is not tried
        again by those who waited for it)."""
        attempts = self._tier_attempts
        async with self._guard():
            missing = [symbol for symbol in symbols if symbol not in self.tiers]
            if self._tier_attempts != attempts:
                return
            if not missing and not self.tiers_before_positions(exchange):
                return
            try:
                with translated(secrets):
                    tiers = await fetch(exchange, missing, self._reload_tiers)
            finally:
                self._tier_attempts += 1
            self._reload_tiers = False
            self._tiers_fetched = True
            self.tiers.update({symbol: () for symbol in missing})
            self.tiers.update(tiers)
            self._share_options(exchange)

    def _share_options(self, exchange: Ccxt) -> None:
        options: Mapping[str, Any] = exchange.options
        self._options = {name: options[name] for name in _SHARED_OPTIONS if name in options}
        for instance in list(self._instances):
            for name, value in self._options.items():
                instance.options[name] = value

    def _raise_if_never_loaded(self) -> None:
        if self._source is None:
            error = self._error or OperationalError(f"{self.key[0]}: markets not loaded")
            raise type(error)(str(error))

    def _guard(self) -> asyncio.Lock:
        # Made on first use, inside the loop that uses it.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock


@dataclass(slots=True)
class MarketRegistry:
    """Per process: one `VenueMarkets` per venue, and one copy of each ccxt class's
    read-only tables and of the TLS context."""

    _venues: dict[VenueKey, VenueMarkets] = field(default_factory=dict)
    _tables: dict[type, dict[str, Any]] = field(default_factory=dict)
    _tls: dict[str | None, ssl.SSLContext] = field(default_factory=dict)

    def venue(self, exchange: Ccxt, environment: str, base_url: str | None) -> VenueMarkets:
        """The shared markets of `exchange`'s venue, with `exchange` joined to them."""
        self.adopt(exchange)
        key: VenueKey = (exchange.id, environment, base_url)
        venue = self._venues.get(key)
        if venue is None:
            venue = self._venues[key] = VenueMarkets(key)
        venue.join(exchange)
        return venue

    def adopt(self, exchange: Ccxt) -> None:
        """Point `exchange` at its class's one copy of the read-only tables and at the
        process's TLS context (ccxt would build its own on the first request)."""
        tables = self._tables.setdefault(
            type(exchange), {name: getattr(exchange, name) for name in _CLASS_TABLES}
        )
        for name, value in tables.items():
            setattr(exchange, name, value)
        if exchange.ssl_context is None and exchange.verify is True:
            if exchange.safe_bool(exchange.options, "include_OS_certificates", False):
                return  # ccxt adds the OS bundle to its own context: leave it to ccxt
            cafile = exchange.cafile
            context = self._tls.get(cafile)
            if context is None:
                context = self._tls[cafile] = ssl.create_default_context(cafile=cafile)
            exchange.ssl_context = context
