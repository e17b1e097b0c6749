"""`[accounts.backstop]` and `[accounts.stream]`: defaults by account kind, each bound,
and the backstop's danger point against the emergency thresholds (issue 10 §1, §2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.app.config import LevbotConfig, StreamSettings
from bot.domain.stops import BACKSTOP_OFF, BackstopSettings
from bot.entrypoints.bootstrap import build_runtime
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets

Load = Callable[..., LevbotConfig]
Problems = Callable[..., tuple[str, ...]]

LIVE = """
[[accounts]]
name = "main"
exchange = "binanceusdm"
environment = "{environment}"
api_key = "key-binance"
secret = "secret-binance"
{extra}
[accounts.target]
leverage = 3
min = 2
max = 4
"""


def _live(environment: str = "live", extra: str = "") -> str:
    return LIVE.format(environment=environment, extra=extra)


def _with_tables(paper_account: str, tables: str, account_keys: str = "") -> str:
    """The paper account with extra top-level keys and extra sub-tables appended."""
    text = paper_account.replace("interval_seconds = 2", f"interval_seconds = 2\n{account_keys}")
    return text + tables


@pytest.mark.parametrize("environment", ["live", "demo"])
def test_load_config_when_real_account_without_backstop_table_then_backstop_on_with_defaults(
    load_text: Load, environment: str
) -> None:
    account = load_text(_live(environment)).account("main")

    assert account.to_backstop() == BackstopSettings(
        enabled=True,
        margin_ratio=Decimal("0.85"),
        liquidation_buffer=Decimal("0.01"),
        levels=3,
        fraction=None,
        reprice_tolerance=Decimal("0.005"),
    )


@pytest.mark.parametrize(
    ("lines", "buffer"),
    [
        ("", Decimal("0.01")),  # neither given: 1% short of liquidation
        ("margin_ratio = 0.9", None),  # only a margin ratio: it decides
        ("liquidation_buffer = 0.02", Decimal("0.02")),
        ("margin_ratio = 0.9\nliquidation_buffer = 0", None),  # 0 switches the buffer off
    ],
)
def test_load_config_when_danger_point_given_then_buffer_or_margin_ratio_decides(
    load_text: Load, paper_account: str, lines: str, buffer: Decimal | None
) -> None:
    text = _with_tables(paper_account, f"[accounts.backstop]\n{lines}\n")

    assert load_text(text).account("paper").to_backstop().liquidation_buffer == buffer


def test_load_config_when_sim_account_then_backstop_and_stream_on_by_default(
    load_text: Load, paper_account: str
) -> None:
    account = load_text(paper_account).account("paper")

    assert account.to_backstop().enabled is True
    assert account.to_stream() == StreamSettings(
        enabled=True, debounce=timedelta(seconds=1), max_backoff=timedelta(seconds=60)
    )


def test_load_config_when_dry_run_then_backstop_off_by_default(load_text: Load) -> None:
    account = load_text(_live(extra="dry_run = true")).account("main")

    assert account.to_backstop().enabled is False


def test_load_config_when_dry_run_and_backstop_enabled_explicitly_then_on(
    load_text: Load,
) -> None:
    text = _live(extra="dry_run = true") + "[accounts.backstop]\nenabled = true\n"

    account = load_text(text).account("main")

    # The gate holds the placements back and journals them as dry-run.
    assert account.dry_run is True
    assert account.to_backstop().enabled is True


def test_load_config_when_backstop_disabled_then_off(load_text: Load, paper_account: str) -> None:
    account = load_text(paper_account + "[accounts.backstop]\nenabled = false\n").account("paper")

    assert account.to_backstop().enabled is False


def test_load_config_when_every_backstop_and_stream_key_set_then_taken_exactly(
    load_text: Load, paper_account: str
) -> None:
    tables = """
[accounts.backstop]
enabled = true
margin_ratio = 0.9
liquidation_buffer = 0.02
levels = 5
fraction = 0.25
reprice_tolerance = 0.001
verify_seconds = 120
[accounts.stream]
enabled = false
debounce_seconds = 0.25
max_backoff_seconds = 300
"""
    account = load_text(_with_tables(paper_account, tables)).account("paper")

    assert account.to_backstop() == BackstopSettings(
        enabled=True,
        margin_ratio=Decimal("0.9"),
        liquidation_buffer=Decimal("0.02"),
        levels=5,
        fraction=Decimal("0.25"),
        reprice_tolerance=Decimal("0.001"),
        verify_seconds=120,
    )
    assert account.to_stream() == StreamSettings(
        enabled=False, debounce=timedelta(seconds=0.25), max_backoff=timedelta(seconds=300)
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("margin_ratio = 1", "accounts[0].backstop.margin_ratio: must be less than 1 (got 1)"),
        ("margin_ratio = 1.2", "accounts[0].backstop.margin_ratio: must be less than 1 (got 1.2)"),
        ("margin_ratio = 0", "accounts[0].backstop.margin_ratio: must be greater than 0 (got 0)"),
        ("margin_ratio = nan",
         "accounts[0].backstop.margin_ratio: must be a finite number (got NaN)"),
        ('margin_ratio = "high"',
         'accounts[0].backstop.margin_ratio: must be a valid decimal (got "high")'),
        ("liquidation_buffer = -0.01",
         "accounts[0].backstop.liquidation_buffer: must be at least 0 (got -0.01)"),
        ("liquidation_buffer = 0.5",
         "accounts[0].backstop.liquidation_buffer: must be less than 0.5 (got 0.5)"),
        ("liquidation_buffer = inf",
         "accounts[0].backstop.liquidation_buffer: must be a finite number (got Infinity)"),
        ("levels = 0", "accounts[0].backstop.levels: must be at least 1 (got 0)"),
        ("levels = 11", "accounts[0].backstop.levels: must be at most 10 (got 11)"),
        ("levels = 2.5",
         "accounts[0].backstop.levels: must be a valid integer, got a number with a fractional "
         "part (got 2.5)"),
        ("fraction = 0", "accounts[0].backstop.fraction: must be greater than 0 (got 0)"),
        ("fraction = 1.5", "accounts[0].backstop.fraction: must be at most 1 (got 1.5)"),
        ("reprice_tolerance = -0.001",
         "accounts[0].backstop.reprice_tolerance: must be at least 0 (got -0.001)"),
        ("reprice_tolerance = 0.1",
         "accounts[0].backstop.reprice_tolerance: must be less than 0.1 (got 0.1)"),
        ("verify_seconds = 5",
         "accounts[0].backstop.verify_seconds: must be at least 10 (got 5)"),
        ("verify_seconds = 100000",
         "accounts[0].backstop.verify_seconds: must be at most 86400 (got 100000)"),
        ("enabled = 2",
         "accounts[0].backstop.enabled: must be a valid boolean, unable to interpret input "
         "(got 2)"),
    ],
)  # fmt: skip
def test_load_config_when_backstop_value_bad_then_one_line_naming_the_field(
    problems_of: Problems, paper_account: str, line: str, expected: str
) -> None:
    assert problems_of(paper_account + f"[accounts.backstop]\n{line}\n") == (expected,)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("debounce_seconds = 0",
         "accounts[0].stream.debounce_seconds: must be greater than 0 (got 0)"),
        ("debounce_seconds = -1",
         "accounts[0].stream.debounce_seconds: must be greater than 0 (got -1)"),
        ("debounce_seconds = inf",
         "accounts[0].stream.debounce_seconds: must be a finite number (got Infinity)"),
        ("debounce_seconds = 1e6",
         "accounts[0].stream.debounce_seconds: must be at most 3600 (got 1E+6)"),
        ("max_backoff_seconds = 0.5",
         "accounts[0].stream.max_backoff_seconds: must be at least 1 (got 0.5)"),
        ("max_backoff_seconds = 1e20",
         "accounts[0].stream.max_backoff_seconds: must be at most 86400 (got 1E+20)"),
        ("enabled = 2",
         "accounts[0].stream.enabled: must be a valid boolean, unable to interpret input (got 2)"),
    ],
)  # fmt: skip
def test_load_config_when_stream_value_bad_then_one_line_naming_the_field(
    problems_of: Problems, paper_account: str, line: str, expected: str
) -> None:
    assert problems_of(paper_account + f"[accounts.stream]\n{line}\n") == (expected,)


@pytest.mark.parametrize("table", ["backstop", "stream"])
def test_load_config_when_unknown_key_in_protection_table_then_error_lists_allowed(
    problems_of: Problems, paper_account: str, table: str
) -> None:
    (line,) = problems_of(paper_account + f"[accounts.{table}]\nlevel = 3\n")

    assert line.startswith(f"accounts[0].{table}.level: unknown key")
    assert "allowed here: enabled, " in line


def test_load_config_when_backstop_ratio_not_above_emergency_ratio_then_error_names_both(
    problems_of: Problems, paper_account: str
) -> None:
    text = paper_account.replace("max = 3.5", "max = 3.5\nemergency_margin_ratio = 0.85")

    assert problems_of(text) == (
        "accounts[0].backstop.margin_ratio: must be greater than "
        "target.emergency_margin_ratio (0.85) and less than 1 (got 0.85)",
    )


def test_load_config_when_symbol_emergency_ratio_above_backstop_ratio_then_error_names_symbol(
    problems_of: Problems, paper_account: str
) -> None:
    tables = (
        '[accounts.symbol_targets."BTC/USDT:USDT"]\n'
        "leverage = 3\nmin = 2\nmax = 4\nemergency_margin_ratio = 0.9\n"
        "[accounts.backstop]\nmargin_ratio = 0.88\n"
    )

    assert problems_of(paper_account + tables) == (
        "accounts[0].backstop.margin_ratio: must be greater than "
        'symbol_targets["BTC/USDT:USDT"].emergency_margin_ratio (0.9) and less than 1 (got 0.88)',
    )


def test_load_config_when_backstop_off_by_dry_run_and_ratio_left_default_then_not_checked(
    load_text: Load,
) -> None:
    # emergency 0.9 > the default 0.85, but a dry-run account places no stops.
    text = _live(extra="dry_run = true").replace("max = 4", "max = 4\nemergency_margin_ratio = 0.9")

    assert load_text(text).account("main").to_backstop().enabled is False


def test_load_config_when_backstop_off_but_ratio_written_then_still_checked(
    problems_of: Problems, paper_account: str
) -> None:
    text = paper_account + "[accounts.backstop]\nenabled = false\nmargin_ratio = 0.7\n"

    assert problems_of(text) == (
        "accounts[0].backstop.margin_ratio: must be greater than "
        "target.emergency_margin_ratio (0.8) and less than 1 (got 0.7)",
    )


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ("[accounts.backstop]\nlevels = 2\n", BackstopSettings(levels=2)),
        ("[accounts.backstop]\nenabled = false\n", BACKSTOP_OFF),
    ],
)
def test_build_runtime_when_backstop_configured_then_runtime_carries_it(
    load_text: Load, paper_account: str, tables: str, expected: BackstopSettings
) -> None:
    account = load_text(paper_account + tables).account("paper")
    exchange = SimulatedExchange(markets=binance_usdm_markets(), clock=lambda: datetime.now(UTC))

    assert build_runtime(account, exchange).backstop == expected
