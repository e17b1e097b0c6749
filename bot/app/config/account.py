"""One `[[accounts]]` table: the venue, how to reach it, its band and its policy.

The band and the policy are checked by the domain's own rules (`validate_target`,
`Policy`), so the config and the planner never disagree on what is valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.app.config.problems import CREDENTIALS_KEY, NO_VALUE, Loc, raise_problems
from bot.app.config.protection import BackstopConfig, StreamConfig, StreamSettings
from bot.app.config.table import ConfigTable
from bot.domain.models import MarginMode, Side
from bot.domain.stops import BackstopSettings
from bot.domain.targets import Policy, Prefer, Target, TargetError, Targets
from bot.domain.vocabulary import ALL_ACCOUNTS
from bot.exchange.sim.markets import binance_usdm_markets
from bot.exchange.sim.prices import PriceFileError, load_prices

if TYPE_CHECKING:
    from bot.exchange.ccxt.profiles import ExchangeProfile as ExchangeProfileDeclaration

Environment = Literal["live", "testnet", "demo"]
CollateralSource = Literal["spot", "funding"]

SIMULATED: Final = "sim"
BUILTIN_FEED: Final = "builtin"

# Bounds on numbers (each named in its field's comment and in the README): past them a
# value is a typo, and some (1e20 seconds) overflow timedelta or the scheduler.
DAY_SECONDS: Final = 86_400
MAX_LEVERAGE: Final = Decimal(200)
MAX_MONEY: Final = Decimal("1e12")
MAX_SIM_MONEY: Final = Decimal("1e9")


def venue_profiles() -> Mapping[str, type[ExchangeProfileDeclaration]]:
    """The real venues and what each declares; imported only when a config needs it
    (ccxt takes a second to import, and a simulated account never needs it)."""
    from bot.exchange.ccxt.profiles import PROFILES

    return PROFILES


def supported_exchanges() -> tuple[str, ...]:
    return (*venue_profiles(), SIMULATED)


_SYMBOL = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+:[A-Za-z0-9._-]+")


def _check_symbol(value: str) -> str:
    if not _SYMBOL.fullmatch(value):
        raise ValueError("not a ccxt unified derivatives symbol like BTC/USDT:USDT")
    return value


Symbol = Annotated[str, AfterValidator(_check_symbol)]


def check_http_url(value: str, *, path_allowed: bool) -> str:
    """An http(s) URL without query or fragment, trailing slash removed."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if not path_allowed and parts.path.strip("/"):
        raise ValueError("only the scheme, host and port are used; remove the path")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return value.rstrip("/")


class TargetConfig(ConfigTable):
    """A leverage target `T` and its band `min < T < max` (DESIGN.md §2)."""

    # Bounds: leverage, min and max in (0, 200] (no venue offers more than 200x).
    leverage: Decimal = Field(le=MAX_LEVERAGE)
    min: Decimal = Field(le=MAX_LEVERAGE)
    max: Decimal = Field(le=MAX_LEVERAGE)
    emergency_margin_ratio: Decimal = Decimal("0.8")
    emergency_liquidation_distance: Decimal | None = None

    @model_validator(mode="after")
    def _check_band(self) -> Self:
        try:
            self.to_target()
        except TargetError as error:
            raise_problems([((error.field_name,), error.rule, error.value)])
        return self

    def to_target(self) -> Target:
        return Target(
            leverage=self.leverage,
            min=self.min,
            max=self.max,
            emergency_margin_ratio=self.emergency_margin_ratio,
            emergency_liquidation_distance=self.emergency_liquidation_distance,
        )


class PolicyConfig(ConfigTable):
    """How the planner may act (DESIGN.md §3). Defaults equal the domain `Policy`'s."""

    prefer: Prefer = Prefer.COLLATERAL
    release_excess: bool = False
    allow_increase: bool = False
    # Money bounds: at most 1e12 (a larger figure is a typo, and breaks no sum below it).
    max_order_notional: Decimal | None = Field(default=None, le=MAX_MONEY)
    # 0 to 86400 (one day). Bounded here, not only by the domain's Policy: a huge negative
    # value would overflow timedelta before the domain could refuse it (found by the fuzz).
    cooldown_seconds: float = Field(default=300.0, ge=0, le=DAY_SECONDS, allow_inf_nan=False)
    daily_transfer_cap: Decimal | None = Field(default=None, le=MAX_MONEY)
    source_floor: Decimal = Field(default=Decimal(0), le=MAX_MONEY)
    # (0, 86400], bounded here for the same reason.
    max_snapshot_age_seconds: float = Field(
        default=120.0, gt=0, le=DAY_SECONDS, allow_inf_nan=False
    )
    slippage_allowance: Decimal = Decimal("0.0005")

    @model_validator(mode="after")
    def _check_policy(self) -> Self:
        try:
            self.to_policy()
        except TargetError as error:
            renamed = {
                "cooldown": "cooldown_seconds",
                "max_snapshot_age": "max_snapshot_age_seconds",
            }
            key = renamed.get(error.field_name, error.field_name)
            raise_problems([((key,), error.rule, getattr(self, key))])
        return self

    def to_policy(self) -> Policy:
        return Policy(
            prefer=self.prefer,
            release_excess=self.release_excess,
            allow_increase=self.allow_increase,
            max_order_notional=self.max_order_notional,
            cooldown=timedelta(seconds=self.cooldown_seconds),
            daily_transfer_cap=self.daily_transfer_cap,
            source_floor=self.source_floor,
            max_snapshot_age=timedelta(seconds=self.max_snapshot_age_seconds),
            slippage_allowance=self.slippage_allowance,
        )


class SimConfig(ConfigTable):
    """The simulated exchange: a price replay and the position it opens at the start."""

    # A CSV `timestamp,open,high,low,close,volume` (or freqtrade JSON), or "builtin":
    # the crash slice shipped in the package.
    feed: Literal["builtin"] | Path = BUILTIN_FEED
    symbol: Symbol = "BTC/USDT:USDT"
    side: Side = Side.LONG
    # (0, 1e9] and [0, 1e9]: a paper account, not the world's money supply.
    equity: Decimal = Field(default=Decimal(10000), gt=0, le=MAX_SIM_MONEY)
    reserve: Decimal = Field(default=Decimal(0), ge=0, le=MAX_SIM_MONEY)
    # Opening leverage, (0, 200]; in a file, defaults to the account's target leverage.
    leverage: Decimal = Field(gt=0, le=MAX_LEVERAGE)
    # In a file, defaults to the account's margin_mode.
    margin_mode: MarginMode = MarginMode.CROSS
    # Wall-clock seconds per replayed bar (the speed-up), 0.01 to 86400.
    bar_seconds: float = Field(default=2.0, ge=0.01, le=DAY_SECONDS, allow_inf_nan=False)
    fee: Decimal = Field(default=Decimal("0.0005"), ge=0, lt=Decimal("0.1"))
    slippage: Decimal = Field(default=Decimal("0.0005"), ge=0, lt=Decimal("0.1"))
    # Restart the feed at its end instead of holding the last price.
    loop: bool = False

    @field_validator("feed", mode="before")
    @classmethod
    def _resolve_feed(cls, value: object, info: ValidationInfo) -> object:
        if value == BUILTIN_FEED or isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError(f'must be "{BUILTIN_FEED}" or the path of a price file')
        path = Path(value).expanduser()
        base_dir = (info.context or {}).get("base_dir")
        if not path.is_absolute() and isinstance(base_dir, Path):
            path = base_dir / path
        if not path.is_file():
            raise ValueError(f"price file not found: {path}")
        # Read now: a binary, empty or one-bar file is a config problem, not a traceback
        # when the paper exchange starts.
        try:
            load_prices(path)
        except PriceFileError as error:
            raise ValueError(str(error)) from None
        return path

    @field_validator("symbol")
    @classmethod
    def _check_listed(cls, value: str) -> str:
        listed = sorted(binance_usdm_markets())
        if value not in listed:
            raise ValueError(f"the simulated exchange lists only {', '.join(listed)}")
        return value


class AccountConfig(ConfigTable):
    """One account the daemon watches."""

    name: str
    exchange: str
    # Required for real exchanges; ignored for sim.
    environment: Environment | None = None
    # In a file these are top-level keys (`api_key`, `secret`, `wallet_address`, ...):
    # whichever the venue's profile declares. Ignored for sim.
    credentials: dict[str, SecretStr] = Field(default_factory=dict)
    # In a file, defaults to the venue's own settle currency and collateral source.
    settle: str = "USDT"
    margin_mode: MarginMode = MarginMode.CROSS
    collateral_source: CollateralSource = "spot"
    # Rewrites the scheme and host of every ccxt API URL (a proxy, or a loopback fake).
    api_base_url: str | None = None
    # 1 to 86400 (one day): a longer interval is no protection, and the scheduler's
    # timers overflow on absurd ones.
    interval_seconds: int = Field(default=60, ge=1, le=DAY_SECONDS)
    # Alert "exchange unreachable" after this many failed cycles in a row (1 to 1000).
    unreachable_alert_after: int = Field(default=3, ge=1, le=1000)
    # Symbols to act on; empty means every open position. Every position sharing the
    # collateral counts in the account's leverage and margin ratio either way.
    symbols: tuple[Symbol, ...] = ()
    # A mark that moved more than this fraction since the last snapshot is read again,
    # and believed only when the second read confirms it (0 < x <= 1).
    max_mark_move: Decimal = Field(default=Decimal("0.3"), gt=0, le=1, allow_inf_nan=False)
    target: TargetConfig
    symbol_targets: dict[Symbol, TargetConfig] = Field(default_factory=dict)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    dry_run: bool = False
    backstop: BackstopConfig = Field(default_factory=BackstopConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    sim: SimConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: object) -> object:
        """Defaults that depend on sibling keys."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if any(key not in cls.model_fields for key in data):
            names = {c.name for p in venue_profiles().values() for c in p.credentials}
            given = {key: data.pop(key) for key in list(data) if key in names}
            if given:
                data[CREDENTIALS_KEY] = given
        exchange = data.get("exchange")
        if exchange != SIMULATED and isinstance(exchange, str):
            profile = venue_profiles().get(exchange)
            if profile is not None:
                data.setdefault("collateral_source", profile.default_collateral_source)
                data.setdefault("settle", profile.default_settle)
        sim, target = data.get("sim"), data.get("target")
        if isinstance(sim, dict):
            sim = dict(sim)
            if "margin_mode" in data:
                sim.setdefault("margin_mode", data["margin_mode"])
            if isinstance(target, dict) and "leverage" in target:
                sim.setdefault("leverage", target["leverage"])
            data["sim"] = sim
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value):
            raise ValueError("use 1-32 letters, digits, '_' or '-' (it is typed in Telegram)")
        if value == ALL_ACCOUNTS:
            raise ValueError(f'"{ALL_ACCOUNTS}" means every account; choose another name')
        return value

    @field_validator("exchange", mode="before")
    @classmethod
    def _check_exchange(cls, value: object) -> object:
        supported = supported_exchanges() if value != SIMULATED else (SIMULATED,)
        if value not in supported:
            raise ValueError(f"unsupported exchange; supported: {', '.join(supported)}")
        return value

    @field_validator("settle")
    @classmethod
    def _check_settle(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z0-9]{2,10}", value):
            raise ValueError("must be an upper-case currency code like USDT")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _check_api_base_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, path_allowed=False)

    @model_validator(mode="after")
    def _check_exchange_rules(self) -> Self:
        found: list[tuple[Loc, str, object]] = []
        if self.is_simulated and self.sim is None:
            found.append(
                (("sim",), "an [accounts.sim] table is required for exchange sim", NO_VALUE)
            )
        if not self.is_simulated:
            found.extend(self._real_exchange_problems())
        if len(set(self.symbols)) != len(self.symbols):
            found.append((("symbols",), "lists a symbol twice", list(self.symbols)))
        for symbol in self.symbol_targets:
            if self.symbols and symbol not in self.symbols:
                found.append((("symbol_targets", symbol), "symbol is not in symbols", symbol))
        found.extend(self._backstop_problems())
        raise_problems(found)
        return self

    def _backstop_problems(self) -> list[tuple[Loc, str, object]]:
        """The backstop's danger point lies past every emergency threshold: a stop that
        fired first would cut the position before the planner's own emergency step."""
        backstop = self.backstop
        # A ratio left at its default on an account that never places stops is no typo.
        if not self.to_backstop().enabled and "margin_ratio" not in backstop.model_fields_set:
            return []
        thresholds = [("target", self.target.emergency_margin_ratio)]
        thresholds += [
            (f'symbol_targets["{symbol}"]', target.emergency_margin_ratio)
            for symbol, target in self.symbol_targets.items()
        ]
        where, highest = max(thresholds, key=lambda item: item[1])
        if backstop.margin_ratio > highest:
            return []
        message = f"must be greater than {where}.emergency_margin_ratio ({highest}) and less than 1"
        return [(("backstop", "margin_ratio"), message, backstop.margin_ratio)]

    def _real_exchange_problems(self) -> list[tuple[Loc, str, object]]:
        """The account against its venue profile's declaration."""
        found: list[tuple[Loc, str, object]] = []
        profile = venue_profiles()[self.exchange]
        offered = profile.environments
        if self.environment is None:
            message = f"required for exchange {self.exchange}: one of {', '.join(offered)}"
            found.append((("environment",), message, NO_VALUE))
        else:
            problem = profile.environment_problem(self.environment)
            if problem is not None:
                found.append((("environment",), problem, self.environment))
        needed = [credential.name for credential in profile.credentials]
        for key in needed:
            secret = self.credentials.get(key)
            if secret is None:
                message = f"required for exchange {self.exchange} (use ${{ENV_VAR}})"
                found.append(((key,), message, NO_VALUE))
            elif not secret.get_secret_value().strip():
                found.append(((key,), "must not be empty", NO_VALUE))
        for key in sorted(set(self.credentials) - set(needed)):
            message = f"not used by exchange {self.exchange}; it needs {', '.join(needed)}"
            found.append(((key,), message, NO_VALUE))
        problem = profile.source_problem(self.collateral_source)
        if problem is not None:
            found.append((("collateral_source",), problem, self.collateral_source))
        if self.sim is not None:
            found.append((("sim",), "only for exchange sim", NO_VALUE))
        return found

    def credential(self, name: str) -> str | None:
        """A credential's value by the name the venue's profile declares."""
        secret = self.credentials.get(name)
        return None if secret is None else secret.get_secret_value()

    @property
    def is_simulated(self) -> bool:
        return self.exchange == SIMULATED

    def to_targets(self) -> Targets:
        """The account band plus per-symbol overrides, as the planner takes them."""
        symbols = {symbol: target.to_target() for symbol, target in self.symbol_targets.items()}
        return Targets(account=self.target.to_target(), symbols=symbols)

    def to_policy(self) -> Policy:
        return self.policy.to_policy()

    def to_backstop(self) -> BackstopSettings:
        """The backstop ladder's settings; off by default on a dry-run account."""
        return self.backstop.to_settings(dry_run=self.dry_run)

    def to_stream(self) -> StreamSettings:
        return self.stream.to_settings()
