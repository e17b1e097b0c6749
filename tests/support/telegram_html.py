"""Telegram's HTML parse mode: what a message shows, and the messages Telegram refuses."""

from __future__ import annotations

import re

from tests.support.bot_api_errors import ApiError, bad_request

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


def utf16_length(text: str) -> int:
    """Length as Telegram counts it, in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def shown_text(text: str, parse_mode: str | None, limit: int, what: str) -> str:
    """What the owner reads, checked the way Telegram checks it before sending."""
    plain = (html_to_plain(text) if (parse_mode or "").upper() == "HTML" else text).strip()
    if not plain and what == "text":
        raise bad_request("message text is empty")
    if utf16_length(plain) > limit:
        raise bad_request(f"message {'is' if what == 'text' else 'caption is'} too long")
    return plain
