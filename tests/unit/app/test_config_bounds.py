"""Every number in the config has a sane bound, and every problem is one line naming its
field (issue 9 §5: inf/NaN/1e20 crashed at timedelta, 1e12 intervals passed, binary feed
files gave tracebacks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app.config import LevbotConfig

Problems = Callable[..., tuple[str, ...]]
Load = Callable[..., LevbotConfig]


def _set(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("interval_seconds = 2", "interval_seconds = 1e12",
         "accounts[0].interval_seconds: must be at most 86400 (got 1E+12)"),
        ("interval_seconds = 2", "interval_seconds = 1000000000000",
         "accounts[0].interval_seconds: must be at most 86400 (got 1000000000000)"),
        ("interval_seconds = 2", "interval_seconds = 2\nunreachable_alert_after = 100000",
         "accounts[0].unreachable_alert_after: must be at most 1000 (got 100000)"),
        ("equity = 10000", "equity = 1e30",
         "accounts[0].sim.equity: must be at most 1000000000 (got 1E+30)"),
        ("reserve = 5000", "reserve = inf",
         "accounts[0].sim.reserve: must be a finite number (got Infinity)"),
        ("bar_seconds = 2", "bar_seconds = nan",
         "accounts[0].sim.bar_seconds: must be a finite number (got NaN)"),
        ("bar_seconds = 2", "bar_seconds = 0.001",
         "accounts[0].sim.bar_seconds: must be at least 0.01 (got 0.001)"),
        ("leverage = 4", "leverage = 1000",
         "accounts[0].sim.leverage: must be at most 200 (got 1000)"),
        ("max = 3.5", "max = 1e20", "accounts[0].target.max: must be at most 200 (got 1E+20)"),
        ("max = 3.5", "max = inf",
         "accounts[0].target.max: must be a finite number (got Infinity)"),
        ("leverage = 3", "leverage = nan",
         "accounts[0].target.leverage: must be a finite number (got NaN)"),
        ("bar_seconds = 2", "bar_seconds = 2\n[accounts.policy]\ncooldown_seconds = inf",
         "accounts[0].policy.cooldown_seconds: must be a finite number (got Infinity)"),
        ("bar_seconds = 2", "bar_seconds = 2\n[accounts.policy]\ncooldown_seconds = 1e20",
         "accounts[0].policy.cooldown_seconds: must be at most 86400 (got 1E+20)"),
        ("bar_seconds = 2", "bar_seconds = 2\n[accounts.policy]\nmax_snapshot_age_seconds = -inf",
         "accounts[0].policy.max_snapshot_age_seconds: must be a finite number (got -Infinity)"),
        ("bar_seconds = 2", "bar_seconds = 2\n[accounts.policy]\nmax_order_notional = 1e20",
         "accounts[0].policy.max_order_notional: must be at most 1000000000000 (got 1E+20)"),
        ("bar_seconds = 2", "bar_seconds = 2\n[accounts.policy]\ndaily_transfer_cap = 1e13",
         "accounts[0].policy.daily_transfer_cap: must be at most 1000000000000 (got 1E+13)"),
        ("bar_seconds = 2", "bar_seconds = 2\n[accounts.policy]\nsource_floor = nan",
         "accounts[0].policy.source_floor: must be a finite number (got NaN)"),
        ("equity = 10000", "equity = 1e999999999",
         "accounts[0].sim.equity: number out of range (got 1.000e+999999999)"),
        ("interval_seconds = 2", "interval_seconds = 1e99999999",
         "accounts[0].interval_seconds: number out of range (got 1.000e+99999999)"),
    ],
)  # fmt: skip
def test_load_config_when_number_out_of_bounds_then_one_line_naming_the_field(
    problems_of: Problems, paper_account: str, old: str, new: str, expected: str
) -> None:
    assert problems_of(_set(paper_account, old, new)) == (expected,)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("snapshot_retention_days = 1e6\n",
         "snapshot_retention_days: must be at most 3650 (got 1E+6)"),
        ("snapshot_retention_days = 1000000\n",
         "snapshot_retention_days: must be at most 3650 (got 1000000)"),
        ('[telegram]\ntoken = "1:x"\nallowed_chat_ids = [1e30]\n',
         "telegram.allowed_chat_ids[0]: must be at most 9007199254740992 (got 1E+30)"),
    ],
)  # fmt: skip
def test_load_config_when_top_level_number_out_of_bounds_then_one_line(
    problems_of: Problems, paper_account: str, prefix: str, expected: str
) -> None:
    assert problems_of(prefix + paper_account) == (expected,)


@pytest.mark.parametrize("depth", [20, 500, 5000])
def test_load_config_when_nested_deeply_then_one_problem_not_a_recursion_error(
    problems_of: Problems, paper_account: str, depth: int
) -> None:
    text = "x = " + "[" * depth + "]" * depth + "\n" + paper_account

    [problem] = problems_of(text)

    assert "nested more than 16 levels deep" in problem


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00\x01\xff\xfe\x89PNG\r\n\x1a\n", "not a readable text file"),
        (b"", "empty file"),
        (b"timestamp,open,high,low,close,volume\n1,1,1,1,1,1\n", "needs at least 2 candles"),
        (b"timestamp,open,high,low,close,volume\n1,1,1,1,1,1\n2,1e999,1e999,1,1,1\n", "open"),
    ],
    ids=["binary", "empty", "one-bar", "absurd-price"],
)
def test_load_config_when_sim_feed_is_unusable_then_one_line_naming_feed(
    problems_of: Problems, paper_account: str, config_dir: Path, content: bytes, reason: str
) -> None:
    (config_dir / "feed.csv").write_bytes(content)

    [problem] = problems_of(_set(paper_account, 'feed = "builtin"', 'feed = "feed.csv"'))

    assert problem.startswith("accounts[0].sim.feed: ")
    assert reason in problem
    assert "\n" not in problem


def test_load_config_when_value_holds_a_newline_then_problem_stays_one_line(
    problems_of: Problems, paper_account: str
) -> None:
    [problem] = problems_of(_set(paper_account, 'side = "long"', 'side = "lo\\nng"'))

    assert problem.startswith("accounts[0].sim.side: ")
    assert "\n" not in problem
