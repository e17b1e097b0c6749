"""`python -m bot.store.migrations "message"`: write the next revision by autogenerate.

The comparison runs against a scratch SQLite database migrated to head, so it shows
exactly what `bot/store/tables.py` adds over the existing revisions.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bot.store.engine import alembic_config


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print('usage: python -m bot.store.migrations "what changed"', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'head.sqlite'}"
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as connection:
                command.upgrade(alembic_config(connection), "head")
        finally:
            engine.dispose()
        command.revision(alembic_config(url=url), message=argv[0], autogenerate=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
