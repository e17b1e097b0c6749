"""The Exchange port on real venues (Binance USDⓈ-M, Bybit, OKX, Hyperliquid) through ccxt."""

from bot.exchange.ccxt.adapter import CcxtExchange
from bot.exchange.ccxt.errors import RateLimited, RetryPolicy
from bot.exchange.ccxt.profiles import (
    BinanceUsdmProfile,
    BybitProfile,
    ExchangeProfile,
    HyperliquidProfile,
    OkxProfile,
    profile_for,
)
from bot.exchange.ccxt.settings import CcxtSettings

__all__ = [
    "BinanceUsdmProfile",
    "BybitProfile",
    "CcxtExchange",
    "CcxtSettings",
    "ExchangeProfile",
    "HyperliquidProfile",
    "OkxProfile",
    "RateLimited",
    "RetryPolicy",
    "profile_for",
]
