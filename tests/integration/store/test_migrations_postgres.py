"""PostgreSQL only: every migration goes down and up again on a real server.

(On both backends, test_migrations.py checks the schema at head and that the tables and
the migrations do not drift apart.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from bot.store.engine import alembic_config, build_engine
from tests.integration.store.test_migrations import TABLES
from tests.support.postgres import TestPostgres


@pytest.fixture
def own_database(postgres: TestPostgres) -> Iterator[str]:
    """A database of this test's own: it drops the schema the other tests share."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


def _round_trip(connection: Connection) -> tuple[set[str], set[str]]:
    command.downgrade(alembic_config(connection), "base")
    emptied = set(inspect(connection).get_table_names())
    command.upgrade(alembic_config(connection), "head")
    return emptied, set(inspect(connection).get_table_names())


async def test_migrations_when_downgraded_and_upgraded_on_postgresql_then_round_trip(
    own_database: str,
) -> None:
    engine = build_engine(own_database)
    try:
        async with engine.begin() as connection:
            emptied, restored = await connection.run_sync(_round_trip)
    finally:
        await engine.dispose()
    assert emptied == {"alembic_version"}
    assert restored == TABLES | {"alembic_version"}
