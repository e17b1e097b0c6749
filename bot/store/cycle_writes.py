"""Group commit for the rows every cycle writes: cycle start and end, snapshots.

A thousand accounts in one process each open, snapshot and close a cycle every
interval; one transaction (and one statement) per row cost most of a round's CPU. Here
the rows queued while the event loop runs its other coroutines are committed together,
in one transaction, by one writer: each call still returns only once its row is
committed (a cycle id is a real id, a cycle's own rows are in the database before any
intent of that cycle is journaled, and a crash loses nothing that was acknowledged).
A batch the database refuses is retried row by row, so one bad row fails only its own
caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.store.tables import AccountSnapshotRow, CycleRow, PositionSnapshotRow

logger = logging.getLogger(__name__)

_CYCLES = CycleRow.__table__  # type: ignore[attr-defined]
_SNAPSHOTS = AccountSnapshotRow.__table__  # type: ignore[attr-defined]
_POSITIONS = PositionSnapshotRow.__table__  # type: ignore[attr-defined]

# One multi-row INSERT ... RETURNING for a whole batch (SQLite >= 3.35, PostgreSQL). The
# order of RETURNING is not the order given (asking SQLAlchemy to sort it makes SQLite
# insert row by row), so each new id is matched by its row's account: within one batch
# an account appears once, and the rare repeat is inserted on its own.
_INSERT_CYCLES = insert(_CYCLES).returning(_CYCLES.c.id, _CYCLES.c.account)
_INSERT_SNAPSHOTS = insert(_SNAPSHOTS).returning(_SNAPSHOTS.c.id, _SNAPSHOTS.c.account)
_STOPPED = RuntimeError("the journal's writer stopped before writing this row")
_FINISH_CYCLES = (
    update(_CYCLES)
    .where(_CYCLES.c.id == bindparam("cycle_id"))
    .values(
        status=bindparam("new_status"),
        finished_at=bindparam("new_finished_at"),
        notes=bindparam("new_notes"),
        error=bindparam("new_error"),
    )
)


@dataclass(slots=True)
class _Row:
    """One queued write and the caller waiting for it (the new row's id, or None)."""

    kind: str  # "cycle", "snapshot" or "finish"
    values: dict[str, Any]
    positions: Sequence[dict[str, Any]] = ()
    done: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CycleWrites:
    """The queue and its one writer (a task that runs while rows are waiting)."""

    def __init__(self, session: Callable[[], AbstractAsyncContextManager[AsyncSession]]) -> None:
        self._session = session
        self._queue: list[_Row] = []
        self._writer: asyncio.Task[None] | None = None
        # Figures for the benchmark and the tests: batches committed, rows in them.
        self.batches = 0
        self.rows = 0

    async def start_cycle(self, values: dict[str, Any]) -> int:
        """Insert a cycle row; its id."""
        cycle_id = await self._submit(_Row("cycle", values))
        assert cycle_id is not None
        return cycle_id

    async def snapshot(self, values: dict[str, Any], positions: Sequence[dict[str, Any]]) -> int:
        """Insert a snapshot row and its positions (their `snapshot_id` filled in); its id."""
        snapshot_id = await self._submit(_Row("snapshot", values, positions))
        assert snapshot_id is not None
        return snapshot_id

    async def finish_cycle(self, cycle_id: int, values: dict[str, Any]) -> None:
        """Close cycle `cycle_id` with `values` (status, finished_at, notes, error)."""
        given = {f"new_{name}": value for name, value in values.items()}
        await self._submit(_Row("finish", {"cycle_id": cycle_id, **given}))

    async def drain(self) -> None:
        """Wait until every queued row is committed (or failed)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _submit(self, row: _Row) -> int | None:
        self._queue.append(row)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_queue())
        return await row.done

    async def _write_queue(self) -> None:
        try:
            # The coroutines woken with this one queue their rows before it writes.
            await asyncio.sleep(0)
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._write_batch(batch)
                finally:
                    for row in batch:
                        _settle(row, error=_STOPPED)
        finally:
            for row in self._queue:
                _settle(row, error=_STOPPED)
            self._queue = []
            self._writer = None

    async def _write_batch(self, batch: list[_Row]) -> None:
        try:
            ids = await self._commit(batch)
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0], error=error)
                return
            logger.warning(
                "journal batch of %d rows refused (%s): writing them one by one",
                len(batch), type(error).__name__,
            )  # fmt: skip
            for row in batch:
                try:
                    ids = await self._commit([row])
                except Exception as single:
                    _settle(row, error=single)
                else:
                    _settle(row, ids[0])
            return
        for row, new_id in zip(batch, ids, strict=True):
            _settle(row, new_id)

    async def _commit(self, batch: list[_Row]) -> list[int | None]:
        """One transaction: cycles inserted, snapshots and their positions, cycles closed."""
        new_ids: dict[int, int] = {}
        async with self._session() as session:
            connection = await session.connection()
            for group in _by_account(row for row in batch if row.kind == "cycle"):
                new_ids.update(await _insert(connection, _INSERT_CYCLES, group))
            for group in _by_account(row for row in batch if row.kind == "snapshot"):
                snapshot_ids = await _insert(connection, _INSERT_SNAPSHOTS, group)
                new_ids.update(snapshot_ids)
                positions = [
                    {**position, "snapshot_id": snapshot_ids[id(row)]}
                    for row in group
                    for position in row.positions
                ]
                if positions:
                    await connection.execute(insert(_POSITIONS), positions)
            finishes = [row.values for row in batch if row.kind == "finish"]
            if finishes:
                await connection.execute(_FINISH_CYCLES, finishes)
            await session.commit()
        self.batches += 1
        self.rows += len(batch)
        return [new_ids.get(id(row)) for row in batch]


def _by_account(rows: Iterable[_Row]) -> list[list[_Row]]:
    """Rows in groups naming each account once: all the first rows of each account, then
    the second ones, and so on (an account's rows keep their order)."""
    groups: list[list[_Row]] = []
    seen: dict[str, int] = {}
    for row in rows:
        account = str(row.values["account"])
        index = seen.get(account, 0)
        seen[account] = index + 1
        if index == len(groups):
            groups.append([])
        groups[index].append(row)
    return groups


async def _insert(connection: AsyncConnection, statement: Any, rows: list[_Row]) -> dict[int, int]:
    """Insert `rows` (one per account) in one statement; the new id of each, by row."""
    result = await connection.execute(statement, [row.values for row in rows])
    by_account = {account: new_id for new_id, account in result.all()}
    return {id(row): by_account[row.values["account"]] for row in rows}


def _settle(row: _Row, new_id: int | None = None, error: BaseException | None = None) -> None:
    if row.done.done():
        return  # its caller was cancelled
    if error is not None:
        row.done.set_exception(error)
    else:
        row.done.set_result(new_id)
