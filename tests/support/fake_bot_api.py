"""A fake Telegram Bot API server on 127.0.0.1 that real python-telegram-bot talks to.

PTB calls `base_url + token + "/" + method`, so build it with
`.base_url(f"{api.url}/bot").base_file_url(f"{api.url}/file/bot")` (or `api.builder()`).
The server answers with the objects Telegram would (messages numbered per chat, the bot
as sender, HTML parsed the way Telegram parses it), records what the bot sent, lets a
test play the owner (`push_message`, `push_edited_message`, `push_callback`) and injects
Telegram's own failures: 429 with `retry_after`, 403 blocked (one chat or all), 5xx, a
dropped connection, an outage.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aiohttp import web

from tests.support.bot_api_errors import DESCRIPTIONS, ApiError, bad_request
from tests.support.bot_api_methods import BotApiMethods, LongPoll
from tests.support.bot_api_params import read_params
from tests.support.bot_api_records import (
    JSON,
    AnsweredCallback,
    ApiCall,
    EditedMessage,
    SentMessage,
    SentPhoto,
    UploadedFile,
)
from tests.support.telegram_html import html_to_plain, shown_text, utf16_length

if TYPE_CHECKING:
    from telegram.ext import Application
    from telegram.ext._applicationbuilder import InitApplicationBuilder

# Re-exported: the recorded values, errors and parsers once lived in this module.
__all__ = [
    "DEFAULT_TOKEN",
    "DESCRIPTIONS",
    "JSON",
    "AnsweredCallback",
    "ApiCall",
    "ApiError",
    "EditedMessage",
    "FakeBotApi",
    "SentMessage",
    "SentPhoto",
    "UploadedFile",
    "bad_request",
    "html_to_plain",
    "polling",
    "read_params",
    "shown_text",
]

T = TypeVar("T")

DEFAULT_TOKEN = "123456789:AAH-fake-levbot-test-token"


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int | None  # None: drop the connection without an answer
    description: str
    retry_after: int | None = None
    deliver: bool = False  # do the work before dropping (the reply is what gets lost)


@dataclass
class FakeBotApi(BotApiMethods):
    """A loopback Bot API: start it, point PTB at `url`, play the owner, read what was sent."""

    token: str = DEFAULT_TOKEN
    bot_username: str = "levbot_test_bot"
    bot_first_name: str = "levbot"
    requests: list[ApiCall] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)
    answered_callbacks: list[AnsweredCallback] = field(default_factory=list)
    edited_messages: list[EditedMessage] = field(default_factory=list)
    conflicts: int = 0
    _sent: list[SentMessage | SentPhoto] = field(default_factory=list)
    _messages: dict[tuple[int, int], JSON] = field(default_factory=dict)
    _markup: dict[tuple[int, int], tuple[str, str | None]] = field(default_factory=dict)
    _last_message_id: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    _updates: list[JSON] = field(default_factory=list)
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _callback_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _open_callbacks: dict[str, JSON] = field(default_factory=dict)
    _files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file_id: path, data
    _faults: dict[str, deque[_Fault]] = field(default_factory=lambda: defaultdict(deque))
    _delays: dict[str, float] = field(default_factory=dict)
    _down: Literal["close", "502"] | None = None
    _webhook_url: str = ""
    _poller: LongPoll | None = None
    _closing: bool = False
    _runner: web.AppRunner | None = None
    _url: str | None = None

    # -- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT once started."""
        if self._url is None:
            raise RuntimeError("the fake Bot API is not started")
        return self._url

    @property
    def bot_id(self) -> int:
        return int(self.token.split(":", 1)[0])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        self._closing = True
        if self._poller is not None:  # a long poll returns at once
            self._poller.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def builder(self) -> InitApplicationBuilder:
        """`ApplicationBuilder` with this server's token and URLs; add handlers and `.build()`."""
        from telegram.ext import ApplicationBuilder

        return (
            ApplicationBuilder()
            .token(self.token)
            .base_url(f"{self.url}/bot")
            .base_file_url(f"{self.url}/file/bot")
        )

    # -- the owner's side -------------------------------------------------------------

    def push_message(
        self, chat_id: int, text: str, user_id: int | None = None, *, first_name: str = "Owner"
    ) -> JSON:
        """The owner writes `text` in `chat_id`; returns the update the bot will poll."""
        user = {"id": user_id or chat_id, "is_bot": False, "first_name": first_name}
        message = {**self._new_message(chat_id), "from": user, "text": text}
        command = re.match(r"/\S+", text)
        if command:
            length = utf16_length(command.group())
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        self._messages[chat_id, message["message_id"]] = message
        return self._push_update({"message": message})

    def push_callback(
        self, chat_id: int, data: str, message_id: int, user_id: int | None = None
    ) -> str:
        """The owner presses a button with `data` under the bot's message; returns the query id."""
        message = self._messages.get((chat_id, message_id))
        if message is None or message["from"]["id"] != self.bot_id:
            raise LookupError(f"the bot sent no message {message_id} in chat {chat_id}")
        query_id = str(next(self._callback_ids) + 4_300_000_000_000_000_000)
        user = {"id": user_id or chat_id, "is_bot": False, "first_name": "Owner"}
        query = {
            "id": query_id,
            "from": user,
            "message": message,
            "chat_instance": str(-chat_id * 7919),
            "data": data,
        }
        self._open_callbacks[query_id] = query
        self._push_update({"callback_query": query})
        return query_id

    def push_edited_message(
        self, chat_id: int, message_id: int, text: str, user_id: int | None = None
    ) -> JSON:
        """The owner edits their message `message_id` to `text`: Telegram sends an
        `edited_message` update (same message id, new text, an `edit_date`)."""
        message = self._messages.get((chat_id, message_id))
        if message is None or message["from"]["id"] == self.bot_id:
            raise LookupError(f"the owner sent no message {message_id} in chat {chat_id}")
        user = message["from"] if user_id is None else {**message["from"], "id": user_id}
        edited = {**message, "from": user, "text": text, "edit_date": int(time.time())}
        edited.pop("entities", None)
        command = re.match(r"/\S+", text)
        if command:
            length = utf16_length(command.group())
            edited["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        self._messages[chat_id, message_id] = edited
        return self._push_update({"edited_message": edited})

    def _push_update(self, body: JSON) -> JSON:
        update = {"update_id": next(self._update_ids), **body}
        self._updates.append(update)
        if self._poller is not None:
            self._poller.wake.set()
        return update

    # -- what the bot did -------------------------------------------------------------

    @property
    def calls(self) -> list[str]:
        """Method names in the order they arrived, failed ones included."""
        return [call.method for call in self.requests]

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.requests if call.method.lower() == method.lower()]

    def sent_messages(self, chat_id: int | None = None) -> list[SentMessage]:
        return [
            sent
            for sent in self._sent
            if isinstance(sent, SentMessage) and chat_id in (None, sent.chat_id)
        ]

    def sent_photos(self, chat_id: int | None = None) -> list[SentPhoto]:
        return [
            sent
            for sent in self._sent
            if isinstance(sent, SentPhoto) and chat_id in (None, sent.chat_id)
        ]

    def message(self, chat_id: int, message_id: int) -> JSON:
        """A message as it stands now, edits applied (Telegram's JSON)."""
        return self._messages[chat_id, message_id]

    @property
    def unanswered_callbacks(self) -> list[str]:
        return list(self._open_callbacks)

    # A deadline of our own (not asyncio.timeout) so the failure can list the calls seen.
    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Poll `predicate` until it returns something truthy, and return that."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (value := predicate()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not seen within {timeout}s; calls: {self.calls}")
            await asyncio.sleep(0.01)
        return value

    async def wait_for_message(
        self,
        chat_id: int | None = None,
        contains: str = "",
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> SentMessage:
        """The first message (to `chat_id`) whose plain text contains `contains`."""

        def found() -> SentMessage | None:
            matches = [m for m in self.sent_messages(chat_id) if contains in m.plain_text]
            return matches[0] if matches else None

        message = await self.wait_for(found, timeout)
        assert message is not None
        return message

    # -- faults -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        count: int = 1,
        retry_after: int = 1,
        description: str | None = None,
    ) -> None:
        """Answer the next `count` calls of `method` with Telegram's error for `status`."""
        if status == 429:
            description = description or f"Too Many Requests: retry after {retry_after}"
        fault = _Fault(status, description or DESCRIPTIONS.get(status, "Error"), retry_after)
        self._faults[method.lower()].extend([fault] * count)

    def fail_next_to_chat(
        self, chat_id: int, method: str = "sendMessage", status: int = 403, count: int = 1
    ) -> None:
        """Answer the next `count` calls of `method` addressed to `chat_id` with Telegram's
        error for `status`; calls to other chats go through."""
        fault = _Fault(status, DESCRIPTIONS.get(status, "Error"), 1)
        self._faults[f"{method.lower()}@{chat_id}"].extend([fault] * count)

    def storm(self, method: str, count: int, retry_after: int = 1) -> None:
        """A 429 flood: the next `count` calls of `method` are told to retry later."""
        self.fail_next(method, 429, count, retry_after)

    def drop_next(self, method: str, count: int = 1, *, deliver: bool = False) -> None:
        """Close the connection on the next `count` calls of `method` without answering.

        With `deliver`, the call takes effect first: the message is sent, the reply lost.
        """
        fault = _Fault(None, "connection dropped", deliver=deliver)
        self._faults[method.lower()].extend([fault] * count)

    def set_down(self, down: bool, *, how: Literal["close", "502"] = "close") -> None:
        """Telegram unreachable: every request is dropped (or answered 502) until recovered."""
        self._down = how if down else None

    def set_delay(self, seconds: float, method: str = "*") -> None:
        """Answer `method` (every method with "*") `seconds` late, to provoke timeouts."""
        self._delays[method.lower()] = seconds

    # -- HTTP -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await read_params(request)
        call = ApiCall(method, params, files)
        self.requests.append(call)
        delay = self._delays.get(method.lower(), self._delays.get("*", 0.0))
        if delay:
            await asyncio.sleep(delay)
        if self._down == "close":
            return _drop(request)
        faults = None if self._down else self._faults.get(method.lower())
        by_chat = self._faults.get(f"{method.lower()}@{params.get('chat_id')}")
        if not self._down and by_chat:  # a fault for this chat only (fail_next_to_chat)
            faults = by_chat
        fault = faults.popleft() if faults else None
        if fault and fault.status is None and not fault.deliver:
            return _drop(request)
        try:
            if self._down == "502":
                raise ApiError(502, DESCRIPTIONS[502])
            if request.match_info["token"] != self.token:
                raise ApiError(401, DESCRIPTIONS[401])
            if fault and fault.status is not None:
                retry = {"retry_after": fault.retry_after} if fault.status == 429 else None
                raise ApiError(fault.status, fault.description, retry)
            handler = self._handlers(request).get(method.lower())
            if handler is None and method.lower().startswith("send") and "chat_id" in params:
                handler = self._send_other  # sendDocument & co.: PTB wants a Message back
            result = await handler(params, files) if handler else True
        except ApiError as error:
            call.status = error.status
            return error.response()
        if fault:  # delivered, then the reply is lost
            return _drop(request)
        call.status = 200
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        paths = dict(self._files.values())
        data = paths.get(request.match_info["path"])
        if request.match_info["token"] != self.token or data is None:
            return ApiError(404, DESCRIPTIONS[404]).response()
        return web.Response(body=data, content_type="application/octet-stream")


@asynccontextmanager
async def polling(
    application: Application[Any, Any, Any, Any, Any, Any], poll_timeout: float = 1.0
) -> AsyncIterator[None]:
    """Run `application` by hand the way the daemon does (not `run_polling`), then stop it."""
    await application.initialize()
    try:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(
            poll_interval=0.0, timeout=timedelta(seconds=poll_timeout)
        )
        try:
            yield
        finally:
            await application.updater.stop()
            await application.stop()
    finally:
        await application.shutdown()


def _drop(request: web.Request) -> web.Response:
    """Close the connection with no answer; aiohttp discards the response."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)
