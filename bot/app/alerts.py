"""Draining the alert outbox. Alerts are written to the journal first, so a channel that
is down (Telegram, or anything else) delays them but never loses them, and never delays
a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.vocabulary import AlertLevel
from bot.store.journal import Journal

logger = logging.getLogger(__name__)

_LOG_LEVELS = {
    AlertLevel.INFO: logging.INFO,
    AlertLevel.ACTION: logging.INFO,
    AlertLevel.WARNING: logging.WARNING,
    AlertLevel.CRITICAL: logging.CRITICAL,
}
MAX_BACKOFF = timedelta(minutes=10)


class ChannelUnavailable(Exception):
    """The alert was not delivered; `retry_after` says when to try again, if known."""

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AlertChannel(Protocol):
    """Delivers one alert; raises (preferably `ChannelUnavailable`) when it could not."""

    async def deliver(self, level: AlertLevel, text: str) -> None: ...


class LogChannel:
    """Alerts as log lines: the channel when Telegram is not configured."""

    async def deliver(self, level: AlertLevel, text: str) -> None:
        logger.log(_LOG_LEVELS[level], "ALERT %s", text.replace("\n", " | "))


def backoff(attempts: int) -> timedelta:
    """2s, 4s, 8s ... capped at ten minutes."""
    return min(timedelta(seconds=2 ** max(1, attempts)), MAX_BACKOFF)


async def flush_outbox(
    journal: Journal,
    channel: AlertChannel,
    clock: Callable[[], datetime],
    limit: int = 20,
) -> int:
    """Send what is due, oldest first; returns how many were sent."""
    sent = 0
    for alert in await journal.due_alerts(clock(), limit):
        try:
            await channel.deliver(alert.level, alert.text)
        except Exception as error:
            # A channel may say when to come back (Telegram's 429 retry_after).
            wait = error.retry_after if isinstance(error, ChannelUnavailable) else None
            delay = wait if wait is not None else backoff(alert.attempts + 1)
            retry_at = clock() + delay
            await journal.mark_alert_failed(alert.id, f"{type(error).__name__}: {error}", retry_at)
            logger.info("alert %s not delivered (%s); retry at %s", alert.id, error, retry_at)
            break
        await journal.mark_alert_sent(alert.id, clock())
        sent += 1
    return sent
