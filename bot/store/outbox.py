"""The alert outbox: alerts are written here and sent when Telegram can take them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from bot.domain.vocabulary import AlertLevel
from bot.store.codec import alert_record, row_id
from bot.store.records import AlertRecord
from bot.store.sessions import JournalBase
from bot.store.tables import AlertRow


class AlertOutbox(JournalBase):
    async def enqueue_alert(self, level: AlertLevel, text: str, at: datetime | None = None) -> int:
        """Queue an alert, due at once. Returns its id."""
        now = self._now(at)
        row = AlertRow(level=level.value, text=text, created_at=now, next_attempt_at=now)
        async with self._session() as session:
            session.add(row)
            await session.commit()
        return row_id(row.id)

    async def due_alerts(self, now: datetime, limit: int = 20) -> list[AlertRecord]:
        """Unsent alerts that may go now, oldest first.

        Delivery is in order: the list stops at the first unsent alert that is held back
        (e.g. after a 429), so nothing newer overtakes it.
        """
        async with self._session() as session:
            rows = await session.exec(
                select(AlertRow)
                .where(col(AlertRow.sent_at).is_(None))
                .order_by(col(AlertRow.created_at), col(AlertRow.id))
                .limit(limit)
            )
            due: list[AlertRecord] = []
            for row in rows:
                if row.next_attempt_at > self._now(now):
                    break
                due.append(alert_record(row))
            return due

    async def mark_alert_sent(self, alert_id: int, at: datetime | None = None) -> None:
        await self._update(alert_id, sent_at=self._now(at), attempts=col(AlertRow.attempts) + 1)

    async def mark_alert_failed(self, alert_id: int, error: str, retry_at: datetime) -> None:
        """Count the failed attempt and hold the alert back until `retry_at`."""
        await self._update(
            alert_id,
            attempts=col(AlertRow.attempts) + 1,
            last_error=error,
            next_attempt_at=self._now(retry_at),
        )

    async def _update(self, alert_id: int, **values: object) -> None:
        async with self._session() as session:
            await session.exec(
                update(AlertRow).where(col(AlertRow.id) == alert_id).values(**values)
            )
            await session.commit()
