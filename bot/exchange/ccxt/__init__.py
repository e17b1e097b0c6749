"""The Exchange port on real venues (Binance USDⓈ-M, Bybit, OKX) through ccxt."""

from bot.exchange.ccxt.adapter import CcxtExchange
from bot.exchange.ccxt.errors import RateLimited, RetryPolicy
from bot.exchange.ccxt.profiles import (
    BinanceUsdmProfile,
    BybitProfile,
    ExchangeProfile,
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
    "OkxProfile",
    "RateLimited",
    "RetryPolicy",
    "profile_for",
]
