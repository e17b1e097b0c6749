"""The Bot API methods the fake answers (getMe, getUpdates, sendMessage, ...).

Each answers as Telegram does, on the state `FakeBotApi` declares and initialises; the
server mixes them in and routes requests to them by method name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.support.bot_api_errors import DESCRIPTIONS, ApiError, bad_request
from tests.support.bot_api_records import (
    JSON,
    PNG_SIGNATURE,
    AnsweredCallback,
    EditedMessage,
    SentMessage,
    SentPhoto,
    UploadedFile,
)
from tests.support.telegram_html import shown_text

# Telegram holds a long poll up to `timeout` seconds; tests should not wait that long.
LONG_POLL_CAP = 1.0
MAX_TEXT = 4096
MAX_CAPTION = 1024

Handler = Callable[[JSON, dict[str, UploadedFile]], Awaitable[Any]]


@dataclass(slots=True)
class LongPoll:
    request: web.Request
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    superseded: bool = False  # by another poll while this one's client still listens


class BotApiMethods:
    """Telegram's side of each Bot API method; `FakeBotApi` holds the state."""

    # Declared here for the type checker; FakeBotApi's dataclass fields initialise them.
    bot_username: str
    bot_first_name: str
    commands: list[tuple[str, str]]
    answered_callbacks: list[AnsweredCallback]
    edited_messages: list[EditedMessage]
    conflicts: int
    _sent: list[SentMessage | SentPhoto]
    _messages: dict[tuple[int, int], JSON]
    _markup: dict[tuple[int, int], tuple[str, str | None]]
    _last_message_id: dict[int, int]
    _updates: list[JSON]
    _open_callbacks: dict[str, JSON]
    _files: dict[str, tuple[str, bytes]]
    _webhook_url: str
    _poller: LongPoll | None
    _closing: bool

    if TYPE_CHECKING:

        @property
        def bot_id(self) -> int: ...

    def _handlers(self, request: web.Request) -> dict[str, Handler]:
        return {
            "getme": self._get_me,
            "deletewebhook": self._delete_webhook,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": lambda params, _: self._get_updates(params, request),
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "answercallbackquery": self._answer_callback_query,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "getfile": self._get_file,
        }

    def _bot_user(self) -> JSON:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    async def _get_me(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _delete_webhook(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        self._webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _set_webhook(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        self._webhook_url = str(params.get("url", ""))
        return True

    async def _get_webhook_info(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _get_updates(self, params: JSON, request: web.Request) -> list[JSON]:
        if self._webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if self._poller is not None:  # Telegram ends the older poll
            older = self._poller
            older.superseded = older.request.transport is not None  # unless its client left
            self.conflicts += older.superseded
            older.wake.set()
        offset = int(params.get("offset") or 0)
        if offset > 0:  # confirms every update before it
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        limit = int(params.get("limit") or 100)
        wait = min(float(params.get("timeout") or 0), LONG_POLL_CAP)
        if not self._updates and wait > 0 and not self._closing:
            poll = self._poller = LongPoll(request)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(poll.wake.wait(), wait)
            finally:
                if self._poller is poll:
                    self._poller = None
            if poll.superseded:
                raise ApiError(409, DESCRIPTIONS[409])
        return self._updates[:limit]

    async def _set_my_commands(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        self.commands = [(c["command"], c["description"]) for c in params.get("commands", [])]
        return True

    async def _get_my_commands(self, params: JSON, files: dict[str, UploadedFile]) -> list[JSON]:
        return [{"command": name, "description": text} for name, text in self.commands]

    async def _delete_my_commands(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        self.commands = []
        return True

    def _new_message(self, chat_id: int) -> JSON:
        self._last_message_id[chat_id] += 1
        if chat_id > 0:
            chat: JSON = {"id": chat_id, "type": "private", "first_name": "Owner"}
        else:
            kind = "supergroup" if chat_id < -1_000_000_000_000 else "group"
            chat = {"id": chat_id, "type": kind, "title": "levbot test group"}
        return {
            "message_id": self._last_message_id[chat_id],
            "date": int(time.time()),
            "chat": chat,
        }

    def _bot_message(self, params: JSON) -> JSON:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            raise bad_request("chat not found")
        message = {**self._new_message(chat_id), "from": self._bot_user()}
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return message

    async def _send_message(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        text, mode = str(params.get("text", "")), params.get("parse_mode")
        plain = shown_text(text, mode, MAX_TEXT, "text")
        message = {**self._bot_message(params), "text": plain}
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        self._messages[chat_id, message_id] = message
        self._markup[chat_id, message_id] = (text, mode)
        self._sent.append(
            SentMessage(chat_id, message_id, text, plain, mode, message.get("reply_markup"))
        )
        return message

    async def _send_other(self, params: JSON, files: dict[str, UploadedFile]) -> JSON | bool:
        if "action" in params:  # sendChatAction
            return True
        message = self._bot_message(params)
        self._messages[message["chat"]["id"], message["message_id"]] = message
        return message

    async def _send_photo(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        reference = str(params.get("photo", ""))
        upload = files.get(reference.removeprefix("attach://")) or files.get("photo")
        if upload is None:
            raise bad_request("there is no photo in the request")
        caption, mode = params.get("caption"), params.get("parse_mode")
        plain = shown_text(str(caption), mode, MAX_CAPTION, "caption") if caption else None
        message = self._bot_message(params)
        number = len(self._files) + 1
        file_id = f"AgACAgIAAxkDAAI{number:06d}"
        self._files[file_id] = (f"photos/file_{number}.png", upload.data)
        width, height = _png_size(upload.data)
        message["photo"] = [
            {
                "file_id": file_id,
                "file_unique_id": f"AQAD{number:06d}",
                "file_size": len(upload.data),
                "width": width,
                "height": height,
            }
        ]
        if plain:
            message["caption"] = plain
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        self._messages[chat_id, message_id] = message
        self._sent.append(
            SentPhoto(
                chat_id,
                message_id,
                None if caption is None else str(caption),
                mode,
                upload.data,
                upload.filename,
                message.get("reply_markup"),
            )
        )
        return message

    async def _get_file(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        file_id = str(params.get("file_id"))
        if file_id not in self._files:
            raise bad_request("invalid file_id")
        path, data = self._files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": file_id.replace("AgACAgIAAxkDAAI", "AQAD"),
            "file_size": len(data),
            "file_path": path,
        }

    async def _answer_callback_query(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        query = self._open_callbacks.pop(str(params.get("callback_query_id")), None)
        if query is None:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        message = query["message"]
        self.answered_callbacks.append(
            AnsweredCallback(
                query["id"],
                message["chat"]["id"],
                message["message_id"],
                query["data"],
                params.get("text"),
                bool(params.get("show_alert", False)),
            )
        )
        return True

    def _message_to_edit(self, params: JSON) -> JSON:
        key = (params.get("chat_id"), params.get("message_id"))
        message = self._messages.get(key)  # type: ignore[arg-type]
        if message is None or message["from"]["id"] != self.bot_id:
            raise bad_request("message to edit not found")
        return message

    async def _edit_message_text(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        message = self._message_to_edit(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        text, mode = str(params.get("text", "")), params.get("parse_mode")
        plain = shown_text(text, mode, MAX_TEXT, "text")
        markup = params.get("reply_markup")  # left out, the keyboard goes away
        key = (message["chat"]["id"], message["message_id"])
        if (text, mode) == self._markup.get(key) and markup == message.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        return self._edited(message, "editMessageText", text, plain, mode, markup)

    async def _edit_message_reply_markup(
        self, params: JSON, files: dict[str, UploadedFile]
    ) -> JSON:
        message = self._message_to_edit(params)
        markup = params.get("reply_markup")
        if markup == message.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        return self._edited(message, "editMessageReplyMarkup", None, None, None, markup)

    def _edited(
        self,
        message: JSON,
        method: str,
        text: str | None,
        plain: str | None,
        mode: str | None,
        markup: JSON | None,
    ) -> JSON:
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        changed = {k: v for k, v in message.items() if k != "reply_markup"}
        changed["edit_date"] = int(time.time())
        if markup:
            changed["reply_markup"] = markup
        if text is not None:
            changed["text"] = plain
            self._markup[chat_id, message_id] = (text, mode)
        self._messages[chat_id, message_id] = changed
        self.edited_messages.append(
            EditedMessage(method, chat_id, message_id, text, plain, mode, markup)
        )
        return changed


def _png_size(data: bytes) -> tuple[int, int]:
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 320, 240
