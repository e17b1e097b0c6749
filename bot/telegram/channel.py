"""Alerts to Telegram: each allowed chat on its own, long texts split, mutable per level."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import RetryAfter, TelegramError

from bot.app.alerts import ChannelUnavailable
from bot.domain.vocabulary import AlertLevel
from bot.telegram.formatting import esc, split_message

logger = logging.getLogger(__name__)

ICONS = {
    AlertLevel.INFO: "ℹ️",
    AlertLevel.ACTION: "✅",
    AlertLevel.WARNING: "⚠️",
    AlertLevel.CRITICAL: "🚨",
}


class TelegramChannel:
    """An AlertChannel: each allowed chat is a destination of its own.

    Muted levels go to no chat (the journal logged them when queued); critical is never
    muted. A long alert is split; if a later part fails, that chat gets every part again
    on the retry (Telegram offers no way to resume a split message).
    """

    def __init__(self, chat_ids: Sequence[int], mute: Sequence[AlertLevel] = ()) -> None:
        self.chat_ids = tuple(chat_ids)
        self.mute = frozenset(mute) - {AlertLevel.CRITICAL}
        self.bot: Bot | None = None  # set once the bot is up

    def chats_for(self, level: AlertLevel) -> tuple[int, ...]:
        return () if level in self.mute else self.chat_ids

    async def send(self, chat_id: int, level: AlertLevel, text: str) -> None:
        if self.bot is None:
            raise ChannelUnavailable("Telegram is not connected yet")
        body = f"{ICONS[level]} {esc(text)}".strip()
        for chunk in split_message(body):
            try:
                await self.bot.send_message(chat_id, chunk, parse_mode=ParseMode.HTML)
            except RetryAfter as error:
                wait = error.retry_after
                delay = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)
                raise ChannelUnavailable("Telegram rate limit", delay) from error
            except TelegramError as error:
                raise ChannelUnavailable(f"{type(error).__name__}: {error}") from error
        # The text is in the log already (queued); this line says where it went.
        logger.info("alert sent to Telegram chat %s", chat_id)
