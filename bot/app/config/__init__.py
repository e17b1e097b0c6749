"""The typed TOML config that `levbot run|check|plan` read (DESIGN.md §2, §3, §6, §7).

`load_config(path)` reads the TOML, expands `${VAR}` references (and a `.env` file),
and validates it with frozen pydantic models that reject unknown keys. Every problem is
reported at once as `<field.path>: <message> (got <value>)`; secrets are `SecretStr`
and their values are never shown.

Paths: a relative sqlite path in `database.url` resolves against the working directory
(SQLAlchemy's rule); a relative sim `feed` path resolves against the config file's
directory.
"""

from bot.app.config.account import (
    BUILTIN_FEED,
    SIMULATED,
    AccountConfig,
    CollateralSource,
    Environment,
    PolicyConfig,
    SimConfig,
    TargetConfig,
    supported_exchanges,
)
from bot.app.config.levbot import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TELEGRAM_API,
    DatabaseConfig,
    LevbotConfig,
    LogConfig,
    LogLevel,
    TelegramConfig,
)
from bot.app.config.loading import load_config
from bot.app.config.problems import SECRET_KEYS, ConfigError
from bot.app.config.protection import BackstopConfig, StreamConfig, StreamSettings

__all__ = [
    "BUILTIN_FEED",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_TELEGRAM_API",
    "SECRET_KEYS",
    "SIMULATED",
    "AccountConfig",
    "BackstopConfig",
    "CollateralSource",
    "ConfigError",
    "DatabaseConfig",
    "Environment",
    "LevbotConfig",
    "LogConfig",
    "LogLevel",
    "PolicyConfig",
    "SimConfig",
    "StreamConfig",
    "StreamSettings",
    "TargetConfig",
    "TelegramConfig",
    "load_config",
    "supported_exchanges",
]
