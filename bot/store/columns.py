"""Column types that keep domain values exact: `Decimal` as text, datetimes as UTC.

SQLite has no decimal type (NUMERIC goes through float) and drops tzinfo, so both are
handled here rather than trusted to the driver. The migrations use the plain
`String` / `DateTime(timezone=True)` these types store as.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class DecimalText(TypeDecorator[Decimal]):
    """A `Decimal` stored as its string form, so it comes back digit for digit."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            # A float here would already have lost the exact value.
            raise TypeError(f"expected Decimal, got {type(value).__name__}: {value!r}")
        return str(Decimal(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored in UTC and returned with `tzinfo=UTC`."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.utcoffset() is None:
            # SQLite keeps no offset; everything written here was UTC.
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
