"""What each fault looks like on the wire."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from aiohttp import web

from bot.exchange.paper_venue import binance_payloads as payloads
from bot.exchange.paper_venue.faults import FaultKind

HTML_ERROR = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def error_reply(kind: FaultKind, rng: random.Random, now_ms: int) -> web.Response:
    """The reply of a fault that refuses (or fails) the request."""
    if kind is FaultKind.SERVER_JSON:
        if rng.random() < 0.5:
            return json_reply(
                payloads.error(-1001, "Internal error; unable to process your request."), 500
            )
        message = "Service Unavailable."
        return json_reply(payloads.error(-1008, message), 503)
    if kind is FaultKind.SERVER_HTML:
        status = rng.choice((502, 503, 504))
        return web.Response(
            status=status, text=HTML_ERROR.format(status=status), content_type="text/html"
        )
    if kind is FaultKind.RATE_LIMIT:
        return json_reply(
            payloads.error(-1003, "Too many requests; current limit is 2400 requests per minute."),
            429,
            {"Retry-After": "1"},
        )
    if kind is FaultKind.BANNED:
        return json_reply(
            payloads.error(-1003, f"Way too many requests; IP banned until {now_ms + 2000}."),
            418,
            {"Retry-After": "2"},
        )
    if kind is FaultKind.TIMESTAMP:
        return json_reply(
            payloads.error(-1021, "Timestamp for this request is outside of the recvWindow."), 400
        )
    if kind is FaultKind.UNKNOWN:
        return json_reply(
            payloads.error(-1000, "An unknown error occured while processing the request."), 400
        )
    raise ValueError(f"{kind} is not an error reply")


def garbled_reply(kind: FaultKind, body: Any, rng: random.Random) -> web.Response:
    """A 200 whose body cannot be trusted."""
    if kind is FaultKind.TRUNCATED:
        text = json.dumps(body)
        cut = rng.randint(1, max(1, len(text) - 1))
        return web.Response(status=200, text=text[:cut], content_type="application/json")
    if kind is FaultKind.EMPTY:
        return json_reply(rng.choice(({}, [])))
    if kind is FaultKind.MISSING:
        return json_reply(without_one_field(body, rng))
    raise ValueError(f"{kind} is not a garbled reply")


def without_one_field(body: Any, rng: random.Random) -> Any:
    """A deep copy of `body` with one key of one of its objects left out."""
    copy = json.loads(json.dumps(body))
    objects: list[dict[str, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if node:
                objects.append(node)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(copy)
    if objects:
        target = rng.choice(objects)
        del target[rng.choice(sorted(target))]
    return copy


async def hang_up(request: web.Request, hold_seconds: float) -> web.StreamResponse:
    """Hold the connection (past the client's timeout), then drop it without a reply."""
    if hold_seconds > 0:
        await asyncio.sleep(hold_seconds)
    if request.transport is not None:
        request.transport.abort()
    # The transport is gone: aiohttp's attempt to write this is a no-op.
    return web.Response(status=200)
