"""The mark-price stream port: marks pushed by the venue between two polls.

A stream only wakes the account's cycle early; the cycle still takes its own fresh
snapshot over REST before any write, so a stream that lies or lags can cost one extra
cycle, never a wrong write.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bot.exchange.port import ExchangeError

__all__ = ["MarkStream", "MarkTick", "StreamDropped", "StreamError", "StreamUnsupported"]


class StreamError(ExchangeError):
    """Base of every error a MarkStream raises."""


class StreamDropped(StreamError):
    """The connection closed or failed (network, venue hang-up, a reply that does not
    parse): worth reconnecting, with backoff. Protection falls back to polling meanwhile."""


class StreamUnsupported(StreamError):
    """The venue (or ccxt) cannot stream marks for these symbols: reconnecting will not
    help; the account is protected by polling only."""


@dataclass(frozen=True, slots=True)
class MarkTick:
    """One mark price of one symbol (ccxt unified symbol), as the venue pushed it."""

    symbol: str
    mark: Decimal
    at: datetime


class MarkStream(Protocol):
    """Marks of some symbols of one venue connection."""

    def watch(self, symbols: Sequence[str]) -> AsyncGenerator[MarkTick, None]:
        """Ticks for `symbols` as they come, until the caller stops iterating or the
        stream fails (`StreamDropped`, `StreamUnsupported`). Each call starts a fresh
        iteration; the connection underneath may be reused."""
        ...

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        ...
