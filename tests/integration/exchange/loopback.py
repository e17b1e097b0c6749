"""A fake venue on 127.0.0.1 that real ccxt talks to over HTTP.

Point ccxt at it by rewriting the scheme and host of its API URLs (CcxtSettings'
`api_base_url`). It answers from canned replies keyed by method and path, records
every request (query, headers, body), and can answer errors (429, 418, 5xx, ...).
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any  # JSON-serialisable, or a str sent as is

    def response(self) -> web.Response:
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return web.Response(status=self.status, text=text, content_type="application/json")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str

    def form(self) -> dict[str, str]:
        """The body as x-www-form-urlencoded fields (Binance's POST bodies)."""
        return dict(parse_qsl(self.body, keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[RecordedRequest], Reply]


@dataclass
class LoopbackVenue:
    """An aiohttp server answering canned replies; `url` is its base URL once started."""

    requests: list[RecordedRequest] = field(default_factory=list)
    unmatched: list[RecordedRequest] = field(default_factory=list)
    _defaults: dict[tuple[str, str], Reply | Responder] = field(default_factory=dict)
    _once: dict[tuple[str, str], deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    _runner: web.AppRunner | None = None
    _url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the loopback venue is not started")
        return self._url

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reply(self, method: str, path: str, body: Any, status: int = 200) -> None:
        """Answer every `method path` request with `body` (until replaced)."""
        self._defaults[(method.upper(), path)] = Reply(status, body)

    def respond(self, method: str, path: str, responder: Responder) -> None:
        """Answer every `method path` request with what `responder` makes of it."""
        self._defaults[(method.upper(), path)] = responder

    def reply_once(self, method: str, path: str, body: Any, status: int = 200) -> None:
        """Answer the next `method path` request with `body`, before the standing reply."""
        self._once[(method.upper(), path)].append(Reply(status, body))

    def calls(self, path: str | None = None, method: str | None = None) -> list[RecordedRequest]:
        return [
            request
            for request in self.requests
            if (path is None or request.path == path)
            and (method is None or request.method == method.upper())
        ]

    def forget(self) -> None:
        """Drop the recorded requests (canned replies stay)."""
        self.requests.clear()
        self.unmatched.clear()

    async def _handle(self, request: web.Request) -> web.Response:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.text(),
        )
        self.requests.append(recorded)
        key = (request.method, request.path)
        if self._once[key]:
            return self._once[key].popleft().response()
        if key in self._defaults:
            answer = self._defaults[key]
            return (answer if isinstance(answer, Reply) else answer(recorded)).response()
        self.unmatched.append(recorded)
        missing = f"no canned reply for {request.method} {request.path}"
        return Reply(404, {"error": missing}).response()
