"""Fixtures for the journal tests: a real SQLite file in tmp_path and a settable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store.journal import Journal
from tests.integration.store.builders import FakeClock


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'levbot.sqlite'}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def journal(db_url: str, clock: FakeClock) -> AsyncIterator[Journal]:
    opened = await Journal.open(db_url, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
