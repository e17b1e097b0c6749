"""The column types refuse values they could not keep exactly."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy.dialects import sqlite

from bot.store.columns import DecimalText, UtcDateTime


def test_decimal_text_when_float_then_type_error() -> None:
    with pytest.raises(TypeError, match="float"):
        DecimalText().process_bind_param(0.1, sqlite.dialect())


def test_decimal_text_when_int_then_stored_as_decimal_text() -> None:
    assert DecimalText().process_bind_param(7, sqlite.dialect()) == "7"
    assert DecimalText().process_result_value("7.50", sqlite.dialect()) == Decimal("7.50")


def test_utc_datetime_when_naive_then_value_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        UtcDateTime().process_bind_param(datetime(2024, 1, 1), sqlite.dialect())
