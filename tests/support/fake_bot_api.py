"""A fake Telegram Bot API server on 127.0.0.1 that real python-telegram-bot talks to.

PTB calls `base_url + token + "/" + method`, so build it with
`.base_url(f"{api.url}/bot").base_file_url(f"{api.url}/file/bot")` (or `api.builder()`).
The server answers with the objects Telegram would (messages numbered per chat, the bot
as sender, HTML parsed the way Telegram parses it), records what the bot sent, lets a
test play the owner (`push_message`, `push_callback`) and injects Telegram's own
failures: 429 with `retry_after`, 403 blocked, 5xx, a dropped connection, an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aiohttp import BodyPartReader, web

if TYPE_CHECKING:
    from telegram.ext import Application
    from telegram.ext._applicationbuilder import InitApplicationBuilder

T = TypeVar("T")
JSON = dict[str, Any]

DEFAULT_TOKEN = "123456789:AAH-fake-levbot-test-token"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Telegram holds a long poll up to `timeout` seconds; tests should not wait that long.
LONG_POLL_CAP = 1.0
MAX_TEXT = 4096
MAX_CAPTION = 1024

DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass(frozen=True, slots=True)
class UploadedFile:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(slots=True)
class ApiCall:
    """One request as the server saw it; `status` is what it answered (None: dropped)."""

    method: str
    params: JSON
    files: dict[str, UploadedFile]
    status: int | None = None


@dataclass(frozen=True, slots=True)
class SentMessage:
    chat_id: int
    message_id: int
    text: str  # as sent, markup included
    plain_text: str  # as the owner reads it
    parse_mode: str | None
    reply_markup: JSON | None


@dataclass(frozen=True, slots=True)
class SentPhoto:
    chat_id: int
    message_id: int
    caption: str | None
    parse_mode: str | None
    data: bytes
    filename: str | None
    reply_markup: JSON | None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_png(self) -> bool:
        return self.data.startswith(PNG_SIGNATURE)


@dataclass(frozen=True, slots=True)
class AnsweredCallback:
    callback_query_id: str
    chat_id: int
    message_id: int
    data: str
    text: str | None
    show_alert: bool


@dataclass(frozen=True, slots=True)
class EditedMessage:
    method: str  # editMessageText or editMessageReplyMarkup
    chat_id: int
    message_id: int
    text: str | None
    plain_text: str | None
    parse_mode: str | None
    reply_markup: JSON | None


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int | None  # None: drop the connection without an answer
    description: str
    retry_after: int | None = None
    deliver: bool = False  # do the work before dropping (the reply is what gets lost)


@dataclass(slots=True)
class _LongPoll:
    request: web.Request
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    superseded: bool = False  # by another poll while this one's client still listens


class ApiError(Exception):
    """Telegram's answer to a request it refuses."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def response(self) -> web.Response:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return web.json_response(body, status=self.status)


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


# -- Telegram's HTML ----------------------------------------------------------------------

HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler"}
    | {"a", "code", "pre", "blockquote", "tg-emoji"}
)
HTML_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
TAG_NAME = re.compile(r"/?[^\s>]*")
TAG_NAME_END = re.compile(r"\s*")


def _entity_text(match: re.Match[str]) -> str:
    name, decimal, hexadecimal = match.groups()
    if name:
        return NAMED_ENTITIES[name]
    return chr(int(decimal) if decimal else int(hexadecimal, 16))


def html_to_plain(text: str) -> str:
    """The text an HTML message shows, or Telegram's "can't parse entities" refusal.

    Checks what Telegram checks: only its tags, properly nested and closed. A bare `&`
    is kept, as Telegram keeps it.
    """
    shown: list[str] = []
    open_tags: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        entity = HTML_ENTITY.match(text, i) if char == "&" else None
        if entity:
            shown.append(_entity_text(entity))
            i = entity.end()
            continue
        if char != "<":
            shown.append(char)
            i += 1
            continue
        where = len(text[:i].encode())
        name_end = TAG_NAME.match(text, i + 1).end()  # type: ignore[union-attr]
        if text.startswith("/", i + 1):
            if not open_tags:
                raise _cant_parse(f"Unexpected end tag at byte offset {where}")
            name = text[i + 2 : name_end]
            end = TAG_NAME_END.match(text, name_end).end()  # type: ignore[union-attr]
            if not text.startswith(">", end):
                raise _cant_parse(f"Unclosed end tag at byte offset {where}")
            if name and name != open_tags[-1]:
                raise _cant_parse(
                    f'Unmatched end tag at byte offset {where}, expected "</{open_tags[-1]}>", '
                    f'found "</{name}>"'
                )
            open_tags.pop()
        else:
            name = text[i + 1 : name_end].lower()
            if name_end == len(text):
                raise _cant_parse(f"Unclosed start tag at byte offset {where}")
            if name not in HTML_TAGS:
                raise _cant_parse(f'Unsupported start tag "{name}" at byte offset {where}')
            end = text.find(">", name_end)
            if end < 0:
                raise _cant_parse(f'Unclosed start tag "{name}" at byte offset {where}')
            if name == "span" and "tg-spoiler" not in text[name_end:end]:
                raise _cant_parse(f'Tag "span" must have class "tg-spoiler" at byte offset {where}')
            open_tags.append(name)
        i = end + 1
    if open_tags:
        raise _cant_parse(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    return "".join(shown)


def _cant_parse(reason: str) -> ApiError:
    return bad_request(f"can't parse entities: {reason}")


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def shown_text(text: str, parse_mode: str | None, limit: int, what: str) -> str:
    """What the owner reads, checked the way Telegram checks it before sending."""
    plain = (html_to_plain(text) if (parse_mode or "").upper() == "HTML" else text).strip()
    if not plain and what == "text":
        raise bad_request("message text is empty")
    if _utf16_length(plain) > limit:
        raise bad_request(f"message {'is' if what == 'text' else 'caption is'} too long")
    return plain


# -- request bodies -----------------------------------------------------------------------


def _decode(value: str) -> Any:
    """PTB sends every non-string parameter JSON-encoded inside the form."""
    try:
        return json.loads(value)
    except ValueError:
        return value


# Parameters that are strings on the wire even when they look like JSON ("123", "true").
STRING_PARAMS = frozenset(
    {"text", "caption", "callback_query_id", "parse_mode", "data", "url", "description"}
)


async def read_params(request: web.Request) -> tuple[JSON, dict[str, UploadedFile]]:
    """Query, JSON, urlencoded or multipart parameters, plus any uploaded files."""
    raw: dict[str, str] = dict(request.query)
    files: dict[str, UploadedFile] = {}
    if request.content_type == "application/json" and request.can_read_body:
        return {**raw, **await request.json()}, files
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart; PTB never sends one
            name = part.name or ""
            if part.filename is not None:
                content = bytes(await part.read())
                files[name] = UploadedFile(
                    name, part.filename, part.headers.get("Content-Type"), content
                )
            else:
                raw[name] = await part.text()
    elif request.can_read_body:
        raw.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    params = {k: v if k in STRING_PARAMS else _decode(v) for k, v in raw.items()}
    return params, files


# -- the server ---------------------------------------------------------------------------

Handler = Callable[[JSON, dict[str, UploadedFile]], Awaitable[Any]]


@dataclass
class FakeBotApi:
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
    _poller: _LongPoll | None = None
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
            length = _utf16_length(command.group())
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

    # -- methods ----------------------------------------------------------------------

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
            poll = self._poller = _LongPoll(request)
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


def _png_size(data: bytes) -> tuple[int, int]:
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 320, 240
