"""Migrations run at start-up, are idempotent, and match the tables exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from bot.store.engine import alembic_config
from bot.store.journal import Journal
from bot.store.tables import metadata
from tests.integration.store.builders import T0

TABLES = {
    "daemon_runs",
    "cycles",
    "account_snapshots",
    "position_snapshots",
    "actions",
    "alert_outbox",
    "target_overrides",
    "pause_state",
    "command_audit",
    "alert_deliveries",
    "leases",
    "lease_owners",
}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_migrations_when_listed_then_one_linear_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


async def test_open_when_new_file_then_schema_at_head(db_url: str) -> None:
    journal = await Journal.open(db_url)
    try:
        async with journal.engine.connect() as connection:
            revision = await connection.run_sync(_revision)
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await journal.close()
    assert revision == _head()
    assert tables == TABLES | {"alembic_version"}


async def test_open_when_opened_twice_then_second_open_changes_nothing(db_url: str) -> None:
    first = await Journal.open(db_url)
    try:
        run_id = await first.start_run(pid=42, version="0.1.0", at=T0)
    finally:
        await first.close()
    second = await Journal.open(db_url)
    try:
        async with second.engine.connect() as connection:
            revision = await connection.run_sync(_revision)
            runs = (await connection.execute(text("SELECT id, pid FROM daemon_runs"))).all()
            versions = (await connection.execute(text("SELECT * FROM alembic_version"))).all()
    finally:
        await second.close()
    assert revision == _head()
    assert [tuple(r) for r in runs] == [(run_id, 42)]
    assert len(versions) == 1


async def test_migrations_when_compared_with_tables_then_no_drift(db_url: str) -> None:
    journal = await Journal.open(db_url)
    try:
        async with journal.engine.connect() as connection:
            differences = await connection.run_sync(_compare)
    finally:
        await journal.close()
    assert differences == []


def _compare(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def test_migrations_when_downgraded_and_upgraded_then_round_trip(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'round.sqlite'}", poolclass=NullPool)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
            command.downgrade(alembic_config(connection), "base")
            assert set(inspect(connection).get_table_names()) == {"alembic_version"}
            command.upgrade(alembic_config(connection), "head")
            assert set(inspect(connection).get_table_names()) == TABLES | {"alembic_version"}
    finally:
        engine.dispose()
