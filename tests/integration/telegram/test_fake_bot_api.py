"""Real python-telegram-bot against the fake Bot API server (tests/support/fake_bot_api.py).

These pin down what PTB 22 sends and how it reacts to Telegram's answers, so the
daemon's Telegram tests can trust the fake.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes

from tests.support.fake_bot_api import FakeBotApi, polling

OWNER = 4242
Context = ContextTypes.DEFAULT_TYPE


def png(width: int = 3, height: int = 2) -> bytes:
    """A valid, tiny RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture
async def bot(fake_bot_api: FakeBotApi) -> AsyncIterator[Bot]:
    """The ExtBot an ApplicationBuilder makes (no rate limiter, no retries), initialised."""
    application = fake_bot_api.builder().build()
    await application.initialize()
    try:
        yield application.bot
    finally:
        await application.shutdown()


async def ping(update: Update, context: Context) -> None:
    assert update.effective_chat is not None
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="again")]])
    await update.effective_chat.send_message("pong", reply_markup=keyboard)


async def press(update: Update, context: Context) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer(f"got {query.data}")
    await query.edit_message_text("pressed")


# -- start-up and polling -------------------------------------------------------------------


async def test_application_when_started_by_hand_then_calls_getme_deletewebhook_getupdates(
    fake_bot_api: FakeBotApi,
) -> None:
    application = fake_bot_api.builder().build()

    async with polling(application, poll_timeout=1):
        await fake_bot_api.wait_for(lambda: "getUpdates" in fake_bot_api.calls)
        assert application.bot.username == fake_bot_api.bot_username

    assert fake_bot_api.calls[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    first_poll = fake_bot_api.calls_to("getUpdates")[0].params
    assert first_poll == {"timeout": 1, "offset": 0}
    # Stopping sends one last short poll (timeout 0) to confirm what was fetched.
    assert fake_bot_api.calls_to("getUpdates")[-1].params["timeout"] == 0
    assert {"close", "logOut"}.isdisjoint(fake_bot_api.calls)
    assert fake_bot_api.conflicts == 0  # the abandoned long poll is no second instance


async def test_command_handler_when_owner_sends_ping_then_bot_replies_pong(
    fake_bot_api: FakeBotApi,
) -> None:
    application = fake_bot_api.builder().build()
    application.add_handler(CommandHandler("ping", ping))

    async with polling(application):
        fake_bot_api.push_message(OWNER, "/ping")
        reply = await fake_bot_api.wait_for_message(OWNER, "pong")

    assert reply.text == "pong"
    assert reply.message_id == 2  # the owner's /ping was message 1 in this chat
    assert reply.reply_markup == {
        "inline_keyboard": [[{"text": "Again", "callback_data": "again"}]]
    }
    # The update was confirmed: the next poll's offset is past it.
    assert fake_bot_api.calls_to("getUpdates")[-1].params["offset"] == 2


async def test_callback_handler_when_owner_presses_button_then_answered_and_edited(
    fake_bot_api: FakeBotApi,
) -> None:
    application = fake_bot_api.builder().build()
    application.add_handler(CommandHandler("ping", ping))
    application.add_handler(CallbackQueryHandler(press))

    async with polling(application):
        fake_bot_api.push_message(OWNER, "/ping")
        reply = await fake_bot_api.wait_for_message(OWNER, "pong")
        query_id = fake_bot_api.push_callback(OWNER, "again", reply.message_id)
        await fake_bot_api.wait_for(lambda: fake_bot_api.edited_messages)

    [answer] = fake_bot_api.answered_callbacks
    assert (answer.callback_query_id, answer.data, answer.text) == (query_id, "again", "got again")
    [edit] = fake_bot_api.edited_messages
    assert (edit.method, edit.message_id, edit.text) == (
        "editMessageText",
        reply.message_id,
        "pressed",
    )
    # Edited without reply_markup, the keyboard is gone, as in Telegram.
    assert "reply_markup" not in fake_bot_api.message(OWNER, reply.message_id)
    assert fake_bot_api.unanswered_callbacks == []


async def test_updater_when_getupdates_hits_a_429_then_waits_and_still_delivers(
    fake_bot_api: FakeBotApi,
) -> None:
    application = fake_bot_api.builder().build()
    application.add_handler(CommandHandler("ping", ping))
    fake_bot_api.storm("getUpdates", count=1, retry_after=1)

    async with polling(application):
        fake_bot_api.push_message(OWNER, "/ping")
        await fake_bot_api.wait_for_message(OWNER, "pong")

    assert fake_bot_api.calls_to("getUpdates")[0].status == 429


# -- what the bot sends ---------------------------------------------------------------------


async def test_send_photo_when_png_bytes_then_upload_arrives_with_caption(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    picture = png(width=3, height=2)

    message = await bot.send_photo(OWNER, picture, caption="leverage vs band")

    [photo] = fake_bot_api.sent_photos(OWNER)
    assert (photo.caption, photo.size, photo.is_png) == ("leverage vs band", len(picture), True)
    assert (message.photo[-1].width, message.photo[-1].height) == (3, 2)
    downloaded = await (await bot.get_file(message.photo[-1].file_id)).download_as_bytearray()
    assert bytes(downloaded) == picture


async def test_set_my_commands_when_called_then_commands_are_recorded(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    await bot.set_my_commands([("status", "Show positions"), ("pause", "Stop acting")])

    assert fake_bot_api.commands == [("status", "Show positions"), ("pause", "Stop acting")]
    assert [c.command for c in await bot.get_my_commands()] == ["status", "pause"]


async def test_send_message_when_html_is_valid_then_owner_reads_it_without_tags(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    message = await bot.send_message(OWNER, "<b>BTC</b> 3.1x &lt; 4x", parse_mode="HTML")

    assert message.text == "BTC 3.1x < 4x"
    [sent] = fake_bot_api.sent_messages(OWNER)
    assert (sent.text, sent.plain_text, sent.parse_mode) == (
        "<b>BTC</b> 3.1x &lt; 4x",
        "BTC 3.1x < 4x",
        "HTML",
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("leverage < 4x", 'Unsupported start tag "" at byte offset 9'),
        ("<b>BTC</i>", 'Unmatched end tag at byte offset 6, expected "</b>", found "</i>"'),
        ("<b>BTC", 'Can\'t find end tag corresponding to start tag "b"'),
    ],
    ids=["bare-less-than", "crossed-tags", "unclosed-tag"],
)
async def test_send_message_when_html_is_malformed_then_raises_bad_request(
    fake_bot_api: FakeBotApi, bot: Bot, text: str, reason: str
) -> None:
    with pytest.raises(BadRequest, match="parse entities") as raised:
        await bot.send_message(OWNER, text, parse_mode="HTML")

    # PTB strips "Bad Request: " and str.capitalize()s the rest, lowering every other letter.
    assert str(raised.value) == f"Can't parse entities: {reason}".capitalize()
    assert fake_bot_api.sent_messages() == []


async def test_send_message_when_longer_than_4096_then_raises_bad_request(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(OWNER, "x" * 4097)


async def test_edit_message_text_when_nothing_changes_then_raises_not_modified(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    message = await bot.send_message(OWNER, "Expired or already answered.")

    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("Expired or already answered.", OWNER, message.message_id)


# -- Telegram's failures --------------------------------------------------------------------


async def test_send_message_when_telegram_answers_429_then_raises_retry_after(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    fake_bot_api.fail_next("sendMessage", status=429, retry_after=7)

    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(OWNER, "hello")

    assert raised.value.retry_after == timedelta(seconds=7)  # PTB_TIMEDELTA=true
    [call] = fake_bot_api.calls_to("sendMessage")
    assert call.status == 429
    await bot.send_message(OWNER, "hello")  # one failure only
    assert len(fake_bot_api.sent_messages(OWNER)) == 1


async def test_send_message_when_bot_is_blocked_then_raises_forbidden(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    fake_bot_api.fail_next("sendMessage", status=403)

    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(OWNER, "hello")


@pytest.mark.parametrize(
    ("status", "text"), [(500, "Internal Server Error"), (502, "Bad Gateway")], ids=["500", "502"]
)
async def test_send_message_when_telegram_answers_5xx_then_raises_network_error(
    fake_bot_api: FakeBotApi, bot: Bot, status: int, text: str
) -> None:
    fake_bot_api.fail_next("sendMessage", status=status)

    with pytest.raises(NetworkError, match=text):
        await bot.send_message(OWNER, "hello")


@pytest.mark.parametrize("how", ["close", "502"])
async def test_send_message_when_telegram_is_down_then_raises_network_error_until_recovered(
    fake_bot_api: FakeBotApi, bot: Bot, how: str
) -> None:
    fake_bot_api.set_down(True, how=how)  # type: ignore[arg-type]

    with pytest.raises(NetworkError):
        await bot.send_message(OWNER, "lost")

    fake_bot_api.set_down(False)
    await bot.send_message(OWNER, "back")
    assert [m.text for m in fake_bot_api.sent_messages()] == ["back"]


async def test_send_message_when_reply_is_lost_then_message_arrived_anyway(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    fake_bot_api.drop_next("sendMessage", deliver=True)

    with pytest.raises(NetworkError, match="RemoteProtocolError"):
        await bot.send_message(OWNER, "sent once")

    assert [m.text for m in fake_bot_api.sent_messages()] == ["sent once"]
    assert fake_bot_api.calls_to("sendMessage")[0].status is None


async def test_send_message_when_telegram_is_slow_then_raises_timed_out(
    fake_bot_api: FakeBotApi,
) -> None:
    application = fake_bot_api.builder().read_timeout(0.2).build()
    await application.initialize()
    fake_bot_api.set_delay(0.5, "sendMessage")
    try:
        with pytest.raises(TimedOut):
            await application.bot.send_message(OWNER, "slow")
    finally:
        await application.shutdown()


async def test_initialize_when_token_is_wrong_then_raises_invalid_token(
    fake_bot_api: FakeBotApi,
) -> None:
    application = fake_bot_api.builder().token("987654321:AAH-someone-elses-token").build()

    with pytest.raises(InvalidToken):
        await application.initialize()
    # Application.shutdown() is a no-op when initialize() failed; the bot's HTTP
    # clients are open all the same and must be closed by hand.
    await application.bot.shutdown()


async def test_get_updates_when_a_second_instance_polls_then_first_gets_conflict(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    # One bot cannot poll twice at once: its getUpdates pool has a single connection.
    first = asyncio.create_task(bot.get_updates(timeout=1))
    await fake_bot_api.wait_for(lambda: fake_bot_api.calls_to("getUpdates"))
    async with fake_bot_api.builder().build().bot as other_instance:
        assert await other_instance.get_updates(timeout=0) == ()

    with pytest.raises(Conflict, match="terminated by other getUpdates"):
        await first
    assert fake_bot_api.conflicts == 1


# -- the fake itself ------------------------------------------------------------------------


async def test_fake_when_body_is_json_then_parsed_and_errors_are_telegrams_json(
    fake_bot_api: FakeBotApi,
) -> None:
    fake_bot_api.fail_next("sendMessage", status=429, retry_after=1)
    url = f"{fake_bot_api.url}/bot{fake_bot_api.token}/sendMessage"

    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"chat_id": OWNER, "text": "hi"}) as refused:
            assert refused.status == 429
            assert await refused.json() == {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            }
        async with session.post(url, json={"chat_id": OWNER, "text": "123"}) as accepted:
            body = await accepted.json()

    assert body["ok"] is True
    assert body["result"]["text"] == "123"  # text stays a string, never a number
    assert body["result"]["chat"] == {"id": OWNER, "type": "private", "first_name": "Owner"}
    assert fake_bot_api.calls_to("sendMessage")[1].params == {"chat_id": OWNER, "text": "123"}


async def test_push_callback_when_bot_never_sent_that_message_then_raises_lookup_error(
    fake_bot_api: FakeBotApi,
) -> None:
    fake_bot_api.push_message(OWNER, "hello")  # message 1 is the owner's, not the bot's

    with pytest.raises(LookupError, match="no message 1"):
        fake_bot_api.push_callback(OWNER, "yes", message_id=1)


async def test_fake_when_method_is_not_modelled_then_answers_ok_and_records_it(
    fake_bot_api: FakeBotApi, bot: Bot
) -> None:
    await bot.send_chat_action(OWNER, "typing")
    document = await bot.send_document(OWNER, b"journal", filename="journal.csv")
    assert await bot.delete_message(OWNER, document.message_id) is True

    assert fake_bot_api.calls[-3:] == ["sendChatAction", "sendDocument", "deleteMessage"]
    assert fake_bot_api.calls_to("sendDocument")[0].files["document"].data == b"journal"
