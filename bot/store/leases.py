"""Leases: several daemons on one PostgreSQL share the accounts, never driving one twice.

Every account (and every role, such as `@telegram`, the one process that polls Telegram
and delivers the alert outbox) has a row in `leases`: its owner, an epoch and an expiry.
Each daemon registers in `lease_owners` and runs `LeaseBook.heartbeat` every third of a
lease period, in one transaction:

- it renews what it holds and keeps its own presence alive;
- it counts the live owners and takes free or expired leases (`FOR UPDATE SKIP LOCKED`:
  two daemons claiming at once never wait for, or take, the same row) up to its share,
  `ceil(accounts / live owners)`;
- it names the leases it holds beyond its share, which the daemon releases once it has
  stopped driving them (`release`), so a newcomer gets its share without a restart.

Every claim raises the lease's epoch. The epoch is the fencing token: `Fence.check`
runs in the transaction that journals an intent and refuses it (`LeaseLost`) unless the
lease still names this owner at this epoch with time left, so a daemon that lost its
lease (paused, partitioned) cannot journal an intent, and so cannot write to the
exchange. Expiry is judged by the database's clock (`now()`), never a host's.

SQLite has one process and no leases: none of this runs there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ARRAY, Text, any_, bindparam, delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.store.lease_errors import LeaseExpiring, LeaseLost
from bot.store.sessions import JournalBase
from bot.store.tables import LeaseOwnerRow, LeaseRow

# The role whose holder polls Telegram (one getUpdates poller per token) and delivers the
# shared alert outbox. `@` cannot start an account name, so it never clashes with one.
TELEGRAM_LEASE = "@telegram"


@dataclass(frozen=True, slots=True)
class LeaseOwner:
    """Who a daemon is in the lease table."""

    owner: str
    run_id: int | None
    host: str
    pid: int


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    owner: str | None
    epoch: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LeaseRound:
    """One heartbeat's outcome for one owner."""

    # Everything held after the round (renewed and gained), name -> epoch.
    held: Mapping[str, int]
    gained: tuple[str, ...]
    # Held before the round and not any more (expired and taken, or released by hand).
    lost: tuple[str, ...]
    # Held beyond this owner's share: stop driving them, then `release`.
    surplus: tuple[str, ...]
    owners: int
    share: int


@dataclass(slots=True)
class Fence:
    """The leases this process believes it holds, checked in the database before an
    intent is journaled (`bot.store.action_log.ActionLog.record_intent`).

    `margin`: the lease must have at least this long left, so the exchange write that
    follows a committed intent goes out before anyone else could claim the account.
    """

    owner: str
    margin: timedelta = timedelta(0)
    epochs: dict[str, int] = field(default_factory=dict)

    async def check(self, session: AsyncSession, account: str) -> None:
        """Raise `LeaseLost` unless `account`'s lease is this owner's, at the epoch it
        claimed, unexpired; `LeaseExpiring` when it has less than `margin` left. The row
        stays share-locked until the session ends, so no claim can take it between this
        check and the intent's commit."""
        epoch = self.epochs.get(account)
        if epoch is None:
            raise LeaseLost(account, self.owner, None)
        held = await session.exec(
            select(col(LeaseRow.expires_at) > func.now() + self.margin)
            .where(
                col(LeaseRow.name) == account,
                col(LeaseRow.owner) == self.owner,
                col(LeaseRow.epoch) == epoch,
                col(LeaseRow.expires_at) > func.now(),
            )
            .with_for_update(read=True)
        )
        fresh = held.first()
        if fresh is None:
            self.epochs.pop(account, None)
            raise LeaseLost(account, self.owner, epoch)
        if not fresh:
            raise LeaseExpiring(account, self.owner, epoch)


def _names(values: Sequence[str]) -> object:
    """`= ANY(:names)`: one array parameter, whatever the number of accounts."""
    return any_(bindparam(None, list(values), type_=ARRAY(Text)))


class LeaseBook(JournalBase):
    """The lease table (PostgreSQL only). One short transaction per call."""

    async def register(self, me: LeaseOwner, names: Sequence[str], period: timedelta) -> None:
        """Announce `me` as a live owner and make sure every lease in `names` has a row."""
        async with self._session() as session:
            await self._present(session, me, period)
            if names:
                far_past = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
                await session.exec(
                    insert(LeaseRow)
                    .values([{"name": n, "epoch": 0, "expires_at": far_past} for n in names])
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            await session.commit()

    async def heartbeat(
        self,
        me: LeaseOwner,
        held: Mapping[str, int],
        accounts: Sequence[str],
        period: timedelta,
        roles: Sequence[str] = (),
    ) -> LeaseRound:
        """Renew, count the owners, claim up to this owner's share of `accounts` (and any
        free role in `roles`), name the surplus. `held`: what the caller believes it holds."""
        async with self._session() as session:
            await self._present(session, me, period)
            renewed = await session.exec(
                update(LeaseRow)
                .where(col(LeaseRow.owner) == me.owner)
                .values(expires_at=func.now() + period)
                .returning(col(LeaseRow.name), col(LeaseRow.epoch))
            )
            now_held = {name: epoch for name, epoch in renewed.all()}
            lost = tuple(n for n, e in held.items() if now_held.get(n) != e)
            owners = (
                await session.exec(
                    select(func.count()).where(col(LeaseOwnerRow.expires_at) > func.now())
                )
            ).one()
            share = math.ceil(len(accounts) / max(1, owners))
            # A set once, not per lease: 2,500 leases made this loop 7% of a process's CPU.
            wanted_names = set(accounts)
            mine = sorted(n for n in now_held if n in wanted_names)
            if len(mine) < share:
                now_held.update(await self._claim(session, me, accounts, share - len(mine), period))
            free_roles = [r for r in roles if r not in now_held]
            if free_roles:
                now_held.update(await self._claim(session, me, free_roles, len(free_roles), period))
            await session.commit()
        gained = tuple(sorted(n for n, e in now_held.items() if held.get(n) != e))
        surplus = tuple(mine[share:]) if len(mine) > share else ()
        return LeaseRound(now_held, gained, lost, surplus, owners, share)

    async def release(self, me: LeaseOwner, names: Sequence[str]) -> None:
        """Give leases back at once (after their accounts stopped being driven)."""
        if not names:
            return
        async with self._session() as session:
            await session.exec(
                update(LeaseRow)
                .where(col(LeaseRow.owner) == me.owner, col(LeaseRow.name) == _names(names))
                .values(owner=None, expires_at=func.now())
            )
            await session.commit()

    async def leave(self, me: LeaseOwner) -> None:
        """A clean stop: every lease released and the owner gone, so the others take over
        at their next heartbeat instead of after the expiry."""
        async with self._session() as session:
            await session.exec(
                update(LeaseRow)
                .where(col(LeaseRow.owner) == me.owner)
                .values(owner=None, expires_at=func.now())
            )
            await session.exec(delete(LeaseOwnerRow).where(col(LeaseOwnerRow.owner) == me.owner))
            await session.commit()

    async def leases(self) -> list[Lease]:
        """Every lease, by name."""
        async with self._session() as session:
            rows = await session.exec(select(LeaseRow).order_by(col(LeaseRow.name)))
            return [Lease(r.name, r.owner, r.epoch, r.expires_at) for r in rows]

    async def live_owners(self) -> list[LeaseOwnerRow]:
        async with self._session() as session:
            rows = await session.exec(
                select(LeaseOwnerRow)
                .where(col(LeaseOwnerRow.expires_at) > func.now())
                .order_by(col(LeaseOwnerRow.owner))
            )
            return list(rows)

    async def _present(self, session: AsyncSession, me: LeaseOwner, period: timedelta) -> None:
        statement = insert(LeaseOwnerRow).values(
            owner=me.owner, run_id=me.run_id, host=me.host, pid=me.pid,
            heartbeat_at=func.now(), expires_at=func.now() + period,
        )  # fmt: skip
        await session.exec(
            statement.on_conflict_do_update(
                index_elements=["owner"],
                set_={"heartbeat_at": func.now(), "expires_at": func.now() + period},
            )
        )

    async def _claim(
        self,
        session: AsyncSession,
        me: LeaseOwner,
        names: Sequence[str],
        wanted: int,
        period: timedelta,
    ) -> dict[str, int]:
        """Up to `wanted` of `names` that are free or expired, skipping rows another
        transaction holds (a rival claiming, or an intent being fenced)."""
        free = await session.exec(
            select(col(LeaseRow.name))
            .where(
                col(LeaseRow.name) == _names(names),
                (col(LeaseRow.owner).is_(None)) | (col(LeaseRow.expires_at) <= func.now()),
            )
            .order_by(col(LeaseRow.name))
            .limit(wanted)
            .with_for_update(skip_locked=True)
        )
        chosen = list(free.all())
        if not chosen:
            return {}
        claimed = await session.exec(
            update(LeaseRow)
            .where(col(LeaseRow.name) == _names(chosen))
            .values(owner=me.owner, epoch=col(LeaseRow.epoch) + 1, expires_at=func.now() + period)
            .returning(col(LeaseRow.name), col(LeaseRow.epoch))
        )
        return {name: epoch for name, epoch in claimed.all()}
