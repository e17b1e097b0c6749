"""The one place that decides which adapters an account gets: simulated or ccxt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.app.config import AccountConfig, LevbotConfig
from bot.app.service import AccountRuntime
from bot.clock import utc_now
from bot.exchange.port import Exchange, RequestObserver
from bot.exchange.sim.paper import BUILTIN_FEED, PaperExchange, PaperSettings
from bot.store.engine import sqlite_file

if TYPE_CHECKING:
    from bot.exchange.ccxt.shared_markets import MarketRegistry


def state_dir(config: LevbotConfig) -> Path:
    """Where local state lives: beside the SQLite file, else ./data."""
    database = sqlite_file(config.database.url)
    return Path("data").resolve() if database is None else database.parent


def shared_markets(config: LevbotConfig) -> MarketRegistry | None:
    """The process's one registry of venue markets, for every real-venue account to share
    (issue 12 §3); None when every account is simulated (ccxt is then never imported)."""
    if all(account.exchange == "sim" for account in config.accounts):
        return None
    from bot.exchange.ccxt.shared_markets import MarketRegistry

    return MarketRegistry()


def build_exchange(
    account: AccountConfig,
    config: LevbotConfig,
    clock: Callable[[], datetime] = utc_now,
    *,
    read_only: bool = False,
    observer: RequestObserver | None = None,
    markets: MarketRegistry | None = None,
) -> Exchange:
    """A PaperExchange for `exchange = "sim"`, the ccxt adapter otherwise.

    `read_only` is for one-off looks (`plan`, `check`) beside a running daemon: the
    paper account's state file is read but never written. `observer` (metrics) hears of
    every ccxt request. `markets` (see `shared_markets`) shares each venue's markets and
    tiers between the accounts built with it; without it the account loads its own.
    """
    if account.exchange == "sim":
        sim = account.sim
        assert sim is not None  # the config requires a [sim] table for exchange = "sim"
        feed = BUILTIN_FEED if sim.feed == "builtin" else Path(sim.feed)
        settings = PaperSettings(
            account=account.name,
            symbol=sim.symbol,
            side=sim.side,
            equity=sim.equity,
            reserve=sim.reserve,
            leverage=sim.leverage,
            margin_mode=sim.margin_mode,
            bar_seconds=sim.bar_seconds,
            fee=sim.fee,
            slippage=sim.slippage,
            loop=sim.loop,
            feed=feed,
            state_file=state_dir(config) / f"paper-{account.name}.json",
        )
        return PaperExchange(settings, clock, read_only=read_only)
    from bot.exchange.ccxt.adapter import CcxtExchange
    from bot.exchange.ccxt.settings import CcxtSettings

    assert account.environment is not None  # required for real exchanges by the config
    return CcxtExchange(
        CcxtSettings(
            account=account.name,
            exchange_id=account.exchange,
            environment=account.environment,
            credentials={
                name: value.get_secret_value() for name, value in account.credentials.items()
            },
            settle=account.settle,
            margin_mode=account.margin_mode,
            collateral_source=account.collateral_source,
            api_base_url=account.api_base_url,
            symbols=tuple(account.symbols),
            max_mark_move=account.max_mark_move,
        ),
        observer=observer,
        markets=markets,
    )


def build_runtime(account: AccountConfig, exchange: Exchange) -> AccountRuntime:
    return AccountRuntime(
        name=account.name,
        exchange=exchange,
        targets=account.to_targets(),
        policy=account.to_policy(),
        interval=timedelta(seconds=account.interval_seconds),
        dry_run=account.dry_run,
        unreachable_after=account.unreachable_alert_after,
        backstop=account.to_backstop(),
    )
