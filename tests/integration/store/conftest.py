"""Fixtures for the journal tests: a settable clock and a real database on each backend.

Every test that takes `db_url` (or `journal`) runs twice: on a real SQLite file in
tmp_path and on a fresh database of the session's real PostgreSQL server
(`tests/support/postgres.py`). A test whose name says `sqlite` is about SQLite itself
(pragmas, files) and runs on SQLite only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store.journal import Journal
from tests.integration.store.builders import FakeClock
from tests.support.postgres import BACKENDS, database_url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        sqlite_only = "sqlite" in metafunc.function.__name__
        metafunc.parametrize("backend", ["sqlite"] if sqlite_only else BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    return database_url(request, backend, tmp_path / "data" / "levbot.sqlite")


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
