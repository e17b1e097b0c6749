"""The engine: URL handling, SQLite pragmas, and start-up migrations on a real file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from bot.store.engine import async_url, build_engine
from bot.store.journal import Journal
from tests.integration.store.builders import T0


def test_async_url_when_plain_sqlite_then_aiosqlite_driver() -> None:
    assert async_url("sqlite:///data/levbot.sqlite").drivername == "sqlite+aiosqlite"
    assert async_url("sqlite:///data/levbot.sqlite").database == "data/levbot.sqlite"


def test_async_url_when_postgresql_without_driver_then_asyncpg() -> None:
    url = async_url("postgresql://bot:secret@db:5432/levbot")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.database, url.password) == ("db", "levbot", "secret")


def test_async_url_when_async_driver_named_then_kept() -> None:
    assert async_url("postgresql+psycopg://db/levbot").drivername == "postgresql+psycopg"
    assert async_url("sqlite+aiosqlite:///x.sqlite").drivername == "sqlite+aiosqlite"


async def test_build_engine_when_directory_missing_then_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "levbot.sqlite"
    engine = build_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert path.is_file()


async def test_open_when_sqlite_file_then_wal_and_pragmas_on(db_url: str) -> None:
    journal = await Journal.open(db_url)
    try:
        async with journal.engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        await journal.close()
    # synchronous 1 = NORMAL
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 30_000,
        "foreign_keys": 1,
    }


async def test_open_when_in_memory_url_then_one_shared_database() -> None:
    journal = await Journal.open("sqlite://")
    try:
        run_id = await journal.start_run(pid=1, version="0.1.0")
        cycle_id = await journal.start_cycle("main", T0)
    finally:
        await journal.close()
    assert (run_id, cycle_id) == (1, 1)


def test_migrate_when_two_threads_migrate_at_once_then_both_reach_head(tmp_path: Path) -> None:
    # Seen in a test run: a PostgreSQL template migrated in a background thread while the
    # main thread migrated a SQLite journal; Alembic keeps the running migration in module
    # globals (`op`), so one migration ran its operations in the other's context.
    import asyncio
    import threading

    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def open_journals(name: str) -> None:
        async def run() -> None:
            for round_ in range(8):
                journal = await Journal.open(f"sqlite:///{tmp_path / f'{name}{round_}.sqlite'}")
                await journal.close()

        start.wait()
        try:
            asyncio.run(run())
        except BaseException as error:  # reported in the test's own thread
            failures.append(error)

    threads = [threading.Thread(target=open_journals, args=(name,), daemon=True) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads), "a migration hung"
    assert failures == []
