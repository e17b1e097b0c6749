"""Targets (the band) and the owner's policy (how the planner may act)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from bot.domain.models import ZERO


class TargetError(ValueError):
    """A target or policy value breaks a rule. The message names the field and the value."""

    def __init__(self, field_name: str, value: object, rule: str) -> None:
        super().__init__(f"{field_name}={value}: {rule}")
        self.field_name = field_name
        self.value = value
        self.rule = rule


@dataclass(frozen=True, slots=True)
class Target:
    """Leverage target `T` with its band `min < T < max` and the emergency margin ratio."""

    leverage: Decimal
    min: Decimal
    max: Decimal
    emergency_margin_ratio: Decimal = Decimal("0.8")
    # Emergency too when the nearest liquidation is closer than this fraction of the mark.
    emergency_liquidation_distance: Decimal | None = None

    def __post_init__(self) -> None:
        validate_target(self)

    def contains(self, leverage: Decimal) -> bool:
        return self.min <= leverage <= self.max

    def moved_to(
        self, leverage: Decimal, low: Decimal | None = None, high: Decimal | None = None
    ) -> Target:
        """This target at a new `leverage`. An edge not given keeps its proportion to the
        target (band 4-6 around 5 becomes 8-12 around 10), rounded to cents; the
        emergency thresholds stay. Raises `TargetError` for a band that breaks a rule."""
        cent = Decimal("0.01")
        if low is None:
            low = (leverage * self.min / self.leverage).quantize(cent)
        if high is None:
            high = (leverage * self.max / self.leverage).quantize(cent)
        return Target(
            leverage=leverage,
            min=low,
            max=high,
            emergency_margin_ratio=self.emergency_margin_ratio,
            emergency_liquidation_distance=self.emergency_liquidation_distance,
        )


def validate_target(target: Target, prefix: str = "") -> None:
    """Raise `TargetError` naming the first field that breaks a rule."""
    for name in ("leverage", "min", "max"):
        value = getattr(target, name)
        if not isinstance(value, Decimal) or not value.is_finite() or value <= ZERO:
            raise TargetError(f"{prefix}{name}", value, "must be a positive number")
    if not target.min < target.leverage:
        raise TargetError(f"{prefix}min", target.min, f"must be below leverage ({target.leverage})")
    if not target.leverage < target.max:
        raise TargetError(f"{prefix}max", target.max, f"must be above leverage ({target.leverage})")
    ratio = target.emergency_margin_ratio
    if not ratio.is_finite() or not ZERO < ratio < Decimal(1):
        raise TargetError(
            f"{prefix}emergency_margin_ratio", ratio, "must be between 0 and 1 (exclusive)"
        )
    distance = target.emergency_liquidation_distance
    if distance is not None and (not distance.is_finite() or not ZERO < distance < Decimal(1)):
        raise TargetError(
            f"{prefix}emergency_liquidation_distance",
            distance,
            "must be between 0 and 1 (exclusive)",
        )


@dataclass(frozen=True, slots=True)
class Targets:
    """The account band plus per-symbol overrides (isolated positions, or a cross symbol)."""

    account: Target
    symbols: dict[str, Target] = field(default_factory=dict)

    def for_symbol(self, symbol: str) -> Target:
        return self.symbols.get(symbol, self.account)

    def overridden(self, overrides: Mapping[str | None, Target]) -> Targets:
        """These targets with the owner's overrides on top (the key None: the account's
        band; a symbol: that symbol's)."""
        symbols = dict(self.symbols)
        symbols.update({k: v for k, v in overrides.items() if k is not None})
        return replace(self, account=overrides.get(None, self.account), symbols=symbols)


class Prefer(StrEnum):
    """What the planner tries first to close the gap."""

    COLLATERAL = "collateral"
    ORDERS = "orders"


@dataclass(frozen=True, slots=True)
class Policy:
    """How the planner may act. Defaults are the safe ones: never add exposure."""

    prefer: Prefer = Prefer.COLLATERAL
    release_excess: bool = False
    allow_increase: bool = False
    max_order_notional: Decimal | None = None
    cooldown: timedelta = timedelta(minutes=5)
    daily_transfer_cap: Decimal | None = None
    source_floor: Decimal = ZERO
    max_snapshot_age: timedelta = timedelta(minutes=2)
    # Expected market-order slippage as a fraction of notional; sizes orders like a fee.
    slippage_allowance: Decimal = Decimal("0.0005")

    def __post_init__(self) -> None:
        # NaN would raise InvalidOperation in the comparisons below, and an infinite
        # chunk size breaks the planner's rounding: refuse both by name first.
        for name in (
            "max_order_notional",
            "daily_transfer_cap",
            "source_floor",
            "slippage_allowance",
        ):
            value = getattr(self, name)
            if value is not None and not value.is_finite():
                raise TargetError(name, value, "must be a finite number")
        if self.max_order_notional is not None and self.max_order_notional <= ZERO:
            raise TargetError("max_order_notional", self.max_order_notional, "must be positive")
        if self.daily_transfer_cap is not None and self.daily_transfer_cap < ZERO:
            raise TargetError("daily_transfer_cap", self.daily_transfer_cap, "must not be negative")
        if self.source_floor < ZERO:
            raise TargetError("source_floor", self.source_floor, "must not be negative")
        if self.cooldown < timedelta(0):
            raise TargetError("cooldown", self.cooldown, "must not be negative")
        if not ZERO <= self.slippage_allowance < Decimal("0.1"):
            raise TargetError("slippage_allowance", self.slippage_allowance, "must be in [0, 0.1)")
        if self.max_snapshot_age <= timedelta(0):
            raise TargetError("max_snapshot_age", self.max_snapshot_age, "must be positive")
