"""The journal's database: an async engine from any SQLAlchemy URL, migrated at start-up.

SQLite (the default) runs in WAL mode so readers (`levbot status`, Telegram) never
block the daemon's writes; `busy_timeout` lets concurrent writers wait instead of
failing. Other URLs pass through, with an async driver picked when none is named.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# How long a write waits for SQLite's one write lock. Many accounts in one process
# write concurrently; on a starved machine 5 s was seen to run out (1,000 accounts at
# once while other jobs ran), failing the cycle. A late journal beats a failed cycle;
# 30 s matches SQLAlchemy's wait for a pooled connection.
BUSY_TIMEOUT_MS = 30_000

# Owner-only modes for the data directory and the journal's files.
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600

# Sync or missing drivers, and the async driver used instead.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
}


def async_url(url: str | URL) -> URL:
    """`url` with an async driver: `sqlite:///x` -> `sqlite+aiosqlite:///x`, and so on."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed if driver is None else parsed.set(drivername=driver)


def database_problem(url: str | URL) -> str | None:
    """Why `url` cannot open a journal here (unknown dialect, driver not installed, a
    driver without asyncio), or None. Checked before use, so `levbot check` says it in
    one line instead of `run` failing with a traceback."""
    try:
        target = async_url(url)
        dialect = target.get_dialect()
    except NoSuchModuleError:
        return "unknown database dialect"
    except (ArgumentError, ValueError):
        # Not the error's text: it quotes the URL, password and all.
        return "not a valid SQLAlchemy URL"
    try:
        dialect.import_dbapi()
    except ImportError as error:
        module = getattr(error, "name", None) or str(error)
        return f"database driver {module} is not installed (driver {target.drivername})"
    if not getattr(dialect, "is_async", False):
        return f"driver {target.drivername} has no asyncio support; use an async driver"
    return None


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (resolved), or None (another database, memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def build_engine(url: str | URL, **pool: Any) -> AsyncEngine:
    """An async engine for `url`; for a SQLite file, its directory is created.

    `pool`: SQLAlchemy's pool options (`pool_size`, `max_overflow`, `pool_timeout`). The
    journal never asks more of the pool than it holds (`bot.store.sessions`), so the
    defaults (5 + 10) serve any number of accounts; more only adds parallel queries."""
    target = async_url(url)
    if target.get_backend_name() != "sqlite":
        return create_async_engine(target, pool_pre_ping=True, **pool)
    options: dict[str, Any] = {}
    if is_sqlite_memory(target):
        # One connection, or every session would see its own empty database.
        options["poolclass"] = StaticPool
    else:
        options.update(pool)
        if target.database is not None and not target.query.get("uri"):
            _private_database_file(Path(target.database))
    engine = create_async_engine(target, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _private_database_file(database: Path) -> None:
    """The journal holds the account's whole history: its directory (when we make it)
    is 0700 and the file 0600, whatever the umask. The file is made before SQLite opens
    it, since SQLite gives its WAL and SHM files the database file's permissions."""
    directory = database.parent
    with contextlib.suppress(FileExistsError):
        directory.mkdir(parents=True, mode=PRIVATE_DIRECTORY)
        directory.chmod(PRIVATE_DIRECTORY)
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    database.chmod(PRIVATE_FILE)
    # A WAL or SHM file left by an older version keeps its mode: tightened too.
    for suffix in ("-wal", "-shm", "-journal"):
        sibling = database.with_name(database.name + suffix)
        if sibling.exists():
            sibling.chmod(PRIVATE_FILE)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini is needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# Alembic keeps the migration it is running in module globals (`op`, `context`): two
# threads migrating at once (a PostgreSQL template migrated in the background beside a
# SQLite journal, in the tests) ran each other's operations, or hung. One at a time per
# process; re-entrant, so a second migration on the same thread waits on nothing new.
_MIGRATING = threading.RLock()


def upgrade_to_head(connection: Connection) -> None:
    """Apply every migration not yet applied (a no-op on an up-to-date database)."""
    with _MIGRATING:
        command.upgrade(alembic_config(connection), "head")


# Any constant: the advisory lock under which a PostgreSQL journal is migrated.
MIGRATION_LOCK = 0x1E7B07


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database schema to the newest revision."""
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Several daemons starting together on a fresh database would otherwise all
            # create the tables at once; the first migrates, the others find it done.
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        await connection.run_sync(upgrade_to_head)
    logger.debug("journal schema at head on %s", engine.url.render_as_string(hide_password=True))
