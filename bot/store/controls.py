"""What the owner sets at run time: pause, target overrides; and the command audit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select

from bot.domain.targets import Target
from bot.store.codec import target_from_row, target_values
from bot.store.records import AuditRecord
from bot.store.sessions import JournalBase
from bot.store.tables import CommandAuditRow, PauseRow, TargetOverrideRow


class OwnerControls(JournalBase):
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

    async def paused_accounts(self) -> set[str]:
        """Accounts paused now; contains `ALL_ACCOUNTS` when every account is."""
        async with self._session() as session:
            rows = await session.exec(
                select(PauseRow.account).where(col(PauseRow.paused).is_(True))
            )
            return set(rows)

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

    async def target_overrides(self, account: str) -> dict[str | None, Target]:
        """Overrides of `account` by symbol; the key None is the account-wide band."""
        async with self._session() as session:
            rows = await session.exec(
                select(TargetOverrideRow).where(col(TargetOverrideRow.account) == account)
            )
            return {row.symbol: target_from_row(row) for row in rows}

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
