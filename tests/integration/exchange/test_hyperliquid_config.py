"""A Hyperliquid account in the TOML config: what it needs, what it refuses, and the
ccxt instance its credentials make."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.config import ConfigError, LevbotConfig, load_config
from bot.exchange.ccxt import CcxtSettings, profile_for
from tests.integration.exchange.venues import quicken

WALLET = "0x" + "ab12" * 10
KEY = "0x" + "11" * 32

HYPERLIQUID = """
[[accounts]]
name = "hl"
exchange = "hyperliquid"
environment = "testnet"
wallet_address = "${HL_WALLET}"
private_key = "${HL_KEY}"
[accounts.target]
leverage = 3
min = 2
max = 4
"""
ENV = {"HL_WALLET": WALLET, "HL_KEY": KEY}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stray .env in the real working directory must not leak into these tests.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def load(tmp_path: Path, text: str) -> LevbotConfig:
    path = tmp_path / "levbot.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=ENV)


def problems(tmp_path: Path, text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_load_config_when_hyperliquid_testnet_wallet_and_key_then_loads_with_venue_defaults(
    tmp_path: Path,
) -> None:
    account = load(tmp_path, HYPERLIQUID).account("hl")

    assert (account.exchange, account.environment) == ("hyperliquid", "testnet")
    assert account.credential("wallet_address") == WALLET
    assert account.credential("private_key") == KEY
    # The venue's own settle currency and collateral source.
    assert (account.settle, account.collateral_source) == ("USDC", "spot")
    assert KEY not in repr(account)


async def test_config_when_loaded_then_ccxt_gets_wallet_key_and_the_testnet(
    tmp_path: Path,
) -> None:
    account = load(tmp_path, HYPERLIQUID).account("hl")
    assert account.environment is not None
    settings = CcxtSettings(
        account=account.name,
        exchange_id=account.exchange,
        environment=account.environment,
        credentials={name: value.get_secret_value() for name, value in account.credentials.items()},
        settle=account.settle,
        collateral_source=account.collateral_source,
    )

    exchange = quicken(profile_for("hyperliquid").build(settings))
    await exchange.close()

    assert (exchange.walletAddress, exchange.privateKey) == (WALLET, KEY)
    assert not exchange.apiKey and not exchange.secret
    assert exchange.urls["api"]["private"] == "https://api.hyperliquid-testnet.xyz"
    # ccxt's own check: it has what it needs to sign.
    assert exchange.check_required_credentials(False) is True


def test_load_config_when_api_key_given_instead_then_refused_naming_the_fields(
    tmp_path: Path,
) -> None:
    text = HYPERLIQUID.replace('private_key = "${HL_KEY}"', 'api_key = "key-hl"')

    found = problems(tmp_path, text)

    assert "accounts[0].api_key: not used by exchange hyperliquid; it needs wallet_address, " in (
        "\n".join(found)
    )
    assert "accounts[0].private_key: required for exchange hyperliquid (use ${ENV_VAR})" in found
    assert not any("key-hl" in line for line in found)


def test_load_config_when_environment_is_demo_then_refused_pointing_at_testnet(
    tmp_path: Path,
) -> None:
    text = HYPERLIQUID.replace('environment = "testnet"', 'environment = "demo"')

    (line,) = problems(tmp_path, text)

    assert line.startswith("accounts[0].environment:")
    assert 'use environment = "testnet"' in line


def test_load_config_when_collateral_from_funding_then_refused(tmp_path: Path) -> None:
    text = HYPERLIQUID.replace('environment = "testnet"', 'environment = "testnet"\n'
                               'collateral_source = "funding"')  # fmt: skip

    (line,) = problems(tmp_path, text)

    assert line.startswith("accounts[0].collateral_source:")
    assert "no funding wallet" in line and "use spot" in line
