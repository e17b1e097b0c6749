"""Fixtures for the Telegram tests: a fake Bot API server that real PTB talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fake_bot_api import FakeBotApi


@pytest.fixture(autouse=True)
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns when time periods are read as ints (even inside RetryAfter's own
    constructor); with filterwarnings=error that warning would replace the real error."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    """A started fake Bot API on 127.0.0.1; closed after the test."""
    async with FakeBotApi() as api:
        yield api
