"""What every part of the journal shares: the engine, short sessions, and the clock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel
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

    async def _serialize_writes(self, session: AsyncSession, table: type[SQLModel]) -> None:
        """Hold `table` against other writers until the session commits.

        For a read-then-write (update, insert when nothing was there): SQLite's one write
        lock already serializes them, but on PostgreSQL two daemons (or a daemon and a
        Telegram command) would both find nothing and both insert: a unique violation,
        or, where the key holds a NULL, a duplicate row. This lock mode conflicts with
        itself and with every write, never with readers.
        """
        if self._engine.dialect.name == "postgresql":
            connection = await session.connection()
            await connection.execute(
                text(f'LOCK TABLE "{table.__tablename__}" IN SHARE ROW EXCLUSIVE MODE')
            )

    def _now(self, at: datetime | None = None) -> datetime:
        """`at`, or the clock's time; always aware."""
        now = self._clock() if at is None else at
        if now.utcoffset() is None:
            raise ValueError(f"naive datetime {now!r}: the journal stores UTC only")
        return now
