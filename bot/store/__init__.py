"""The journal: SQLite (or any SQLAlchemy database) behind `bot.store.journal.Journal`.

Only this package knows the table classes; everything else gets frozen records.
"""
