"""`max_mark_move`: how far a mark may move between snapshots before it is read again."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from bot.app.config import LevbotConfig
from bot.entrypoints.bootstrap import build_exchange
from tests.unit.app.test_config import OKX


def test_load_config_when_max_mark_move_absent_then_default_three_tenths(
    load_text: Callable[..., LevbotConfig],
) -> None:
    (account,) = load_text(OKX).accounts
    assert account.max_mark_move == Decimal("0.3")


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "nan", "inf"])
def test_load_config_when_max_mark_move_out_of_bounds_then_error_names_it(
    problems_of: Callable[..., tuple[str, ...]], value: str
) -> None:
    text = OKX.replace("[accounts.target]", f"max_mark_move = {value}\n[accounts.target]")
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith("accounts[0].max_mark_move")


async def test_build_exchange_when_max_mark_move_set_then_adapter_settings_carry_it(
    load_text: Callable[..., LevbotConfig],
) -> None:
    config = load_text(OKX.replace("[accounts.target]", "max_mark_move = 0.5\n[accounts.target]"))
    exchange = build_exchange(config.accounts[0], config)
    try:
        assert exchange.settings.max_mark_move == Decimal("0.5")  # type: ignore[attr-defined]
    finally:
        await exchange.close()
