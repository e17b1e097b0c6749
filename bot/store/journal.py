"""The journal: every run, cycle, snapshot and action of the daemon, in one database.

`Journal` is the only way into the store. It shares one async engine and opens a short
session per call, so the scheduler, Telegram and the CLI can use it concurrently.
It returns frozen records (`bot.store.records`), never table objects.

Built for a thousand accounts in one process: the rows every cycle writes (start, end,
snapshot) are committed together with whatever other cycles wrote meanwhile
(`bot.store.cycle_writes`), each call returning once its row is in; snapshots are kept
when something changed or at a heartbeat (`bot.store.snapshot_keep`); what every cycle
reads and only changes when the bot acts (recent activity for caps and cooldowns) or the
owner commands (`bot.store.controls`) is kept in memory, dropped by this journal's own
writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy import delete, func, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock, utc_now
from bot.domain.actions import Action, RecentActivity
from bot.domain.models import AccountSnapshot
from bot.domain.outcomes import ActionOutcome
from bot.domain.vocabulary import AlertLevel
from bot.redaction import Redactor
from bot.store.action_log import ActionLog
from bot.store.codec import (
    action_record,
    cycle_record,
    position_row,
    positions_to_json,
    row_id,
    snapshot_record,
)
from bot.store.controls import OwnerControls
from bot.store.cycle_writes import CycleWrites
from bot.store.engine import build_engine, migrate, sqlite_file
from bot.store.outbox import AlertOutbox
from bot.store.records import (
    SUCCESSFUL_CYCLES,
    ActionRecord,
    ActionStatus,
    CycleRecord,
    CycleStatus,
    RunRecord,
    SnapshotRecord,
)
from bot.store.snapshot_keep import SnapshotFigures, SnapshotKeep, snapshot_figures
from bot.store.tables import (
    AccountSnapshotRow,
    ActionRow,
    CycleRow,
    DaemonRunRow,
    PositionSnapshotRow,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _HeldSnapshot:
    """A snapshot not stored (nothing changed), kept in case its cycle acts."""

    snapshot: AccountSnapshot
    equity: Decimal
    notional: Decimal
    leverage: Decimal | None
    margin_ratio: Decimal | None
    cycle_id: int | None
    figures: SnapshotFigures


class NoJournal(Exception):
    """A reader asked for a SQLite journal whose file does not exist (`create=False`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no journal at {path}")
        self.path = path


class Journal(ActionLog, AlertOutbox, OwnerControls):
    """The daemon's memory. Open with `await Journal.open(url)`; `await close()` at exit."""

    # Applied at the border to text that is stored and later shown or sent (cycle errors
    # and notes, alert texts): whatever a message quoted, no secret goes in.
    scrub: Redactor = Redactor()
    # Which of the cycles' snapshots are stored (a change, or a heartbeat).
    snapshot_keep: SnapshotKeep = SnapshotKeep()

    def __init__(self, engine: AsyncEngine, clock: Clock = utc_now) -> None:
        super().__init__(engine, clock)
        self.cycle_writes = CycleWrites(self._session)
        # Per account: the figures and id of the newest snapshot stored by this process.
        self._kept: dict[str, tuple[SnapshotFigures, int]] = {}
        # Per account: its newest snapshot not stored (unchanged), until its cycle acts.
        self._held: dict[str, _HeldSnapshot] = {}
        # Per account: recent activity as last read (the UTC day and time it was read
        # for), until this journal writes one of the account's actions.
        self._activity: dict[str, tuple[date, datetime, RecentActivity]] = {}
        # Raised by every forget of all accounts, and per account by a forget of its
        # own: a read that started before one concerning its account is not kept (a
        # per-account count, so reconciling one account spoils no other's read).
        self._action_writes = 0
        self._account_writes: dict[str, int] = {}

    @classmethod
    async def open(
        cls,
        url: str | URL,
        clock: Callable[[], datetime] = utc_now,
        *,
        secrets: Iterable[str] = (),
        create: bool = True,
    ) -> Journal:
        """Connect to `url`, migrate the schema to head, and return the journal.

        `clock` stamps rows whose time the caller does not give (alerts, results).
        `secrets` (the config's credentials and tokens) are scrubbed, in every form,
        from cycle errors and notes and from alert texts before they are stored.
        `create=False` (the read-only commands) raises `NoJournal` instead of making an
        empty SQLite file, which would only ever report "never".
        """
        database = sqlite_file(url)
        if not create and database is not None and not database.exists():
            raise NoJournal(database)
        engine = build_engine(url)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        journal = cls(engine, clock)
        journal.scrub = Redactor(secrets)
        return journal

    async def close(self) -> None:
        """Write what is queued, then close every pooled connection."""
        await self.cycle_writes.drain()
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- runs and cycles ------------------------------------------------------------

    async def start_run(self, pid: int, version: str, at: datetime | None = None) -> int:
        """Record a daemon start; its cycles name the returned id (`start_cycle`)."""
        row = DaemonRunRow(pid=pid, version=version, started_at=self._now(at))
        await self._insert(row)
        return row_id(row.id)

    async def end_run(self, run_id: int, reason: str, at: datetime | None = None) -> None:
        """Record a clean stop. A run without one ended in a crash or kill."""
        async with self._session() as session:
            await session.exec(
                update(DaemonRunRow)
                .where(col(DaemonRunRow.id) == run_id)
                .values(stopped_at=self._now(at), exit_reason=reason)
            )
            await session.commit()

    async def runs(self) -> list[RunRecord]:
        """Every daemon run, oldest first (`stopped_at` None: still running, or crashed)."""
        async with self._session() as session:
            rows = await session.exec(select(DaemonRunRow).order_by(col(DaemonRunRow.id)))
            return [
                RunRecord(row_id(r.id), r.pid, r.version, r.started_at, r.stopped_at, r.exit_reason)
                for r in rows
            ]

    async def start_cycle(self, account: str, at: datetime, run_id: int | None = None) -> int:
        """Open a cycle (status `running` until `finish_cycle`) of daemon run `run_id`
        (None outside a daemon: `plan`, tests). Returns its id."""
        # Plain values, not a CycleRow: building table objects was a fifth of a steady
        # cycle's CPU.
        values = {
            "run_id": run_id,
            "account": account,
            "started_at": self._now(at),
            "finished_at": None,
            "status": CycleStatus.RUNNING.value,
            "notes": "[]",
            "error": None,
        }
        return await self.cycle_writes.start_cycle(values)

    async def finish_cycle(
        self,
        cycle_id: int,
        status: CycleStatus,
        at: datetime,
        notes: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        """Close a cycle. `status` must be a `CycleStatus` value (ValueError otherwise)."""
        values = {
            "status": CycleStatus(status).value,
            "finished_at": self._now(at),
            "notes": json.dumps([self.scrub(note) for note in notes]),
            "error": None if error is None else self.scrub(error),
        }
        await self.cycle_writes.finish_cycle(cycle_id, values)

    async def enqueue_alert(self, level: AlertLevel, text: str, at: datetime | None = None) -> int:
        """Queue an alert (its text scrubbed of secrets), due at once. Returns its id."""
        return await super().enqueue_alert(level, self.scrub(text), at)

    async def mark_alert_failed(self, alert_id: int, error: str, retry_at: datetime) -> None:
        """Keep the delivery error (scrubbed: a channel's error may quote its own URL)."""
        await super().mark_alert_failed(alert_id, self.scrub(error), retry_at)

    async def close_interrupted_cycles(
        self, account: str, at: datetime, keep: int | None = None
    ) -> int:
        """Mark cycles a dead process left `running` as failed (all but `keep`).

        Only the daemon calls this, on its first cycle, while it holds the account.
        Returns how many were closed. What this journal kept in memory about the
        account's actions is read again: another process may have acted on it meanwhile.
        """
        self._forget_activity(account)
        values = {
            "status": CycleStatus.FAILED.value,
            "finished_at": self._now(at),
            "error": "interrupted: the process stopped during the cycle",
        }
        query = (
            update(CycleRow)
            .where(col(CycleRow.account) == account)
            .where(col(CycleRow.status) == CycleStatus.RUNNING.value)
            .where(col(CycleRow.id) != (keep if keep is not None else -1))
            .values(values)
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
            return int(result.rowcount or 0)

    async def last_successful_cycle(self, account: str | None = None) -> datetime | None:
        """When the newest cycle that ran to the end (ok, dry run, paused) finished."""
        query = select(func.max(col(CycleRow.finished_at))).where(
            col(CycleRow.status).in_([s.value for s in SUCCESSFUL_CYCLES])
        )
        if account is not None:
            query = query.where(col(CycleRow.account) == account)
        async with self._session() as session:
            return (await session.exec(query)).one()

    async def history(self, account: str | None = None, limit: int = 20) -> list[CycleRecord]:
        """The newest `limit` cycles, newest first, each with its actions."""
        query = select(CycleRow).order_by(col(CycleRow.started_at).desc(), col(CycleRow.id).desc())
        if account is not None:
            query = query.where(col(CycleRow.account) == account)
        async with self._session() as session:
            cycles = list(await session.exec(query.limit(limit)))
            ids = [row_id(c.id) for c in cycles]
            rows = await session.exec(
                select(ActionRow)
                .where(col(ActionRow.cycle_id).in_(ids))
                .order_by(col(ActionRow.created_at), col(ActionRow.id))
            )
            actions: dict[int | None, list[ActionRecord]] = {}
            for row in rows:
                actions.setdefault(row.cycle_id, []).append(action_record(row))
        return [cycle_record(c, tuple(actions.get(c.id, ()))) for c in cycles]

    async def cycle_actions(self, cycle_id: int) -> list[ActionRecord]:
        """The actions journaled under one cycle, oldest first."""
        async with self._session() as session:
            rows = await session.exec(
                select(ActionRow)
                .where(col(ActionRow.cycle_id) == cycle_id)
                .order_by(col(ActionRow.created_at), col(ActionRow.id))
            )
            return [action_record(row) for row in rows]

    # -- snapshots -------------------------------------------------------------------

    async def record_snapshot(
        self,
        account: str,
        snapshot: AccountSnapshot,
        equity: Decimal,
        notional: Decimal,
        leverage: Decimal | None,
        margin_ratio: Decimal | None,
        cycle_id: int | None = None,
    ) -> int:
        """Store `snapshot` with the numbers computed from it. Returns the snapshot id.

        A snapshot within `snapshot_keep`'s tolerance of the account's newest one stored
        by this journal, younger than its heartbeat, is held back (that one's id is
        returned): it is stored only if its cycle then journals an action, before that
        action's intent, so every acting cycle shows the snapshot it planned on."""
        figures = snapshot_figures(snapshot, equity, notional, margin_ratio)
        kept = self._kept.get(account)
        held = _HeldSnapshot(snapshot, equity, notional, leverage, margin_ratio, cycle_id, figures)
        if kept is not None and not self.snapshot_keep.worth_keeping(figures, kept[0]):
            self._held[account] = held
            return kept[1]
        return await self._store_snapshot(account, held)

    async def _store_snapshot(self, account: str, held: _HeldSnapshot) -> int:
        self._held.pop(account, None)
        snapshot, source = held.snapshot, held.snapshot.source
        row = AccountSnapshotRow(
            cycle_id=held.cycle_id,
            account=account,
            settle=snapshot.settle,
            taken_at=self._now(snapshot.taken_at),
            wallet=snapshot.derivatives.total,
            wallet_free=snapshot.derivatives.free,
            equity=held.equity,
            notional=held.notional,
            leverage=held.leverage,
            margin_ratio=held.margin_ratio,
            source_balance=None if source is None else source.total,
            source_free=None if source is None else source.free,
            positions_json=positions_to_json(snapshot.positions),
        )
        positions = [
            position_row(0, p).model_dump(exclude={"id", "snapshot_id"}) for p in snapshot.positions
        ]
        snapshot_id = await self.cycle_writes.snapshot(row.model_dump(exclude={"id"}), positions)
        self._kept[account] = (held.figures, snapshot_id)
        return snapshot_id

    async def latest_snapshots(self) -> dict[str, SnapshotRecord]:
        """The newest snapshot of every account, by account."""
        async with self._session() as session:
            rows = await self._latest_snapshot_rows(session)
            return {row.account: snapshot_record(row) for row in rows}

    async def snapshots_since(self, account: str, since: datetime) -> list[SnapshotRecord]:
        """Snapshots of `account` taken at or after `since`, oldest first (for charts)."""
        async with self._session() as session:
            rows = await session.exec(
                select(AccountSnapshotRow)
                .where(
                    col(AccountSnapshotRow.account) == account,
                    col(AccountSnapshotRow.taken_at) >= self._now(since),
                )
                .order_by(col(AccountSnapshotRow.taken_at), col(AccountSnapshotRow.id))
            )
            return [snapshot_record(row) for row in rows]

    async def prune_snapshots(self, older_than: datetime) -> int:
        """Delete snapshots taken before `older_than`, except each account's newest.

        Returns how many account snapshots went (their positions go with them).
        """
        cutoff = self._now(older_than)
        async with self._session() as session:
            keep = [row_id(row.id) for row in await self._latest_snapshot_rows(session)]
            old = (
                col(AccountSnapshotRow.taken_at) < cutoff,
                col(AccountSnapshotRow.id).not_in(keep),
            )
            # Subqueries, not id lists: months of snapshots exceed SQLite's bound-parameter limit.
            await session.exec(
                delete(PositionSnapshotRow).where(
                    col(PositionSnapshotRow.snapshot_id).in_(
                        select(col(AccountSnapshotRow.id)).where(*old)
                    )
                )
            )
            result = await session.exec(delete(AccountSnapshotRow).where(*old))
            await session.commit()
        pruned = result.rowcount
        logger.info("pruned %d snapshots taken before %s", pruned, cutoff.isoformat())
        return pruned

    # -- actions: what the cycle reads every time is kept, dropped by every write ----------

    async def recent_activity(self, account: str, now: datetime) -> RecentActivity:
        """As `ActionLog.recent_activity`, read once and kept until this journal writes
        one of `account`'s actions (or the UTC day turns)."""
        now = self._now(now)
        day = now.astimezone(UTC).date()
        cached = self._activity.get(account)
        if cached is not None and cached[0] == day and cached[1] <= now:
            return cached[2]
        writes = (self._action_writes, self._account_writes.get(account, 0))
        activity = await super().recent_activity(account, now)
        if writes == (self._action_writes, self._account_writes.get(account, 0)):
            self._activity[account] = (day, now, activity)
        return activity

    async def record_intent(
        self,
        account: str,
        cycle_id: int | None,
        action: Action,
        client_id: str,
        dry_run: bool = False,
        at: datetime | None = None,
    ) -> None:
        held = self._held.get(account)
        if held is not None and held.cycle_id == cycle_id:
            # The snapshot this cycle planned on goes in before its first intent.
            await self._store_snapshot(account, held)
        try:
            await super().record_intent(account, cycle_id, action, client_id, dry_run, at)
        finally:
            self._forget_activity(account)

    async def record_result(
        self,
        account: str,
        cycle_id: int | None,
        outcome: ActionOutcome,
        dry_run: bool = False,
        at: datetime | None = None,
    ) -> None:
        try:
            await super().record_result(account, cycle_id, outcome, dry_run, at)
        finally:
            self._forget_activity(account)

    async def resolve_intent(
        self,
        client_id: str,
        status: ActionStatus,
        exchange_id: str | None = None,
        error: str | None = None,
        *,
        filled: Decimal | None = None,
        fill_price: Decimal | None = None,
        fee: Decimal | None = None,
        at: datetime | None = None,
    ) -> None:
        # Rare (settling lost replies): the account is not named, so all are read again.
        try:
            await super().resolve_intent(
                client_id, status, exchange_id, error,
                filled=filled, fill_price=fill_price, fee=fee, at=at,
            )  # fmt: skip
        finally:
            self._forget_activity(None)

    def _forget_activity(self, account: str | None) -> None:
        """Drop the kept activity of `account` (None: of every account). A read that
        started before this is not kept either (`_action_writes`, `_account_writes`)."""
        if account is None:
            self._action_writes += 1
            self._activity.clear()
        else:
            self._account_writes[account] = self._account_writes.get(account, 0) + 1
            self._activity.pop(account, None)

    # -- plumbing ----------------------------------------------------------------------

    async def _insert(self, row: DaemonRunRow | CycleRow) -> None:
        async with self._session() as session:
            session.add(row)
            await session.commit()

    @staticmethod
    async def _latest_snapshot_rows(session: AsyncSession) -> list[AccountSnapshotRow]:
        accounts = await session.exec(select(col(AccountSnapshotRow.account)).distinct())
        latest: list[AccountSnapshotRow] = []
        for account in list(accounts):
            newest = await session.exec(
                select(AccountSnapshotRow)
                .where(col(AccountSnapshotRow.account) == account)
                .order_by(
                    col(AccountSnapshotRow.taken_at).desc(), col(AccountSnapshotRow.id).desc()
                )
                .limit(1)
            )
            latest.append(newest.one())
        return latest
