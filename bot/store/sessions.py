"""What every part of the journal shares: the engine, short sessions, and the clock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock, utc_now


class JournalBase:
    """One shared engine; each call opens its own short session and commits it."""

    def __init__(self, engine: AsyncEngine, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def _session(self) -> AsyncSession:
        # Rows outlive the session only to be turned into records, so keep their values.
        return AsyncSession(self._engine, expire_on_commit=False)

    def _now(self, at: datetime | None = None) -> datetime:
        """`at`, or the clock's time; always aware."""
        now = self._clock() if at is None else at
        if now.utcoffset() is None:
            raise ValueError(f"naive datetime {now!r}: the journal stores UTC only")
        return now
