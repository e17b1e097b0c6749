"""Which accounts this process drives: every one (SQLite: one process), or its share of
the leases it wins on a shared PostgreSQL (DESIGN.md §12, `bot.store.leases`).

The daemon calls `beat` every `heartbeat` and acts on the changes: it starts driving
what it gained (a fresh service, whose first cycle reconciles), stops driving what it
lost, and hands back its surplus once the account's running cycle has finished. Only
the `leader` polls Telegram and delivers the shared alert outbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from bot.store.leases import TELEGRAM_LEASE, Fence, LeaseBook, LeaseOwner

logger = logging.getLogger(__name__)

# A lease is renewed this many times per period: one missed heartbeat loses nothing.
BEATS_PER_PERIOD = 3


@dataclass(frozen=True, slots=True)
class LeaseChanges:
    """What changed at one heartbeat."""

    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    # Held beyond this process's share: stop driving, then `release`.
    surplus: tuple[str, ...] = ()
    # Holds the Telegram poller and outbox role.
    leader: bool = False


class AccountLeases(Protocol):
    """The daemon's view of who drives what."""

    # Set on the journal: intents are journaled only under a lease still held.
    fence: Fence | None
    heartbeat: timedelta

    @property
    def owner(self) -> str: ...

    async def beat(self) -> LeaseChanges: ...

    async def release(self, names: Sequence[str]) -> None: ...

    async def leave(self) -> None: ...


class SoleOwner:
    """One process, one journal (SQLite): every account is this process's, for good."""

    fence: Fence | None = None

    def __init__(self, accounts: Sequence[str], owner: str = "sole") -> None:
        self._accounts = tuple(accounts)
        self._owner = owner
        self._started = False
        self.heartbeat = timedelta(minutes=1)

    @property
    def owner(self) -> str:
        return self._owner

    async def beat(self) -> LeaseChanges:
        gained = () if self._started else self._accounts
        self._started = True
        return LeaseChanges(gained=gained, leader=True)

    async def release(self, names: Sequence[str]) -> None:
        return None

    async def leave(self) -> None:
        return None


class SharedLeases:
    """This process's share of the accounts on a shared PostgreSQL, kept by heartbeat."""

    def __init__(
        self,
        book: LeaseBook,
        me: LeaseOwner,
        accounts: Sequence[str],
        period: timedelta,
    ) -> None:
        self.book = book
        self.me = me
        self.accounts = tuple(accounts)
        self.period = period
        self.heartbeat = period / BEATS_PER_PERIOD
        # An intent needs a heartbeat's worth of lease left: the write that follows it
        # goes out before the lease could lapse even if the next heartbeat is missed.
        self.fence: Fence | None = Fence(me.owner, margin=self.heartbeat)
        self._held: dict[str, int] = {}
        self._releasing: set[str] = set()
        self._joined = False
        # A release must not land in the middle of a heartbeat's view of what is held.
        self._lock = asyncio.Lock()

    @property
    def owner(self) -> str:
        return self.me.owner

    async def beat(self) -> LeaseChanges:
        async with self._lock:
            return await self._beat()

    async def _beat(self) -> LeaseChanges:
        if not self._joined:
            # The first beat only says "here I am": daemons started together then count
            # each other before claiming, instead of the first one taking everything and
            # handing most of it back a heartbeat later.
            await self.book.register(self.me, [*self.accounts, TELEGRAM_LEASE], self.period)
            self._joined = True
            return LeaseChanges()
        started = time.monotonic()
        round_ = await self.book.heartbeat(
            self.me, self._held, self.accounts, self.period, (TELEGRAM_LEASE,)
        )
        took = time.monotonic() - started
        if took > self.heartbeat.total_seconds():
            # Leases lapse when this keeps up: the process or its database is overloaded.
            logger.warning(
                "lease heartbeat took %.1fs (every %.1fs)", took, self.heartbeat.total_seconds()
            )
        self._held = dict(round_.held)
        fence = self.fence
        assert fence is not None
        fence.epochs.clear()
        fence.epochs.update(self._held)
        self._releasing &= set(self._held)
        surplus = tuple(n for n in round_.surplus if n not in self._releasing)
        self._releasing.update(surplus)
        changes = LeaseChanges(
            gained=tuple(n for n in round_.gained if n != TELEGRAM_LEASE),
            lost=tuple(n for n in round_.lost if n != TELEGRAM_LEASE),
            surplus=surplus,
            leader=TELEGRAM_LEASE in self._held,
        )
        if changes.gained or changes.lost or changes.surplus:
            logger.info(
                "leases (%s): %d owners, share %d; gained %d, lost %d, handing back %d",
                self.owner, round_.owners, round_.share, len(changes.gained),
                len(changes.lost), len(changes.surplus),
            )  # fmt: skip
        return changes

    async def release(self, names: Sequence[str]) -> None:
        """Give `names` back (their accounts are no longer driven here)."""
        async with self._lock:
            await self._release(names)

    async def _release(self, names: Sequence[str]) -> None:
        for name in names:
            self._held.pop(name, None)
            if self.fence is not None:
                self.fence.epochs.pop(name, None)
        self._releasing.difference_update(names)
        await self.book.release(self.me, names)

    async def leave(self) -> None:
        async with self._lock:
            await self._leave()

    async def _leave(self) -> None:
        self._held.clear()
        if self.fence is not None:
            self.fence.epochs.clear()
        await self.book.leave(self.me)
