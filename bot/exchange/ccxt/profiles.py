"""What differs between the venues under ccxt 4.5 (DESIGN.md §7).

One small profile per venue, each in its own module beside the shared base
(`exchange_profile`). The adapter asks its profile and never branches on the venue's
name; this module picks the profile for an exchange id.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.exchange.ccxt.binance_usdm_profile import BinanceUsdmProfile
from bot.exchange.ccxt.bybit_profile import BybitProfile
from bot.exchange.ccxt.exchange_profile import Ccxt, ExchangeProfile, Params
from bot.exchange.ccxt.hyperliquid_profile import HyperliquidProfile
from bot.exchange.ccxt.okx_profile import OkxProfile
from bot.exchange.port import CapabilityMissing

__all__ = [
    "PROFILES",
    "BinanceUsdmProfile",
    "BybitProfile",
    "Ccxt",
    "ExchangeProfile",
    "HyperliquidProfile",
    "OkxProfile",
    "Params",
    "profile_for",
]

PROFILES: Mapping[str, type[ExchangeProfile]] = {
    profile.exchange_id: profile
    for profile in (
        BinanceUsdmProfile,
        BybitProfile,
        OkxProfile,
        HyperliquidProfile,
    )
}


def profile_for(exchange_id: str) -> ExchangeProfile:
    """The profile of a supported venue."""
    try:
        return PROFILES[exchange_id]()
    except KeyError:
        supported = ", ".join(PROFILES)
        raise CapabilityMissing(f"no ccxt profile for {exchange_id!r}; use {supported}") from None
