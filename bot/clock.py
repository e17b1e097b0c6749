"""The one reading of the wall clock. The domain never calls it: it is handed `now`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)
