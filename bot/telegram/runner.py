"""Running python-telegram-bot inside the daemon's loop, by hand, never blocking a cycle.

`initialize`, `start` and `updater.start_polling` are called directly (not
`run_polling`, which owns the loop). If Telegram is unreachable at start-up, a
background task keeps retrying with backoff while cycles carry on; alerts wait in the
outbox meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from telegram import BotCommand, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    TypeHandler,
    filters,
)

from bot.app.config import TelegramConfig
from bot.app.control import Controls
from bot.telegram.channel import TelegramChannel
from bot.telegram.commands import HELP, ChatCommands

logger = logging.getLogger(__name__)

RETRY_FIRST = timedelta(seconds=2)
RETRY_MAX = timedelta(minutes=5)


def build_application(settings: TelegramConfig, commands: ChatCommands) -> Application:  # type: ignore[type-arg]
    """A PTB Application talking to `api_base_url`, with our handlers."""
    api = settings.api_base_url.rstrip("/")
    application = (
        ApplicationBuilder()
        .token(settings.token.get_secret_value())
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .build()
    )
    # The gatekeeper stops everyone else first; the filters are a second lock on the door.
    allowed: filters.BaseFilter = filters.Chat(chat_id=list(settings.allowed_chat_ids))
    if settings.allowed_user_ids is not None:
        allowed = allowed & filters.User(user_id=list(settings.allowed_user_ids))
    application.add_handler(TypeHandler(Update, commands.gatekeeper), group=-1)
    for name in HELP:
        application.add_handler(CommandHandler(name, getattr(commands, name), filters=allowed))
    application.add_handler(CommandHandler("start", commands.help, filters=allowed))
    application.add_handler(CallbackQueryHandler(commands.button))
    application.add_error_handler(commands.on_error)
    return application


class TelegramRunner:
    """Owns the PTB application's lifecycle inside the daemon."""

    def __init__(
        self,
        settings: TelegramConfig,
        controls: Controls,
        channel: TelegramChannel,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.commands = ChatCommands(
            controls, settings.allowed_chat_ids, clock, settings.allowed_user_ids
        )
        self.application = build_application(settings, self.commands)
        self._task: asyncio.Task[None] | None = None
        self._running = False

    def start(self) -> None:
        """Connect in the background; returns at once."""
        self._task = asyncio.create_task(self._connect(), name="telegram-connect")

    async def _connect(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                await self._start_once()
            except InvalidToken:
                logger.error("Telegram rejected the bot token; alerts stay in the log")  # noqa: TRY400
                return
            except (TelegramError, OSError) as error:
                logger.warning(
                    "Telegram unreachable (%s); retrying in %s", self._redact(error), delay
                )
                await asyncio.sleep(delay.total_seconds())
                delay = min(delay * 2, RETRY_MAX)
                continue
            return

    async def _start_once(self) -> None:
        application = self.application
        await application.initialize()
        await application.bot.set_my_commands(
            [BotCommand(name, text[:256]) for name, text in HELP.items()]
        )
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(
            poll_interval=0.0, timeout=timedelta(seconds=10), drop_pending_updates=False
        )
        self._running = True
        self.channel.bot = application.bot
        logger.info("Telegram connected as @%s", application.bot.username)

    def _redact(self, error: BaseException) -> str:
        """Error text without the bot token (PTB puts it in some messages and URLs)."""
        return str(error).replace(self.settings.token.get_secret_value(), "***")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.channel.bot = None
        application = self.application
        if self._running:
            assert application.updater is not None
            await application.updater.stop()
            await application.stop()
            self._running = False
        await application.shutdown()
        # After a failed start the application never initialized, so its shutdown is a
        # no-op; the bot's HTTP clients may still be open.
        await application.bot.shutdown()
