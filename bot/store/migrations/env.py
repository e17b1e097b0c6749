"""Alembic environment: migrates the connection handed over by `bot.store.engine`.

Run from the command line (no connection given), it connects to `sqlalchemy.url`.
"""

from __future__ import annotations

from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from bot.store.tables import metadata

config = context.config


def render_item(kind: str, item: object, context: AutogenContext) -> str | Literal[False]:
    """Write our column types as the plain types they store as.

    A revision then stays valid when `bot.store.columns` changes, and needs no import
    of it (or of sqlmodel).
    """
    if kind == "type" and isinstance(item, TypeDecorator):
        return f"sa.{item.impl_instance!r}"
    return False


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    # Batch mode, because SQLite alters a table by copying it.
    context.configure(
        connection=connection,
        url=url,
        literal_binds=connection is None,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"))
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection and no sqlalchemy.url to migrate")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
