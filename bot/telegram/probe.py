"""`levbot check`'s Telegram probe: is the token alive, which bot is it, can it reach
every allowed chat. A dead token must fail the check, not the first alert at 3 a.m."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Bot
from telegram.error import Forbidden, InvalidToken, TelegramError
from telegram.request import HTTPXRequest

from bot.app.config import TelegramConfig

TEST_MESSAGE = "levbot check: test message. Alerts from this bot will arrive in this chat."


@dataclass(frozen=True, slots=True)
class ChatResult:
    """One allowed chat and what sending the test message there gave (None: delivered)."""

    chat_id: int
    error: str | None


@dataclass(frozen=True, slots=True)
class TelegramProbe:
    """The bot the token belongs to, or why it could not be asked; and the test sends."""

    bot_id: int | None = None
    username: str | None = None
    error: str | None = None
    chats: tuple[ChatResult, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None and all(chat.error is None for chat in self.chats)


async def probe(settings: TelegramConfig, *, send_test: bool = False) -> TelegramProbe:
    """Call getMe with the configured token at `api_base_url`; with `send_test`, send a
    short message to every allowed chat. Never raises for a Telegram or network error."""
    api = settings.api_base_url.rstrip("/")
    # Our own request objects, closed whatever happens: PTB's Bot.shutdown closes
    # nothing when getMe failed, and an open socket would outlive the check.
    requests = (HTTPXRequest(), HTTPXRequest())
    bot = Bot(
        settings.token.get_secret_value(),
        base_url=f"{api}/bot",
        base_file_url=f"{api}/file/bot",
        request=requests[0],
        get_updates_request=requests[1],
    )
    try:
        try:
            me = await bot.get_me()
        except InvalidToken:
            # PTB's message quotes the token itself: say it in our own words.
            return TelegramProbe(error="the token was rejected (401 Unauthorized): a dead token")
        except TelegramError as error:
            return TelegramProbe(error=f"{type(error).__name__}: {error.message}")
        chats = [ChatResult(c, await _send(bot, c)) for c in settings.allowed_chat_ids if send_test]
    finally:
        for request in requests:
            await request.shutdown()
    return TelegramProbe(bot_id=me.id, username=me.username, chats=tuple(chats))


async def _send(bot: Bot, chat_id: int) -> str | None:
    try:
        await bot.send_message(chat_id, TEST_MESSAGE)
    except Forbidden as error:
        return f"forbidden ({error.message}): start a chat with the bot, or add it to the group"
    except TelegramError as error:
        return f"{type(error).__name__}: {error.message}"
    return None
