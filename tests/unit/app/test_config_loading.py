"""Loading a config file: ${VAR} expansion, .env files, file errors, secrets, the examples."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.app.config import ConfigError, LevbotConfig, load_config
from bot.entrypoints.bootstrap import build_runtime
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets

Load = Callable[..., LevbotConfig]
Problems = Callable[..., tuple[str, ...]]

REPO = Path(__file__).resolve().parents[3]
BYBIT = """
[[accounts]]
name = "bybit"
exchange = "bybit"
environment = "testnet"
api_key = "${BYBIT_KEY}"
secret = "${BYBIT_SECRET}"
[accounts.target]
leverage = 3
min = 2
max = 4
"""
EXAMPLE_ENV = {
    "TELEGRAM_BOT_TOKEN": "123456:telegram-token-value",
    "TELEGRAM_CHAT_ID": "-1001234",
    "BINANCE_DEMO_API_KEY": "binance-demo-key-value",
    "BINANCE_DEMO_SECRET": "binance-demo-secret-value",
    "BYBIT_TESTNET_API_KEY": "bybit-testnet-key-value",
    "BYBIT_TESTNET_SECRET": "bybit-testnet-secret-value",
    "OKX_DEMO_API_KEY": "okx-demo-key-value",
    "OKX_DEMO_SECRET": "okx-demo-secret-value",
    "OKX_DEMO_PASSWORD": "okx-demo-password-value",
    "BINANCE_API_KEY": "binance-live-key-value",
    "BINANCE_SECRET": "binance-live-secret-value",
    "HYPERLIQUID_WALLET_ADDRESS": "0x" + "ab" * 20,
    "HYPERLIQUID_PRIVATE_KEY": "0x" + "11" * 32,
}


def test_load_config_when_env_references_then_expanded_from_env(load_text: Load) -> None:
    config = load_text(BYBIT, {"BYBIT_KEY": "k-1", "BYBIT_SECRET": "s-1"})

    account = config.accounts[0]
    assert account.credential("api_key") == "k-1"
    assert account.credential("secret") == "s-1"


def test_load_config_when_references_in_arrays_and_mixed_text_then_expanded(
    load_text: Load, paper_account: str
) -> None:
    text = (
        '[database]\nurl = "sqlite:///${DATA_DIR}/levbot-${NAME}.sqlite"\n'
        '[telegram]\ntoken = "${TOKEN}"\nallowed_chat_ids = ["${CHAT}", 7]\n'
        + paper_account.replace("leverage = 4", 'leverage = "${OPEN_LEVERAGE}"')
    )
    env = {"DATA_DIR": "/var/lib", "NAME": "paper", "TOKEN": "1:x", "CHAT": "-42"}

    config = load_text(text, env | {"OPEN_LEVERAGE": "4.5"})

    assert config.database.url == "sqlite:////var/lib/levbot-paper.sqlite"
    assert config.telegram is not None
    assert config.telegram.allowed_chat_ids == (-42, 7)
    assert config.accounts[0].sim is not None
    assert str(config.accounts[0].sim.leverage) == "4.5"


def test_load_config_when_variable_unset_then_error_names_field_and_variable(
    problems_of: Problems,
) -> None:
    assert problems_of(BYBIT, {"BYBIT_SECRET": "s"}) == (
        "accounts[0].api_key: environment variable BYBIT_KEY is not set",
    )


def test_load_config_when_unset_variable_breaks_a_value_then_reported_once(
    problems_of: Problems, paper_account: str
) -> None:
    text = paper_account.replace("leverage = 4", 'leverage = "${OPEN_LEVERAGE}"')

    assert problems_of(text) == (
        "accounts[0].sim.leverage: environment variable OPEN_LEVERAGE is not set",
    )


def test_load_config_when_dotenv_next_to_config_then_used(
    load_text: Load, config_dir: Path
) -> None:
    (config_dir / ".env").write_text("BYBIT_KEY=from-dotenv\nBYBIT_SECRET='quoted secret'\n")

    account = load_text(BYBIT).accounts[0]

    assert account.credential("api_key") == "from-dotenv"
    assert account.credential("secret") == "quoted secret"


def test_load_config_when_dotenv_in_working_directory_then_used(load_text: Load) -> None:
    Path(".env").write_text("BYBIT_KEY=cwd-key\nBYBIT_SECRET=cwd-secret\n")

    account = load_text(BYBIT).accounts[0]

    assert account.credential("api_key") == "cwd-key"


def test_load_config_when_variable_in_env_and_dotenv_files_then_env_wins_then_config_dir(
    load_text: Load, config_dir: Path
) -> None:
    Path(".env").write_text("BYBIT_KEY=cwd-key\nBYBIT_SECRET=cwd-secret\n")
    (config_dir / ".env").write_text("BYBIT_KEY=dir-key\nBYBIT_SECRET=dir-secret\n")

    account = load_text(BYBIT, {"BYBIT_KEY": "env-key"}).accounts[0]

    assert account.credential("api_key") == "env-key"
    assert account.credential("secret") == "dir-secret"


def test_load_config_when_env_not_given_then_process_environment_is_read(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BYBIT_KEY", "process-key")
    monkeypatch.setenv("BYBIT_SECRET", "process-secret")
    path = config_dir / "levbot.toml"
    path.write_text(BYBIT)

    account = load_config(path).accounts[0]

    assert account.credential("api_key") == "process-key"


def test_load_config_when_file_missing_then_error_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    assert caught.value.problems == ("file not found",)
    assert str(path) in str(caught.value)


def test_load_config_when_toml_syntax_is_bad_then_error_gives_line_and_column(
    problems_of: Problems,
) -> None:
    (line,) = problems_of('[log]\nlevel = "INFO"\njson = = true\n')

    assert line.startswith("invalid TOML:")
    assert "line 3, column 8" in line


def test_config_error_when_raised_then_message_lists_every_problem(
    load_text: Load,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(BYBIT.replace('name = "bybit"', 'name = "by bit"'))

    message = str(caught.value)
    assert "levbot.toml: 3 problem(s):" in message
    assert "\n  accounts[0].api_key: environment variable BYBIT_KEY is not set" in message
    assert "\n  accounts[0].name: use 1-32 letters" in message


def test_config_when_printed_then_secrets_are_hidden(load_text: Load, paper_account: str) -> None:
    text = '[telegram]\ntoken = "${TOKEN}"\nallowed_chat_ids = [1]\n' + BYBIT
    env = {"TOKEN": "tg-token-plaintext", "BYBIT_KEY": "key-plaintext", "BYBIT_SECRET": "sec-plain"}

    config = load_text(text, env)

    for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        for secret in env.values():
            assert secret not in shown


def test_levbot_config_when_validated_directly_and_fails_then_error_text_hides_input() -> None:
    raw = {
        "accounts": [
            {
                "name": "x",
                "exchange": "okx",
                "api_key": "raw-key-plaintext",
                "target": {"leverage": 3, "min": 2, "max": 4},
            }
        ]
    }

    with pytest.raises(ValidationError) as caught:
        LevbotConfig.model_validate(raw)

    assert "raw-key-plaintext" not in str(caught.value)
    assert "environment: required for exchange okx" in str(caught.value)


def test_config_when_database_url_has_password_then_hidden_from_repr(
    load_text: Load, paper_account: str
) -> None:
    text = '[database]\nurl = "postgresql://levbot:db-pass@db:5432/levbot"\n' + paper_account

    database = load_text(text).database

    assert "db-pass" not in repr(database)
    assert database.display_url == "postgresql://levbot:***@db:5432/levbot"
    assert database.url.endswith("db-pass@db:5432/levbot")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BYBIT.replace('api_key = "${BYBIT_KEY}"', "api_key = 12345678"),
            "accounts[0].api_key: must be a valid string (got ***)",
        ),
        (
            BYBIT.replace('api_key = "${BYBIT_KEY}"', 'api_key = "  "'),
            "accounts[0].api_key: must not be empty",
        ),
        (
            BYBIT.replace('secret = "${BYBIT_SECRET}"', 'secret = "s"\napi_secret = "plaintext"'),
            "accounts[0].api_secret: unknown key",
        ),
        (
            '[database]\nurl = "postgres//levbot:db-pass@db/levbot"\n' + BYBIT,
            "database.url: must be a SQLAlchemy URL",
        ),
        (
            '[telegram]\ntoken = "${TOKEN}"\nallowed_chat_ids = [1]\n' + BYBIT,
            "telegram.token: must not be empty",
        ),
    ],
)
def test_load_config_when_secret_value_is_bad_then_error_never_shows_it(
    problems_of: Problems, text: str, expected: str
) -> None:
    env = {"BYBIT_KEY": "k", "BYBIT_SECRET": "s", "TOKEN": " "}

    problems = problems_of(text, env)

    assert any(line.startswith(expected) for line in problems), problems
    for secret in ("12345678", "plaintext", "db-pass"):
        assert all(secret not in line for line in problems)


def test_load_config_when_testnet_example_and_env_given_then_loads() -> None:
    config = load_config(REPO / "config" / "testnet.example.toml", env=EXAMPLE_ENV)

    accounts = {account.name: account for account in config.accounts}
    assert [(a.exchange, a.environment) for a in accounts.values()] == [
        ("binanceusdm", "demo"),
        ("bybit", "testnet"),
        ("okx", "demo"),
        ("hyperliquid", "testnet"),
    ]
    hyperliquid = accounts["hyperliquid-testnet"]
    assert (hyperliquid.settle, hyperliquid.collateral_source) == ("USDC", "spot")
    assert hyperliquid.credential("wallet_address") == "0x" + "ab" * 20
    okx = accounts["okx-demo"]
    assert okx.credential("password") == "okx-demo-password-value"
    assert "ETH/USDT:USDT" in okx.to_targets().symbols
    assert config.telegram is not None
    assert config.telegram.allowed_chat_ids == (-1001234,)


def test_load_config_when_live_example_and_env_given_then_loads_in_dry_run() -> None:
    config = load_config(REPO / "config" / "live.example.toml", env=EXAMPLE_ENV)

    (account,) = config.accounts
    assert (account.exchange, account.environment, account.dry_run) == (
        "binanceusdm",
        "live",
        True,
    )
    policy = account.to_policy()
    assert not policy.allow_increase
    assert not policy.release_excess
    assert policy.daily_transfer_cap is not None
    assert policy.max_order_notional is not None


@pytest.mark.parametrize("name", ["testnet.example.toml", "live.example.toml"])
def test_load_config_when_example_without_env_then_every_variable_is_named(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "config" / name, env={})

    assert caught.value.problems
    assert all("environment variable" in line for line in caught.value.problems)


def test_load_config_when_unreachable_alert_after_set_then_the_runtime_uses_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    body = (
        '[[accounts]]\nname = "a"\nexchange = "sim"\nunreachable_alert_after = {n}\n'
        "[accounts.target]\nleverage = 3\nmin = 2\nmax = 4\n[accounts.sim]\nleverage = 3\n"
    )
    path.write_text(body.format(n=5))
    account = load_config(path, env={}).accounts[0]
    exchange = SimulatedExchange(markets=binance_usdm_markets(), clock=lambda: datetime.now(UTC))
    assert build_runtime(account, exchange).unreachable_after == 5

    path.write_text(body.format(n=0))
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.unreachable_alert_after"):
        load_config(path, env={})
