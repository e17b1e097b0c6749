"""Fixtures for the ccxt adapter tests: a loopback venue that real ccxt talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.exchange.loopback import LoopbackVenue


@pytest.fixture
async def venue() -> AsyncIterator[LoopbackVenue]:
    """A started loopback venue with no canned replies (see venues.serve)."""
    server = LoopbackVenue()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
