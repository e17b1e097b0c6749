"""`load_config`: read the TOML, expand `${VAR}` references, validate, report every problem."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import ValidationError

from bot.app.config.levbot import LevbotConfig
from bot.app.config.problems import ConfigError, Loc, problem_lines, render_path

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_config(path: Path, env: Mapping[str, str] | None = None) -> LevbotConfig:
    """Read, expand and validate a config file; raise `ConfigError` listing every problem.

    `${VAR}` is looked up in `env` (default: `os.environ`), then in a `.env` next to the
    config file, then in a `.env` in the working directory. A `.env` file never
    overrides the environment.
    """
    raw = _read_toml(path)
    variables = _variables(path, os.environ if env is None else env)
    unset: list[tuple[Loc, str]] = []
    expanded = _expand(raw, (), variables, unset)
    problems = [
        f"{render_path(loc)}: environment variable {name} is not set" for loc, name in unset
    ]
    try:
        config = LevbotConfig.model_validate(expanded, context={"base_dir": path.resolve().parent})
    except ValidationError as error:
        # A value that could not be expanded fails validation too: say it once.
        problems += problem_lines(error, LevbotConfig, skip=[loc for loc, _ in unset])
        raise ConfigError(path, problems) from None
    if problems:
        raise ConfigError(path, problems)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, [f"cannot read the file: {error}"]) from None
    try:
        # Decimal keeps 0.1 exact: money is Decimal in the domain.
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [f"invalid TOML: {error}"]) from None


def _variables(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """`.env` in the working directory < `.env` next to the config < the environment."""
    merged: dict[str, str] = {}
    for dotenv in (Path.cwd() / ".env", path.resolve().parent / ".env"):
        if dotenv.is_file():
            values = dotenv_values(dotenv, interpolate=False)
            merged.update({key: value for key, value in values.items() if value is not None})
    merged.update(env)
    return merged


def _expand(
    value: object, loc: Loc, variables: Mapping[str, str], unset: list[tuple[Loc, str]]
) -> object:
    """Replace `${VAR}` in every string value; record each unset variable with its path."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return variables[name]
            unset.append((loc, name))
            return match.group(0)

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {key: _expand(item, (*loc, key), variables, unset) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, (*loc, index), variables, unset) for index, item in enumerate(value)]
    return value
