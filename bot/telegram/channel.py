"""Alerts to Telegram: every allowed chat, long texts split, mutable per level."""

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
    """An AlertChannel. Muted levels go to the log only; critical is never muted."""

    def __init__(self, chat_ids: Sequence[int], mute: Sequence[AlertLevel] = ()) -> None:
        self.chat_ids = tuple(chat_ids)
        self.mute = frozenset(mute) - {AlertLevel.CRITICAL}
        self.bot: Bot | None = None  # set once the bot is up

    async def deliver(self, level: AlertLevel, text: str) -> None:
        logger.info("ALERT %s", text.replace("\n", " | "))
        if level in self.mute:
            return
        if self.bot is None:
            raise ChannelUnavailable("Telegram is not connected yet")
        body = f"{ICONS[level]} {esc(text)}".strip()
        for chat_id in self.chat_ids:
            for chunk in split_message(body):
                try:
                    await self.bot.send_message(chat_id, chunk, parse_mode=ParseMode.HTML)
                except RetryAfter as error:
                    wait = error.retry_after
                    delay = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)
                    raise ChannelUnavailable("Telegram rate limit", delay) from error
                except TelegramError as error:
                    raise ChannelUnavailable(f"{type(error).__name__}: {error}") from error
