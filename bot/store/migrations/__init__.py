"""Alembic migrations of the journal, loaded in code by `bot.store.engine` (no alembic.ini).

New revision after changing `bot/store/tables.py`:
`python -m bot.store.migrations "what changed"` (autogenerates against a scratch
database migrated to head; review the file it writes before committing).
"""
