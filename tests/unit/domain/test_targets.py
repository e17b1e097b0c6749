"""Targets and policy: what is accepted, what is refused naming the field and the value."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from bot.domain.targets import Policy, Prefer, Target, TargetError, Targets, validate_target


def test_target_when_min_below_leverage_below_max_then_accepted() -> None:
    target = Target(D(3), D("2.5"), D("3.5"))
    assert (target.leverage, target.min, target.max) == (D(3), D("2.5"), D("3.5"))
    assert target.emergency_margin_ratio == D("0.8")
    assert target.emergency_liquidation_distance is None


@pytest.mark.parametrize(
    ("leverage", "minimum", "maximum", "field_name", "value"),
    [
        ("3", "3", "4", "min", "3"),
        ("3", "3.5", "4", "min", "3.5"),
        ("3", "2", "3", "max", "3"),
        ("3", "2", "2.5", "max", "2.5"),
        ("0", "1", "4", "leverage", "0"),
        ("-3", "1", "4", "leverage", "-3"),
        ("3", "0", "4", "min", "0"),
        ("3", "-1", "4", "min", "-1"),
        ("3", "2", "-4", "max", "-4"),
        ("NaN", "2", "4", "leverage", "NaN"),
        ("3", "2", "Infinity", "max", "Infinity"),
    ],
)
def test_target_when_band_rule_broken_then_error_names_field_and_value(
    leverage: str, minimum: str, maximum: str, field_name: str, value: str
) -> None:
    with pytest.raises(TargetError) as caught:
        Target(D(leverage), D(minimum), D(maximum))
    assert caught.value.field_name == field_name
    assert str(caught.value.value) == value
    assert str(caught.value).startswith(f"{field_name}={value}: ")


def test_target_when_leverage_not_decimal_then_error_names_leverage() -> None:
    with pytest.raises(TargetError) as caught:
        Target(3.0, D(2), D(4))  # type: ignore[arg-type]
    assert caught.value.field_name == "leverage"
    assert "must be a positive number" in str(caught.value)


def test_target_when_min_not_below_leverage_then_message_quotes_the_leverage() -> None:
    with pytest.raises(TargetError, match=r"^min=3: must be below leverage \(3\)$"):
        Target(D(3), D(3), D(4))


@pytest.mark.parametrize("ratio", ["0", "1", "1.2", "-0.1", "NaN"])
def test_target_when_emergency_ratio_outside_open_unit_interval_then_error(ratio: str) -> None:
    with pytest.raises(TargetError) as caught:
        Target(D(3), D(2), D(4), emergency_margin_ratio=D(ratio))
    assert caught.value.field_name == "emergency_margin_ratio"
    assert (
        str(caught.value) == f"emergency_margin_ratio={ratio}: must be between 0 and 1 (exclusive)"
    )


@pytest.mark.parametrize("ratio", ["0.01", "0.5", "0.99"])
def test_target_when_emergency_ratio_inside_open_unit_interval_then_accepted(ratio: str) -> None:
    assert Target(D(3), D(2), D(4), emergency_margin_ratio=D(ratio)).emergency_margin_ratio == D(
        ratio
    )


@pytest.mark.parametrize("distance", ["0", "1", "-0.2", "Infinity"])
def test_target_when_liquidation_distance_outside_open_unit_interval_then_error(
    distance: str,
) -> None:
    with pytest.raises(TargetError) as caught:
        Target(D(3), D(2), D(4), emergency_liquidation_distance=D(distance))
    assert caught.value.field_name == "emergency_liquidation_distance"
    assert caught.value.value == D(distance)


def test_validate_target_when_prefix_given_then_field_name_is_prefixed() -> None:
    # A Target cannot be built broken, so skip __post_init__ to hand one to the validator.
    broken = object.__new__(Target)
    fields = {"leverage": D(3), "min": D(2), "max": D(2), "emergency_margin_ratio": D("0.8")}
    for name, value in {**fields, "emergency_liquidation_distance": None}.items():
        object.__setattr__(broken, name, value)
    with pytest.raises(TargetError) as caught:
        validate_target(broken, prefix="targets.BTC/USDT:USDT.")
    assert caught.value.field_name == "targets.BTC/USDT:USDT.max"
    assert str(caught.value).startswith("targets.BTC/USDT:USDT.max=2: ")


@pytest.mark.parametrize(
    ("leverage", "inside"),
    [("2", True), ("3", True), ("4", True), ("1.99", False), ("4.01", False)],
)
def test_target_contains_when_leverage_then_band_edges_are_inside(
    leverage: str, inside: bool
) -> None:
    assert Target(D(3), D(2), D(4)).contains(D(leverage)) is inside


def test_targets_for_symbol_when_override_exists_then_override_else_account() -> None:
    account = Target(D(3), D(2), D(4))
    btc = Target(D(5), D(4), D(6))
    targets = Targets(account, {"BTC/USDT:USDT": btc})
    assert targets.for_symbol("BTC/USDT:USDT") is btc
    assert targets.for_symbol("ETH/USDT:USDT") is account


def test_policy_when_defaults_then_safe_never_adds_exposure() -> None:
    policy = Policy()
    assert policy.prefer is Prefer.COLLATERAL
    assert policy.release_excess is False
    assert policy.allow_increase is False
    assert policy.max_order_notional is None
    assert policy.daily_transfer_cap is None
    assert policy.source_floor == 0
    assert policy.cooldown > timedelta(0)


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"max_order_notional": D(0)}, "max_order_notional"),
        ({"max_order_notional": D(-100)}, "max_order_notional"),
        ({"daily_transfer_cap": D(-1)}, "daily_transfer_cap"),
        ({"source_floor": D("-0.01")}, "source_floor"),
        ({"cooldown": timedelta(seconds=-1)}, "cooldown"),
        ({"slippage_allowance": D("-0.0001")}, "slippage_allowance"),
        ({"slippage_allowance": D("0.1")}, "slippage_allowance"),
        ({"max_snapshot_age": timedelta(0)}, "max_snapshot_age"),
    ],
)
def test_policy_when_value_breaks_rule_then_error_names_field_and_value(
    changes: dict[str, object], field_name: str
) -> None:
    with pytest.raises(TargetError) as caught:
        Policy(**changes)  # type: ignore[arg-type]
    value = changes[field_name]
    assert caught.value.field_name == field_name
    assert caught.value.value == value
    assert str(caught.value).startswith(f"{field_name}={value}: ")


@pytest.mark.parametrize(
    "field_name", ["max_order_notional", "daily_transfer_cap", "source_floor", "slippage_allowance"]
)
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_policy_when_amount_not_finite_then_error_names_field(field_name: str, value: str) -> None:
    with pytest.raises(TargetError) as caught:
        Policy(**{field_name: D(value)})  # type: ignore[arg-type]
    assert caught.value.field_name == field_name
    assert str(caught.value) == f"{field_name}={value}: must be a finite number"


@pytest.mark.parametrize(
    "changes",
    [
        {"max_order_notional": D("0.01")},
        {"daily_transfer_cap": D(0)},
        {"source_floor": D(0)},
        {"cooldown": timedelta(0)},
        {"slippage_allowance": D(0)},
        {"slippage_allowance": D("0.0999")},
        {"prefer": Prefer.ORDERS, "release_excess": True, "allow_increase": True},
    ],
)
def test_policy_when_values_on_the_allowed_edge_then_accepted(changes: dict[str, object]) -> None:
    Policy(**changes)  # type: ignore[arg-type]


def test_target_error_when_raised_then_is_a_value_error() -> None:
    assert issubclass(TargetError, ValueError)
