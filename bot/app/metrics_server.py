"""A minimal HTTP/1.1 GET responder on the daemon's own asyncio loop (stdlib only).

It serves a few fixed pages (`/metrics`, `/healthz`) to a scraper or a health check: one
request per connection, no keep-alive, no bodies in, bounded reads. Enough for
Prometheus and `curl`, small enough to read in one sitting, and it adds no web framework
to the app layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

logger = logging.getLogger(__name__)

READ_TIMEOUT = 5.0  # seconds a client gets to send its request head
MAX_HEAD = 8192  # bytes of request line and headers


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    content_type: str
    body: bytes


PageHandler = Callable[[], Awaitable[Page]]


class MetricsServer:
    """Serves `pages` (path -> handler) at host:port until `close`."""

    def __init__(self, host: str, port: int, pages: Mapping[str, PageHandler]) -> None:
        self.host = host
        self._port = port
        self._pages = dict(pages)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when asked for 0)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self._port, limit=MAX_HEAD
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            page = await self._answer(reader)
            head = (
                f"HTTP/1.1 {page.status} {HTTPStatus(page.status).phrase}\r\n"
                f"Content-Type: {page.content_type}\r\n"
                f"Content-Length: {len(page.body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + page.body)
            await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or never finished its request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> Page:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            return _text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large\n")
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _text(HTTPStatus.BAD_REQUEST, "bad request\n")
        method, target = parts[0], parts[1].split("?", 1)[0]
        handler = self._pages.get(target)
        if handler is None:
            return _text(HTTPStatus.NOT_FOUND, "not found\n")
        if method != "GET":
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, "GET only\n")
        try:
            page = await handler()
        except Exception:
            # A scrape must never take the daemon down; the log says what broke.
            logger.exception("metrics: the %s page failed", target)
            return _text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        return page


def _text(status: HTTPStatus, body: str) -> Page:
    return text_page(int(status), body)


def text_page(status: int, body: str) -> Page:
    """A plain-text page."""
    return Page(status, "text/plain; charset=utf-8", body.encode())
