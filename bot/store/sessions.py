"""What every part of the journal shares: the engine, short sessions, and the clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock, utc_now

# Pooled connections the journal leaves to other users of its engine (leases' heartbeat,
# the migration at start-up): its own sessions never take the last ones.
RESERVED_CONNECTIONS = 2


def session_slots(engine: AsyncEngine) -> int | None:
    """How many of the journal's sessions may hold a connection at once: the pool's
    capacity (size + overflow) less the reserve, or None for a pool that never runs out
    (one shared connection, or no pool)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):
        return None
    # `_max_overflow` has no public reader; -1 there means unbounded.
    overflow = int(getattr(pool, "_max_overflow", 0))
    if overflow < 0:
        return None
    return max(1, pool.size() + overflow - RESERVED_CONNECTIONS)


class JournalBase:
    """One shared engine; each call opens its own short session and commits it."""

    def __init__(self, engine: AsyncEngine, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock
        # Many accounts' cycles open sessions at once. Past the pool's capacity a session
        # waits for a connection only `pool_timeout` (30 s) and then fails its cycle
        # (seen under load); waiting here instead is fair, first come first served, and
        # never times out. Sessions are short and never nested, so this cannot deadlock.
        slots = session_slots(engine)
        self._slots = None if slots is None else asyncio.Semaphore(slots)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def _session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A short session (use as `async with`), holding one of the journal's slots."""
        return self._slot_session()

    @asynccontextmanager
    async def _slot_session(self) -> AsyncIterator[AsyncSession]:
        # Rows outlive the session only to be turned into records, so keep their values.
        if self._slots is None:
            async with AsyncSession(self._engine, expire_on_commit=False) as session:
                yield session
            return
        async with self._slots, AsyncSession(self._engine, expire_on_commit=False) as session:
            yield session

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
