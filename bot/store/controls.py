"""What the owner sets at run time: pause, target overrides; and the command audit.

Every account's cycle asks for the pause state and its overrides, which change only
when the owner says so: they are read for all accounts at once and kept in memory,
dropped by this journal's own writes (so a change made here is seen by the next cycle)
and read again once they are `CONTROLS_MAX_AGE` old (so a change made by another
process, `levbot` on the command line or another daemon on PostgreSQL, is seen within
that time: well inside one cycle interval).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select

from bot.domain.targets import Target
from bot.store.codec import target_from_row, target_values
from bot.store.records import AuditRecord
from bot.store.sessions import JournalBase
from bot.store.tables import CommandAuditRow, PauseRow, TargetOverrideRow

# Seconds a read of the controls is served from memory (monotonic time, not the journal's
# clock, which a backtest or a test may hold still).
CONTROLS_MAX_AGE = 1.0


@dataclass(frozen=True, slots=True)
class ControlsView:
    """Pause states and target overrides of every account, as read at `read_at`."""

    paused: frozenset[str]
    overrides: dict[str, dict[str | None, Target]]
    read_at: float


class OwnerControls(JournalBase):
    controls_max_age: float = CONTROLS_MAX_AGE
    _controls: ControlsView | None = None
    # Raised by every write here: a read that started before one is not kept.
    _controls_writes: int = 0
    _controls_read: asyncio.Future[ControlsView] | None = None

    async def set_paused(
        self, account: str, paused: bool, by: str, at: datetime | None = None
    ) -> None:
        """Pause or resume `account` (`ALL_ACCOUNTS` for every account)."""
        now = self._now(at)
        async with self._session() as session:
            await self._serialize_writes(session, PauseRow)
            result = await session.exec(
                update(PauseRow)
                .where(col(PauseRow.account) == account)
                .values(paused=paused, set_by=by, set_at=now)
            )
            if result.rowcount == 0:
                session.add(PauseRow(account=account, paused=paused, set_by=by, set_at=now))
            await session.commit()
        self.forget_controls()

    async def paused_accounts(self) -> set[str]:
        """Accounts paused now; contains `ALL_ACCOUNTS` when every account is."""
        return set((await self._controls_view()).paused)

    async def set_target_override(
        self,
        account: str,
        symbol: str | None,
        target: Target | None,
        by: str,
        at: datetime | None = None,
    ) -> None:
        """Override the configured target of `account` (`symbol` None: the account band).

        `target` None removes the override, so the config applies again.
        """
        now = self._now(at)
        scope = (
            col(TargetOverrideRow.account) == account,
            col(TargetOverrideRow.symbol).is_not_distinct_from(symbol),
        )
        async with self._session() as session:
            if target is None:
                await session.exec(delete(TargetOverrideRow).where(*scope))
            else:
                await self._serialize_writes(session, TargetOverrideRow)
                values = {**target_values(target), "set_by": by, "set_at": now}
                result = await session.exec(update(TargetOverrideRow).where(*scope).values(values))
                if result.rowcount == 0:
                    session.add(TargetOverrideRow(account=account, symbol=symbol, **values))
            await session.commit()
        self.forget_controls()

    async def target_overrides(self, account: str) -> dict[str | None, Target]:
        """Overrides of `account` by symbol; the key None is the account-wide band."""
        return dict((await self._controls_view()).overrides.get(account, {}))

    def forget_controls(self) -> None:
        """Read the controls again on the next ask (another writer is known to have
        changed them)."""
        self._controls = None
        self._controls_writes += 1
        # A read in flight started before the write: the next ask reads again.
        self._controls_read = None

    async def _controls_view(self) -> ControlsView:
        view = self._controls
        if view is not None and time.monotonic() - view.read_at < self.controls_max_age:
            return view
        # Cycles that find the view old at the same moment share one read.
        reading = self._controls_read
        if reading is None or reading.done():
            reading = self._controls_read = asyncio.ensure_future(self._read_controls())
        return await asyncio.shield(reading)

    async def _read_controls(self) -> ControlsView:
        read_at, writes = time.monotonic(), self._controls_writes
        async with self._session() as session:
            paused = await session.exec(
                select(PauseRow.account).where(col(PauseRow.paused).is_(True))
            )
            paused_now = frozenset(paused)
            overrides: dict[str, dict[str | None, Target]] = {}
            for row in await session.exec(select(TargetOverrideRow)):
                overrides.setdefault(row.account, {})[row.symbol] = target_from_row(row)
        view = ControlsView(paused_now, overrides, read_at)
        if writes == self._controls_writes:
            self._controls = view
        return view

    async def audit(
        self,
        chat_id: int,
        user: str | None,
        command: str,
        args: str,
        allowed: bool,
        at: datetime | None = None,
    ) -> None:
        """Record a command received, whether it was allowed or not."""
        row = CommandAuditRow(
            chat_id=chat_id,
            user=user,
            command=command,
            args=args,
            allowed=allowed,
            at=self._now(at),
        )
        async with self._session() as session:
            session.add(row)
            await session.commit()

    async def audit_entries(self, limit: int = 50) -> list[AuditRecord]:
        """The newest command-audit rows, newest first."""
        async with self._session() as session:
            rows = await session.exec(
                select(CommandAuditRow)
                .order_by(col(CommandAuditRow.at).desc(), col(CommandAuditRow.id).desc())
                .limit(limit)
            )
            return [
                AuditRecord(row.chat_id, row.user, row.command, row.args, row.allowed, row.at)
                for row in rows
            ]
