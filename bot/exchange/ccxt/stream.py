"""Mark prices over ccxt.pro websockets, for the streaming trigger (issue 10).

Binance USDⓈ-M and OKX have a mark-price channel (`watch_mark_prices`); Bybit and
Hyperliquid push the mark inside their per-symbol ticker (`watch_ticker`: ccxt's
`markPrice`, or the raw `markPx` Hyperliquid's activeAssetCtx carries). Hyperliquid's
`watch_tickers` is its allMids feed, which has no mark: hence one watch per symbol.
The instance is built by the account's own profile, in the account's environment and
behind its `api_base_url`, so a testnet or demo account streams its own venue's marks.
It holds no credentials: marks are public.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt.pro as ccxtpro
from ccxt.base import errors as ccxt_errors

from bot.clock import Clock, utc_now
from bot.exchange.ccxt.profiles import Ccxt, ExchangeProfile, profile_for
from bot.exchange.ccxt.settings import CcxtSettings
from bot.exchange.ccxt.urls import rebase_urls
from bot.exchange.streams import MarkTick, StreamDropped, StreamUnsupported

logger = logging.getLogger(__name__)

# Binance pushes a mark every second, Bybit whenever the ticker changes: this long
# without one means a connection that is open but dead.
DEFAULT_STALE_SECONDS = 60.0


def websocket_base(api_base_url: str) -> str:
    """The websocket twin of an http(s) base URL (same host and port)."""
    parts = urlsplit(api_base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def build_stream_exchange(
    settings: CcxtSettings,
    profile: ExchangeProfile | None = None,
    *,
    ws_base_url: str | None = None,
) -> Ccxt:
    """A ccxt.pro instance for the account's venue and environment, without credentials.

    With `api_base_url` set, REST (markets) goes there as for the adapter, and the
    websockets to the same host (ws:// for http://) unless `ws_base_url` says otherwise.
    """
    profile = profile if profile is not None else profile_for(settings.exchange_id)
    profile.check(settings)
    exchange = getattr(ccxtpro, profile.exchange_id)(
        {"enableRateLimit": True, "options": dict(profile.options)}
    )
    profile.apply_environment(exchange, settings.environment)
    if settings.api_base_url is not None:
        profile.point_at(exchange, settings.api_base_url)
        ws_base_url = ws_base_url or websocket_base(settings.api_base_url)
    if ws_base_url is not None:
        exchange.urls["api"]["ws"] = rebase_urls(exchange.urls["api"]["ws"], ws_base_url)
    return exchange


class CcxtMarkStream:
    """The MarkStream port on one ccxt.pro instance (one connection per venue URL)."""

    def __init__(
        self,
        exchange: Ccxt,
        *,
        stale_seconds: float = DEFAULT_STALE_SECONDS,
        clock: Clock = utc_now,
    ) -> None:
        self._exchange = exchange
        self._stale = stale_seconds
        self._clock = clock
        has: Mapping[str, Any] = exchange.has
        self.uses_mark_channel = bool(has.get("watchMarkPrices"))
        if not self.uses_mark_channel and not has.get("watchTicker"):
            raise StreamUnsupported(f"{exchange.id}: ccxt.pro streams neither marks nor tickers")
        self._closed = False

    @classmethod
    def for_account(
        cls,
        settings: CcxtSettings,
        profile: ExchangeProfile | None = None,
        *,
        ws_base_url: str | None = None,
        stale_seconds: float = DEFAULT_STALE_SECONDS,
        clock: Clock = utc_now,
    ) -> CcxtMarkStream:
        exchange = build_stream_exchange(settings, profile, ws_base_url=ws_base_url)
        return cls(exchange, stale_seconds=stale_seconds, clock=clock)

    @property
    def exchange(self) -> Ccxt:
        return self._exchange

    async def watch(self, symbols: Sequence[str]) -> AsyncGenerator[MarkTick, None]:
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return
        if self.uses_mark_channel:
            while True:
                tickers = await self._next(self._exchange.watch_mark_prices(wanted))
                if not isinstance(tickers, Mapping):
                    raise StreamDropped(
                        f"{self._exchange.id}: the stream sent no tickers but "
                        f"{type(tickers).__name__}"
                    )
                for symbol, ticker in tickers.items():
                    tick = self._tick(symbol, ticker)
                    if tick is not None and tick.symbol in wanted:
                        yield tick
        # One watch per symbol, each re-armed as soon as it yields.
        pending: dict[asyncio.Task[Any], str] = {}
        try:
            while True:
                for symbol in set(wanted) - set(pending.values()):
                    task = asyncio.ensure_future(self._next(self._exchange.watch_ticker(symbol)))
                    pending[task] = symbol
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    symbol = pending.pop(task)
                    tick = self._tick(symbol, task.result())
                    if tick is not None:
                        yield tick
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._exchange.close()

    async def _next(self, watching: Awaitable[Any]) -> Any:
        venue = self._exchange.id
        try:
            return await asyncio.wait_for(watching, timeout=self._stale)
        except TimeoutError:
            raise StreamDropped(f"{venue}: no mark for {self._stale:.0f} s") from None
        except (ccxt_errors.BadSymbol, ccxt_errors.NotSupported) as error:
            raise StreamUnsupported(f"{venue}: {type(error).__name__}: {error}") from error
        except ccxt_errors.AuthenticationError as error:
            raise StreamUnsupported(f"{venue}: {type(error).__name__}: {error}") from error
        except ccxt_errors.BaseError as error:
            # NetworkError (connection closed, timeouts) and anything the venue sent
            # that ccxt refused: both mean a new connection.
            raise StreamDropped(f"{venue}: {type(error).__name__}: {error}") from error
        except (OSError, ValueError) as error:
            raise StreamDropped(f"{venue}: {type(error).__name__}: {error}") from error

    def _tick(self, symbol: str, ticker: Any) -> MarkTick | None:
        if not isinstance(ticker, Mapping):
            return None
        raw = ticker.get("markPrice")
        info = ticker.get("info")
        if raw is None and isinstance(info, Mapping):
            raw = info.get("markPx", info.get("markPrice"))
        try:
            mark = Decimal(str(raw)) if raw is not None else None
        except InvalidOperation:
            mark = None
        if mark is None or not mark.is_finite() or mark <= 0:
            # Bybit's ticker deltas may carry no mark (ccxt merges them into the last
            # full ticker, so this is rare): nothing to judge on, wait for the next.
            return None
        stamp = ticker.get("timestamp")
        at = (
            datetime.fromtimestamp(stamp / 1000, UTC)
            if isinstance(stamp, int | float)
            else self._clock()
        )
        return MarkTick(str(ticker.get("symbol") or symbol), mark, at)
