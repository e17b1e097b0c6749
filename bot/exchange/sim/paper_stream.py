"""Marks of a simulated or paper account as its replay advances: the MarkStream port
offline, so `exchange = "sim"` accounts get the streaming trigger too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from bot.exchange.port import Exchange
from bot.exchange.streams import MarkTick


class PaperMarkStream:
    """Reads the account's marks every `every_seconds` (the replay moves them at most
    once a bar) and yields each symbol's mark whenever it changed.

    It reads through the Exchange port (a snapshot of the in-memory account), so it
    works over PaperExchange and SimulatedExchange alike.
    """

    def __init__(self, exchange: Exchange, every_seconds: float = 1.0) -> None:
        if every_seconds <= 0:
            raise ValueError(f"every_seconds must be positive, got {every_seconds}")
        self._exchange = exchange
        self._every = every_seconds

    async def watch(self, symbols: Sequence[str]) -> AsyncGenerator[MarkTick, None]:
        wanted = set(symbols)
        last: dict[str, object] = {}
        while wanted:
            snapshot = await self._exchange.fetch_snapshot()
            for position in snapshot.positions:
                mark = position.mark_price
                if position.symbol not in wanted or mark is None or mark <= 0:
                    continue
                if last.get(position.symbol) != mark:
                    last[position.symbol] = mark
                    yield MarkTick(position.symbol, mark, snapshot.taken_at)
            await asyncio.sleep(self._every)

    async def close(self) -> None:
        """Nothing to release: the exchange is the account's own and closes with it."""
