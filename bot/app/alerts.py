"""Draining the alert outbox. Alerts are written to the journal first, so a channel that
is down (Telegram, or anything else) delays them but never loses them, and never delays
a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from bot.domain.vocabulary import AlertLevel
from bot.store.records import AlertRecord

if TYPE_CHECKING:
    # Only a type here: the backtest runs the cycle without the database's libraries.
    from bot.store.journal import Journal

logger = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=10)


class ChannelUnavailable(Exception):
    """The alert was not delivered; `retry_after` says when to try again, if known."""

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AlertChannel(Protocol):
    """Where alerts go: a few chats, each sent to (and tracked) on its own.

    `send` raises (preferably `ChannelUnavailable`) when the chat did not get it.
    """

    def chats_for(self, level: AlertLevel) -> tuple[int, ...]:
        """The chats an alert of `level` goes to; none: it is only logged (as every
        alert is, when queued)."""
        ...

    async def send(self, chat_id: int, level: AlertLevel, text: str) -> None: ...


# The log counts as one chat; Telegram never uses 0 as a chat id.
LOG_CHAT = 0


class LogChannel:
    """Alerts as log lines: the channel when Telegram is not configured.

    The journal logs every alert when it is queued, so `send` writes no second copy.
    `deliver` logs an alert that never reached the outbox (the database is gone).
    """

    def chats_for(self, level: AlertLevel) -> tuple[int, ...]:
        return (LOG_CHAT,)

    async def send(self, chat_id: int, level: AlertLevel, text: str) -> None:
        logger.debug("alert delivered to the log (written when it was queued)")

    async def deliver(self, level: AlertLevel, text: str) -> None:
        """Log an alert straight away, without the outbox."""
        # Imported here: the outbox module brings SQLAlchemy, which only a daemon has.
        from bot.store.outbox import LOG_LEVELS, one_line

        logger.log(LOG_LEVELS[level], "ALERT [%s] %s", level.value, one_line(text))


def backoff(attempts: int) -> timedelta:
    """2s, 4s, 8s ... capped at ten minutes."""
    return min(timedelta(seconds=2 ** max(1, attempts)), MAX_BACKOFF)


async def flush_outbox(
    journal: Journal,
    channel: AlertChannel,
    clock: Callable[[], datetime],
    limit: int = 20,
) -> int:
    """Send what is due, oldest first; returns how many left the outbox.

    Each alert goes to each of the channel's chats that does not have it yet, and each
    success is journaled at once: a retry after a partial failure skips the chats that
    already have it. An alert leaves the outbox when every chat has it. The first failure
    holds that alert, and everything newer, back until its retry time (order is kept).
    """
    due = await journal.due_alerts(clock(), limit)
    delivered = await journal.alert_deliveries([alert.id for alert in due])
    sent = 0
    for alert in due:
        for chat_id in channel.chats_for(alert.level):
            if chat_id in delivered[alert.id]:
                continue
            try:
                await channel.send(chat_id, alert.level, alert.text)
            except Exception as error:
                await _hold_back(journal, alert, chat_id, error, clock)
                return sent
            await journal.record_alert_delivery(alert.id, chat_id, clock())
        await journal.mark_alert_sent(alert.id, clock())
        sent += 1
    return sent


async def _hold_back(
    journal: Journal,
    alert: AlertRecord,
    chat_id: int,
    error: Exception,
    clock: Callable[[], datetime],
) -> None:
    # A channel may say when to come back (Telegram's 429 retry_after).
    wait = error.retry_after if isinstance(error, ChannelUnavailable) else None
    retry_at = clock() + (wait if wait is not None else backoff(alert.attempts + 1))
    await journal.mark_alert_failed(alert.id, f"{type(error).__name__}: {error}", retry_at)
    logger.info(
        "alert %s not delivered to chat %s (%s); retry at %s", alert.id, chat_id, error, retry_at
    )
