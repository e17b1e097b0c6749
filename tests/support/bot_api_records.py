"""What the fake Bot API records: the requests it saw and what the bot sent or did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
