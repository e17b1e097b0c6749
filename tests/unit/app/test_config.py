"""The config schema: what is accepted, what is refused, and how the refusal reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from bot.app.config import (
    AccountConfig,
    LevbotConfig,
    PolicyConfig,
    TargetConfig,
)
from bot.domain.models import MarginMode, Side
from bot.domain.targets import Policy, Prefer, Target, Targets

Load = Callable[..., LevbotConfig]
Problems = Callable[..., tuple[str, ...]]

OKX = """
[[accounts]]
name = "okx"
exchange = "okx"
environment = "demo"
api_key = "key-okx"
secret = "secret-okx"
password = "pass-okx"
[accounts.target]
leverage = 3
min = 2
max = 4
"""


def _one(problems: tuple[str, ...], start: str) -> str:
    """The single problem line that starts with `start`."""
    found = [line for line in problems if line.startswith(start)]
    assert len(found) == 1, problems
    return found[0]


def test_load_config_when_paper_sim_account_then_loads_with_defaults(
    load_text: Load, paper_account: str
) -> None:
    config = load_text(paper_account)

    account = config.account("paper")
    assert account.is_simulated
    assert account.interval_seconds == 2
    assert account.environment is None
    assert account.credentials == {}
    assert account.dry_run is False
    assert account.settle == "USDT"
    assert account.target.to_target() == Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))
    assert account.sim is not None
    assert account.sim.feed == "builtin"
    assert account.sim.side is Side.LONG
    assert (account.sim.equity, account.sim.reserve) == (Decimal(10000), Decimal(5000))
    assert account.sim.leverage == Decimal(4)
    assert account.sim.margin_mode is MarginMode.CROSS
    assert account.sim.bar_seconds == 2.0
    assert account.sim.loop is False
    assert config.database.url == "sqlite:///data/levbot.sqlite"
    assert config.snapshot_retention_days == 30
    assert (config.log.level, config.log.json_format) == ("INFO", False)
    assert config.telegram is None


def test_load_config_when_decimal_in_file_then_exact_decimal(
    load_text: Load, paper_account: str
) -> None:
    text = paper_account + "[accounts.policy]\nslippage_allowance = 0.1e-2\nsource_floor = 0.1\n"

    policy = load_text(text).accounts[0].policy

    assert policy.source_floor == Decimal("0.1")
    assert policy.slippage_allowance == Decimal("0.001")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: "colour = 1\n" + t, "colour: unknown key"),
        (lambda t: '[database]\npath = "x"\n' + t, "database.path: unknown key"),
        (lambda t: '[log]\nformat = "json"\n' + t, "log.format: unknown key"),
        (
            lambda t: '[telegram]\ntoken = "1:a"\nallowed_chat_ids = [1]\nchat = 1\n' + t,
            "telegram.chat: unknown key",
        ),
        (
            lambda t: t.replace("interval_seconds = 2", 'interval_seconds = 2\nmode = "x"'),
            "accounts[0].mode: unknown key",
        ),
        (
            lambda t: t.replace("max = 3.5", "max = 3.5\nmaximum = 4"),
            "accounts[0].target.maximum: unknown key",
        ),
        (
            lambda t: t.replace("bar_seconds = 2", "bar_seconds = 2\nspeed = 3"),
            "accounts[0].sim.speed: unknown key",
        ),
        (
            lambda t: t + "[accounts.policy]\ncooldown = 5\n",
            "accounts[0].policy.cooldown: unknown key",
        ),
        (
            lambda t: (
                t + '[accounts.symbol_targets."BTC/USDT:USDT"]\n'
                "leverage = 3\nmin = 2\nmax = 4\nlev = 1\n"
            ),
            'accounts[0].symbol_targets["BTC/USDT:USDT"].lev: unknown key',
        ),
    ],
    ids=["top", "database", "log", "telegram", "account", "target", "sim", "policy", "symbol"],
)
def test_load_config_when_unknown_key_then_error_names_it(
    problems_of: Problems, paper_account: str, edit: Callable[[str], str], expected: str
) -> None:
    problems = problems_of(edit(paper_account))

    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_load_config_when_key_misspelt_then_suggests_and_lists_allowed_keys(
    problems_of: Problems, paper_account: str
) -> None:
    text = paper_account + "[accounts.policy]\ncooldown = 5\n"

    line = _one(problems_of(text), "accounts[0].policy.cooldown")

    assert 'did you mean "cooldown_seconds"?' in line
    assert "allowed here: prefer, release_excess, allow_increase," in line


@pytest.mark.parametrize(
    ("band", "expected"),
    [
        ("leverage = 3\nmin = 3.5\nmax = 4", "min: must be below leverage (3) (got 3.5)"),
        ("leverage = 3\nmin = 2\nmax = 2.9", "max: must be above leverage (3) (got 2.9)"),
        ("leverage = -3\nmin = 2\nmax = 4", "leverage: must be a positive number (got -3)"),
        (
            "leverage = 3\nmin = 2\nmax = 4\nemergency_margin_ratio = 1.5",
            "emergency_margin_ratio: must be between 0 and 1 (exclusive) (got 1.5)",
        ),
        (
            "leverage = 3\nmin = 2\nmax = 4\nemergency_liquidation_distance = 0",
            "emergency_liquidation_distance: must be between 0 and 1 (exclusive) (got 0)",
        ),
        ('leverage = "high"\nmin = 2\nmax = 4', 'leverage: must be a valid decimal (got "high")'),
        ("leverage = 3\nmax = 4", "min: required key is missing"),
    ],
)
def test_load_config_when_band_is_bad_then_error_names_field_and_value(
    problems_of: Problems, band: str, expected: str
) -> None:
    text = OKX.replace("leverage = 3\nmin = 2\nmax = 4", band)

    assert problems_of(text) == (f"accounts[0].target.{expected}",)


def test_load_config_when_symbol_band_is_bad_then_path_quotes_the_symbol(
    problems_of: Problems,
) -> None:
    text = OKX + '[accounts.symbol_targets."ETH/USDT:USDT"]\nleverage = 3\nmin = 2\nmax = 3\n'

    assert problems_of(text) == (
        'accounts[0].symbol_targets["ETH/USDT:USDT"].max: must be above leverage (3) (got 3)',
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("cooldown_seconds = -1", "cooldown_seconds: must be at least 0 (got -1)"),
        ("max_order_notional = 0", "max_order_notional: must be positive (got 0)"),
        ("source_floor = -5", "source_floor: must not be negative (got -5)"),
        ("slippage_allowance = 0.5", "slippage_allowance: must be in [0, 0.1) (got 0.5)"),
        ("max_snapshot_age_seconds = 0", "max_snapshot_age_seconds: must be greater than 0 "
         "(got 0)"),
        # Found by the fuzz: a huge negative overflowed timedelta (a traceback).
        ("cooldown_seconds = -86399999913601", "cooldown_seconds: must be at least 0 "
         "(got -86399999913601)"),
        ("max_snapshot_age_seconds = -86399999913601", "max_snapshot_age_seconds: must be "
         "greater than 0 (got -86399999913601)"),
        ('prefer = "both"', "prefer: must be 'collateral' or 'orders' (got \"both\")"),
    ],
)  # fmt: skip
def test_load_config_when_policy_is_bad_then_error_names_field_and_value(
    problems_of: Problems, policy: str, expected: str
) -> None:
    problems = problems_of(OKX + f"[accounts.policy]\n{policy}\n")

    assert problems == (f"accounts[0].policy.{expected}",)


def test_load_config_when_account_names_repeat_then_error_names_the_second(
    problems_of: Problems,
) -> None:
    assert problems_of(OKX + OKX) == ('accounts[1].name: duplicate account name (got "okx")',)


@pytest.mark.parametrize("name", ["okx main", "", "okx/1", "a" * 33])
def test_load_config_when_account_name_is_not_simple_then_error(
    problems_of: Problems, name: str
) -> None:
    line = _one(problems_of(OKX.replace('name = "okx"', f'name = "{name}"')), "accounts[0].name")

    assert "letters, digits, '_' or '-'" in line


def test_load_config_when_exchange_unsupported_then_error_lists_supported(
    problems_of: Problems,
) -> None:
    assert problems_of(OKX.replace('exchange = "okx"', 'exchange = "bitmex"')) == (
        "accounts[0].exchange: unsupported exchange; supported: binanceusdm, bybit, okx, "
        "hyperliquid, sim"
        ' (got "bitmex")',
    )


def test_load_config_when_real_exchange_lacks_environment_and_keys_then_each_is_named(
    problems_of: Problems,
) -> None:
    text = OKX.replace('environment = "demo"\napi_key = "key-okx"\nsecret = "secret-okx"\n', "")
    text = text.replace('password = "pass-okx"\n', "")

    assert problems_of(text) == (
        "accounts[0].environment: required for exchange okx: one of live, demo",
        "accounts[0].api_key: required for exchange okx (use ${ENV_VAR})",
        "accounts[0].secret: required for exchange okx (use ${ENV_VAR})",
        "accounts[0].password: required for exchange okx (use ${ENV_VAR})",
    )


@pytest.mark.parametrize(
    ("exchange", "environment"),
    [("binanceusdm", "testnet"), ("okx", "testnet"), ("bybit", "paper")],
)
def test_load_config_when_environment_not_offered_then_error(
    problems_of: Problems, exchange: str, environment: str
) -> None:
    text = OKX.replace('exchange = "okx"', f'exchange = "{exchange}"').replace(
        'environment = "demo"', f'environment = "{environment}"'
    )

    line = _one(problems_of(text), "accounts[0].environment")

    assert f'(got "{environment}")' in line


@pytest.mark.parametrize(
    ("exchange", "source"), [("binanceusdm", "spot"), ("bybit", "funding"), ("okx", "funding")]
)
def test_load_config_when_collateral_source_absent_then_exchange_default(
    load_text: Load, exchange: str, source: str
) -> None:
    text = OKX.replace('exchange = "okx"', f'exchange = "{exchange}"')
    if exchange != "okx":
        text = text.replace('password = "pass-okx"\n', "")

    assert load_text(text).accounts[0].collateral_source == source


def test_load_config_when_a_credential_the_venue_does_not_use_then_error(
    problems_of: Problems,
) -> None:
    text = OKX.replace('exchange = "okx"', 'exchange = "bybit"')

    line = _one(problems_of(text), "accounts[0].password")

    assert "not used by exchange bybit; it needs api_key, secret" in line
    assert "pass-okx" not in line


def test_load_config_when_okx_takes_collateral_from_spot_then_error(problems_of: Problems) -> None:
    text = OKX.replace('environment = "demo"', 'environment = "demo"\ncollateral_source = "spot"')

    line = _one(problems_of(text), "accounts[0].collateral_source")

    assert "use funding" in line


def test_load_config_when_sim_table_missing_or_misplaced_then_error(
    problems_of: Problems, paper_account: str
) -> None:
    no_sim = paper_account[: paper_account.index("[accounts.sim]")]
    misplaced = OKX + '[accounts.sim]\nfeed = "builtin"\n'

    assert _one(problems_of(no_sim), "accounts[0].sim").endswith("required for exchange sim")
    assert problems_of(misplaced) == ("accounts[0].sim: only for exchange sim",)


def test_load_config_when_sim_omits_leverage_and_margin_mode_then_account_values(
    load_text: Load,
) -> None:
    text = """
[[accounts]]
name = "paper"
exchange = "sim"
margin_mode = "isolated"
[accounts.target]
leverage = 3
min = 2.5
max = 3.5
[accounts.sim]
side = "short"
"""
    sim = load_text(text).accounts[0].sim

    assert sim is not None
    assert (sim.leverage, sim.margin_mode, sim.side) == (
        Decimal(3),
        MarginMode.ISOLATED,
        Side.SHORT,
    )
    assert (sim.feed, sim.symbol, sim.equity, sim.reserve) == (
        "builtin",
        "BTC/USDT:USDT",
        Decimal(10000),
        Decimal(0),
    )


def test_load_config_when_sim_feed_is_relative_then_resolved_against_config_dir(
    load_text: Load, problems_of: Problems, paper_account: str, config_dir: Path
) -> None:
    (config_dir / "feeds").mkdir()
    (config_dir / "feeds" / "btc.csv").write_text(
        "timestamp,open,high,low,close,volume\n1,1,1,1,1,1\n2,1,1,1,1,1\n"
    )
    found = paper_account.replace('feed = "builtin"', 'feed = "feeds/btc.csv"')
    missing = paper_account.replace('feed = "builtin"', 'feed = "feeds/eth.csv"')

    sim = load_text(found).accounts[0].sim
    line = _one(problems_of(missing), "accounts[0].sim.feed")

    assert sim is not None
    assert sim.feed == config_dir / "feeds" / "btc.csv"
    assert f"price file not found: {config_dir / 'feeds' / 'eth.csv'}" in line


def test_load_config_when_sim_symbol_not_listed_then_error_lists_markets(
    problems_of: Problems, paper_account: str
) -> None:
    text = paper_account.replace('symbol = "BTC/USDT:USDT"', 'symbol = "SOL/USDT:USDT"')

    assert problems_of(text) == (
        "accounts[0].sim.symbol: the simulated exchange lists only BTC/USDT:USDT, ETH/USDT:USDT"
        ' (got "SOL/USDT:USDT")',
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://proxy.example.net", "https://proxy.example.net"),
    ],
)
def test_load_config_when_api_base_url_is_scheme_and_host_then_kept_without_slash(
    load_text: Load, url: str, expected: str
) -> None:
    text = OKX.replace('environment = "demo"', f'environment = "demo"\napi_base_url = "{url}"')

    assert load_text(text).accounts[0].api_base_url == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host", "must be an http:// or https:// URL"),
        ("127.0.0.1:8080", "must be an http:// or https:// URL"),
        ("https://host/api/v5", "only the scheme, host and port are used; remove the path"),
    ],
)
def test_load_config_when_api_base_url_is_bad_then_error(
    problems_of: Problems, url: str, message: str
) -> None:
    text = OKX.replace('environment = "demo"', f'environment = "demo"\napi_base_url = "{url}"')

    assert problems_of(text) == (f'accounts[0].api_base_url: {message} (got "{url}")',)


def test_load_config_when_symbols_and_symbol_targets_disagree_then_error(
    problems_of: Problems,
) -> None:
    text = (
        OKX.replace('environment = "demo"', 'environment = "demo"\nsymbols = ["BTC/USDT:USDT"]')
        + '[accounts.symbol_targets."ETH/USDT:USDT"]\nleverage = 3\nmin = 2\nmax = 4\n'
    )

    assert problems_of(text) == (
        'accounts[0].symbol_targets["ETH/USDT:USDT"]: symbol is not in symbols'
        ' (got "ETH/USDT:USDT")',
    )


def test_load_config_when_symbol_is_not_unified_then_error_names_its_index(
    problems_of: Problems,
) -> None:
    text = OKX.replace(
        'environment = "demo"', 'environment = "demo"\nsymbols = ["BTC/USDT:USDT", "BTCUSDT"]'
    )

    assert problems_of(text) == (
        "accounts[0].symbols[1]: not a ccxt unified derivatives symbol like BTC/USDT:USDT"
        ' (got "BTCUSDT")',
    )


def test_load_config_when_telegram_table_given_then_parsed(
    load_text: Load, paper_account: str
) -> None:
    text = (
        "[telegram]\n"
        'token = "123:abc"\n'
        "allowed_chat_ids = [42, -1001]\n"
        'api_base_url = "http://127.0.0.1:8081/"\n'
        'mute = ["info", "action"]\n'
        "daily_summary = 08:30:00\n" + paper_account
    )

    telegram = load_text(text).telegram

    assert telegram is not None
    assert telegram.token.get_secret_value() == "123:abc"
    assert telegram.allowed_chat_ids == (42, -1001)
    assert telegram.api_base_url == "http://127.0.0.1:8081"
    assert telegram.mute == ("info", "action")
    assert telegram.daily_summary == time(8, 30)


@pytest.mark.parametrize(
    ("value", "expected"), [('"07:15"', time(7, 15)), ("false", None), (None, None)]
)
def test_load_config_when_daily_summary_given_as_text_or_off_then_parsed(
    load_text: Load, paper_account: str, value: str | None, expected: time | None
) -> None:
    summary = "" if value is None else f"daily_summary = {value}\n"
    text = f'[telegram]\ntoken = "1:a"\nallowed_chat_ids = [1]\n{summary}' + paper_account

    telegram = load_text(text).telegram

    assert telegram is not None
    assert telegram.daily_summary == expected
    assert telegram.api_base_url == "https://api.telegram.org"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("allowed_chat_ids = []", "allowed_chat_ids: must have at least 1 item(s) (got [])"),
        (
            'allowed_chat_ids = [1]\nmute = ["critical"]',
            'mute: critical alerts cannot be muted (got ["critical"])',
        ),
        (
            'allowed_chat_ids = [1]\nmute = ["debug"]',
            "mute[0]: must be 'info', 'action', 'warning' or 'critical' (got \"debug\")",
        ),
        (
            "allowed_chat_ids = [1]\ndaily_summary = true",
            'daily_summary: use a UTC time of day like "08:00", or false (got true)',
        ),
        (
            'allowed_chat_ids = ["me"]',
            "allowed_chat_ids[0]: must be a valid integer, unable to parse string as an integer"
            ' (got "me")',
        ),
    ],
)
def test_load_config_when_telegram_value_is_bad_then_error(
    problems_of: Problems, paper_account: str, lines: str, expected: str
) -> None:
    text = f'[telegram]\ntoken = "1:a"\n{lines}\n' + paper_account

    assert problems_of(text) == (f"telegram.{expected}",)


def test_load_config_when_log_level_lower_case_then_normalised(
    load_text: Load, paper_account: str
) -> None:
    config = load_text('[log]\nlevel = "debug"\njson = true\n' + paper_account)

    assert (config.log.level, config.log.json_format) == ("DEBUG", True)


def test_load_config_when_several_problems_then_all_are_listed(
    problems_of: Problems, paper_account: str
) -> None:
    text = (
        "snapshot_retention_days = 0\n"
        + paper_account.replace("min = 2.5", "min = 3.5").replace("equity = 10000", "equity = 0")
        + OKX.replace('environment = "demo"', 'environment = "live"\nsettle = "usdt"')
    )

    assert problems_of(text) == (
        "snapshot_retention_days: must be at least 1 (got 0)",
        "accounts[0].target.min: must be below leverage (3) (got 3.5)",
        "accounts[0].sim.equity: must be greater than 0 (got 0)",
        'accounts[1].settle: must be an upper-case currency code like USDT (got "usdt")',
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[log]\nlevel = "INFO"\n', "accounts: required key is missing"),
        ("accounts = []\n", "accounts: must have at least 1 item(s) (got [])"),
        ('[accounts]\nname = "a"\n', "accounts: must be an array of tables: write [[accounts]]"),
    ],
)
def test_load_config_when_no_account_then_error(
    problems_of: Problems, text: str, expected: str
) -> None:
    assert problems_of(text) == (expected,)


def test_load_config_when_every_account_is_bad_then_no_too_short_noise(
    problems_of: Problems,
) -> None:
    problems = problems_of(OKX.replace('exchange = "okx"', 'exchange = "ftx"'))

    assert problems == (
        "accounts[0].exchange: unsupported exchange; supported: binanceusdm, bybit, okx, "
        "hyperliquid, sim"
        ' (got "ftx")',
    )


def test_config_when_assigned_then_frozen(load_text: Load, paper_account: str) -> None:
    account = load_text(paper_account).accounts[0]

    with pytest.raises(ValidationError):
        account.dry_run = True  # type: ignore[misc]


def test_account_to_targets_when_symbol_overrides_then_domain_targets(load_text: Load) -> None:
    text = OKX + (
        '[accounts.symbol_targets."ETH/USDT:USDT"]\n'
        "leverage = 2\nmin = 1.5\nmax = 2.5\nemergency_margin_ratio = 0.7\n"
        "emergency_liquidation_distance = 0.05\n"
    )

    targets = load_text(text).accounts[0].to_targets()

    assert targets == Targets(
        account=Target(Decimal(3), Decimal(2), Decimal(4)),
        symbols={
            "ETH/USDT:USDT": Target(
                Decimal(2), Decimal("1.5"), Decimal("2.5"), Decimal("0.7"), Decimal("0.05")
            )
        },
    )
    assert targets.for_symbol("BTC/USDT:USDT") == targets.account


def test_account_to_policy_when_policy_table_given_then_domain_policy(load_text: Load) -> None:
    text = OKX + (
        "[accounts.policy]\n"
        'prefer = "orders"\nrelease_excess = true\nallow_increase = true\n'
        "max_order_notional = 2500\ncooldown_seconds = 90\ndaily_transfer_cap = 10000\n"
        "source_floor = 50\nmax_snapshot_age_seconds = 30\nslippage_allowance = 0.001\n"
    )

    policy = load_text(text).accounts[0].to_policy()

    assert policy == Policy(
        prefer=Prefer.ORDERS,
        release_excess=True,
        allow_increase=True,
        max_order_notional=Decimal(2500),
        cooldown=timedelta(seconds=90),
        daily_transfer_cap=Decimal(10000),
        source_floor=Decimal(50),
        max_snapshot_age=timedelta(seconds=30),
        slippage_allowance=Decimal("0.001"),
    )


def test_policy_config_when_defaults_then_equal_domain_defaults() -> None:
    assert PolicyConfig().to_policy() == Policy()


def test_target_config_when_defaults_then_equal_domain_defaults() -> None:
    band: dict[str, Any] = {"leverage": Decimal(3), "min": Decimal(2), "max": Decimal(4)}

    assert TargetConfig(**band).to_target() == Target(**band)


def test_account_config_when_built_in_python_then_same_defaults_as_from_a_file() -> None:
    account = AccountConfig(
        name="b",
        exchange="bybit",
        environment="testnet",
        credentials={"api_key": SecretStr("k"), "secret": SecretStr("s")},
        target=TargetConfig(leverage=Decimal(3), min=Decimal(2), max=Decimal(4)),
    )

    assert account.collateral_source == "funding"
    assert account.to_policy() == Policy()
