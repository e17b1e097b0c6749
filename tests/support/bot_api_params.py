"""The parameters of a Bot API request, in every encoding PTB sends them."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, web

from tests.support.bot_api_records import JSON, UploadedFile


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
