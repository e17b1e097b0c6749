"""The whole config file: database, log, Telegram and the accounts."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal, Self
from urllib.parse import unquote

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.app.config.account import AccountConfig, check_http_url
from bot.app.config.problems import URL_PASSWORD, Loc, raise_problems
from bot.app.config.table import ConfigTable
from bot.domain.vocabulary import AlertLevel

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

DEFAULT_DATABASE_URL = "sqlite:///data/levbot.sqlite"
DEFAULT_TELEGRAM_API = "https://api.telegram.org"
# A Telegram chat or user id: at most 52 significant bits, by Telegram's own documentation.
TelegramId = Annotated[int, Field(ge=-(2**53), le=2**53)]


class DatabaseConfig(ConfigTable):
    """Any SQLAlchemy URL. A relative sqlite path resolves against the working directory."""

    # Hidden from repr: a server URL may carry a password. Print `display_url` instead.
    url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    # PostgreSQL only (several daemons sharing the accounts): how long an account's lease
    # lasts without a heartbeat, 1 to 600 s. A killed daemon's accounts are taken over
    # within two of these; heartbeats come every third of it.
    lease_seconds: float = Field(default=15, ge=1, le=600, allow_inf_nan=False)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"[A-Za-z][A-Za-z0-9+]*://", value):
            raise ValueError(f"must be a SQLAlchemy URL like {DEFAULT_DATABASE_URL}")
        return value

    @property
    def display_url(self) -> str:
        """The URL with any password replaced by `***`."""
        return URL_PASSWORD.sub(r"\1***@", self.url)


class LogConfig(ConfigTable):
    level: LogLevel = "INFO"
    # `json` in the file (one JSON object per line); the attribute avoids BaseModel.json.
    json_format: bool = Field(default=False, alias="json")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class TelegramConfig(ConfigTable):
    """The `[telegram]` table: the bot, where it talks, and who may command it.

    Commands and button presses count only from `allowed_chat_ids`. When
    `allowed_user_ids` is set, they count only from those users, in any chat (use it for
    a group chat: everyone in the group then still sees alerts, only the owners steer);
    anyone else gets a short refusal, and the refusal is audited. New and edited
    messages are gated and audited alike.
    """

    token: SecretStr
    # Telegram ids fit in 52 bits (and so in SQLite's 64-bit integers).
    allowed_chat_ids: tuple[TelegramId, ...] = Field(min_length=1)
    # A self-hosted Bot API server or a loopback fake is reached by changing only this.
    api_base_url: str = DEFAULT_TELEGRAM_API
    # Alert levels not sent; critical alerts cannot be muted.
    mute: tuple[AlertLevel, ...] = ()
    # UTC time of day of the daily summary; absent or false: no summary.
    daily_summary: time | None = None
    # Users whose commands and button presses count (in every allowed chat); absent: anyone's.
    allowed_user_ids: tuple[TelegramId, ...] | None = None

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _check_api_base_url(cls, value: str) -> str:
        return check_http_url(value, path_allowed=True)

    @field_validator("mute")
    @classmethod
    def _check_mute(cls, value: tuple[AlertLevel, ...]) -> tuple[AlertLevel, ...]:
        if AlertLevel.CRITICAL in value:
            raise ValueError("critical alerts cannot be muted")
        return value

    @field_validator("allowed_user_ids")
    @classmethod
    def _check_users(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and not value:
            raise ValueError("must name at least one user id, or be left out (anyone)")
        return value

    @field_validator("daily_summary", mode="before")
    @classmethod
    def _summary_off(cls, value: object) -> object:
        if value is True:
            raise ValueError('use a UTC time of day like "08:00", or false')
        return None if value is False else value


class MetricsConfig(ConfigTable):
    """The `[metrics]` table: where Prometheus `/metrics` and `/healthz` are served."""

    # host:port; keep it on loopback (or a private network): the page is unauthenticated.
    listen: str

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('must be host:port, like "127.0.0.1:9108"')
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LevbotConfig(ConfigTable):
    """The whole config file."""

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    # 1 to 3650 (ten years): past that the retention cutoff leaves the calendar.
    snapshot_retention_days: int = Field(default=30, ge=1, le=3650)
    log: LogConfig = Field(default_factory=LogConfig)
    telegram: TelegramConfig | None = None
    metrics: MetricsConfig | None = None
    accounts: tuple[AccountConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique_names(self) -> Self:
        seen: set[str] = set()
        found: list[tuple[Loc, str, object]] = []
        for index, account in enumerate(self.accounts):
            if account.name in seen:
                found.append((("accounts", index, "name"), "duplicate account name", account.name))
            seen.add(account.name)
        raise_problems(found)
        return self

    def secrets(self) -> tuple[str, ...]:
        """Every secret value the config holds (venue credentials, the Telegram token,
        a database password), for scrubbing them out of logs, journal and alerts."""
        found = [
            secret.get_secret_value() for account in self.accounts
            for secret in account.credentials.values()
        ]  # fmt: skip
        if self.telegram is not None:
            found.append(self.telegram.token.get_secret_value())
        password = URL_PASSWORD.search(self.database.url)
        if password is not None:
            encoded = password.group(0)[len(password.group(1)) : -1]
            found += [encoded, unquote(encoded)]
        return tuple(secret for secret in found if secret)

    def account(self, name: str) -> AccountConfig:
        """The account called `name`; KeyError if there is none."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)
