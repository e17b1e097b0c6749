"""The protection layers past the poll (DESIGN.md §11): `[accounts.backstop]` (stop
orders resting at the venue) and `[accounts.stream]` (marks watched between polls)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Final

from pydantic import Field

from bot.app.config.table import ConfigTable
from bot.domain.stops import BackstopSettings

DEFAULTS: Final = BackstopSettings()
# An hour: a longer debounce is no trigger at all; past a day a backoff is a typo.
MAX_DEBOUNCE_SECONDS: Final = 3600
MAX_BACKOFF_SECONDS: Final = 86_400


class BackstopConfig(ConfigTable):
    """Reduce-only stop-market orders on the mark price, resting at the venue: a ladder
    between the emergency threshold and liquidation that acts while levbot is down."""

    # Absent: on, unless the account is dry_run. `true` with dry_run: planned and
    # journaled as dry-run, never placed.
    enabled: bool | None = None
    # The danger point the first level guards, as a margin ratio: above the target's
    # emergency_margin_ratio (checked by the account), below 1 (liquidation). Used when
    # set without a liquidation_buffer, or with liquidation_buffer = 0.
    margin_ratio: Decimal = Field(default=DEFAULTS.margin_ratio, gt=0, lt=1, allow_inf_nan=False)
    # Or: the mark this fraction of the price short of liquidation, [0, 0.5) (0: off).
    # The default (0.01) whenever neither is set.
    liquidation_buffer: Decimal | None = Field(
        default=None, ge=0, lt=Decimal("0.5"), allow_inf_nan=False
    )
    # Stops in the ladder, 1 to 10: a dead daemon cannot place the next one after a fill.
    levels: int = Field(default=DEFAULTS.levels, ge=1, le=10)
    # Each level cuts this fraction of the position, (0, 1]; absent: back to target.
    fraction: Decimal | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    # Re-price (cancel-replace) only when the wanted trigger moved more than this
    # fraction of the price, [0, 0.1).
    reprice_tolerance: Decimal = Field(
        default=DEFAULTS.reprice_tolerance, ge=0, lt=Decimal("0.1"), allow_inf_nan=False
    )

    # The last level closes what the levels above leave (a dead daemon places no other).
    close_last: bool = DEFAULTS.close_last
    # Seconds between reads of the venue's stop listing while no position moved, [10, 86400].
    verify_seconds: int = Field(default=DEFAULTS.verify_seconds, ge=10, le=86_400)

    def _buffer(self) -> Decimal | None:
        """The liquidation buffer in force: the one given (0: none, the margin ratio
        decides), none when only a margin ratio is given, else the default."""
        if "liquidation_buffer" in self.model_fields_set:
            return self.liquidation_buffer or None
        if "margin_ratio" in self.model_fields_set:
            return None
        return DEFAULTS.liquidation_buffer

    def to_settings(self, *, dry_run: bool) -> BackstopSettings:
        return BackstopSettings(
            enabled=(not dry_run) if self.enabled is None else self.enabled,
            margin_ratio=self.margin_ratio,
            liquidation_buffer=self._buffer(),
            levels=self.levels,
            fraction=self.fraction,
            reprice_tolerance=self.reprice_tolerance,
            verify_seconds=self.verify_seconds,
            close_last=self.close_last,
        )


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How the streaming trigger watches marks between polls."""

    enabled: bool
    # A burst of crossings within this time runs one cycle.
    debounce: timedelta
    # A dropped stream reconnects with a doubling delay, never longer than this.
    max_backoff: timedelta


class StreamConfig(ConfigTable):
    """Marks watched through the venue's websockets; a crossing runs the cycle at once."""

    enabled: bool = True
    # (0, 3600] seconds.
    debounce_seconds: float = Field(default=1.0, gt=0, le=MAX_DEBOUNCE_SECONDS, allow_inf_nan=False)
    # [1, 86400] seconds.
    max_backoff_seconds: float = Field(
        default=60.0, ge=1, le=MAX_BACKOFF_SECONDS, allow_inf_nan=False
    )

    def to_settings(self) -> StreamSettings:
        return StreamSettings(
            enabled=self.enabled,
            debounce=timedelta(seconds=self.debounce_seconds),
            max_backoff=timedelta(seconds=self.max_backoff_seconds),
        )
