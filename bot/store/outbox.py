"""The alert outbox: alerts are written here and sent when Telegram can take them.

Every alert is logged the moment it is queued, whatever channel sends it later and
whether or not that channel is up: the log never waits on Telegram. Delivery is tracked
per chat (`alert_deliveries`), so a retry after a partial failure reaches only the chats
still missing the alert.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from bot.domain.vocabulary import AlertLevel
from bot.store.codec import alert_record, row_id
from bot.store.records import AlertRecord
from bot.store.sessions import JournalBase
from bot.store.tables import AlertDeliveryRow, AlertRow

logger = logging.getLogger(__name__)

# Never below INFO, so every alert shows at the default log level; warnings and
# critical alerts keep their weight for a log filtered at WARNING.
LOG_LEVELS = {
    AlertLevel.INFO: logging.INFO,
    AlertLevel.ACTION: logging.INFO,
    AlertLevel.WARNING: logging.WARNING,
    AlertLevel.CRITICAL: logging.CRITICAL,
}


def one_line(text: str) -> str:
    """An alert's text on one log line (line breaks shown as ` | `)."""
    return text.replace("\r\n", "\n").replace("\n", " | ")


class AlertOutbox(JournalBase):
    async def enqueue_alert(self, level: AlertLevel, text: str, at: datetime | None = None) -> int:
        """Queue an alert, due at once, and log it. Returns its id.

        If the journal cannot take it, the alert is still logged (at ERROR at least)
        before the error propagates: an alert is never silent.
        """
        now = self._now(at)
        row = AlertRow(level=level.value, text=text, created_at=now, next_attempt_at=now)
        try:
            async with self._session() as session:
                session.add(row)
                await session.commit()
        except Exception as error:
            logger.log(
                max(LOG_LEVELS[level], logging.ERROR),
                "ALERT not queued (%s) [%s] %s",
                type(error).__name__,
                level.value,
                one_line(text),
            )
            raise
        logger.log(LOG_LEVELS[level], "ALERT queued [%s] %s", level.value, one_line(text))
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

    async def alert_deliveries(self, alert_ids: Sequence[int]) -> dict[int, set[int]]:
        """The chats each alert already reached (an empty set: none yet)."""
        delivered: dict[int, set[int]] = {alert_id: set() for alert_id in alert_ids}
        if not delivered:
            return delivered
        async with self._session() as session:
            rows = await session.exec(
                select(AlertDeliveryRow).where(col(AlertDeliveryRow.alert_id).in_(list(delivered)))
            )
            for row in rows:
                delivered[row.alert_id].add(row.chat_id)
        return delivered

    async def record_alert_delivery(
        self, alert_id: int, chat_id: int, at: datetime | None = None
    ) -> None:
        """Remember that `chat_id` has the alert; recording it twice changes nothing."""
        async with self._session() as session:
            if await session.get(AlertDeliveryRow, (alert_id, chat_id)) is not None:
                return  # the first delivery counts
            session.add(
                AlertDeliveryRow(alert_id=alert_id, chat_id=chat_id, delivered_at=self._now(at))
            )
            await session.commit()

    async def mark_alert_sent(self, alert_id: int, at: datetime | None = None) -> None:
        """Every chat has the alert: it leaves the outbox."""
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
