"""`load_config`: read the TOML, expand `${VAR}` references, validate, report every problem."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import ValidationError

from bot.app.config.levbot import LevbotConfig
from bot.app.config.problems import ConfigError, Loc, problem_lines, render_path

logger = logging.getLogger(__name__)

# Secrets a command may not use: the Telegram table, or the venues' credentials.
SecretScope = Literal["telegram", "credentials"]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The deepest a real config nests is accounts[i].symbol_targets["S"].max (4 levels).
MAX_DEPTH = 16
# No field takes a number near 1e30 (or a non-zero one below 1e-30): refused before the
# field's own bound is even asked.
MAX_EXPONENT = 30
MAX_NUMBER: int = 10**MAX_EXPONENT


def load_config(
    path: Path,
    env: Mapping[str, str] | None = None,
    *,
    unused_secrets: Collection[SecretScope] = (),
) -> LevbotConfig:
    """Read, expand and validate a config file; raise `ConfigError` listing every problem.

    `${VAR}` is looked up in `env` (default: `os.environ`), then in a `.env` next to the
    config file, then in a `.env` in the working directory. A `.env` file never
    overrides the environment.

    `unused_secrets` names what the caller never uses (`levbot status` uses neither the
    Telegram token nor the venues' keys): an unset `${VAR}` there is not a problem. The
    Telegram table is then left out; a credential keeps its unexpanded `${VAR}` text,
    which nothing reads.
    """
    raw = _read_toml(path)
    shape = _shape_problems(raw)
    if shape:
        raise ConfigError(path, shape)
    variables = _variables(path, os.environ if env is None else env)
    unset: list[tuple[Loc, str]] = []
    expanded = _expand(raw, (), variables, unset)
    unset = _excuse_unused(expanded, unset, unused_secrets)
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


def _excuse_unused(
    expanded: object, unset: list[tuple[Loc, str]], unused: Collection[SecretScope]
) -> list[tuple[Loc, str]]:
    """The unset references that still matter; a note in the log for each one excused."""
    kept: list[tuple[Loc, str]] = []
    for loc, name in unset:
        if "telegram" in unused and loc[:1] == ("telegram",) and isinstance(expanded, dict):
            expanded.pop("telegram", None)
        elif not ("credentials" in unused and loc[2:3] == ("credentials",)):
            kept.append((loc, name))
            continue
        logger.info("%s: %s is not set; not used by this command", render_path(loc), name)
    return kept


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
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        message = f"arrays or tables nested more than {MAX_DEPTH} levels deep"
        raise ConfigError(path, [f"{render_path(())}: {message}"]) from None
    except ValueError as error:
        # An integer literal longer than Python's int-from-string limit (4,300 digits).
        raise ConfigError(path, [f"invalid TOML: {error}"]) from None


def _shape_problems(raw: dict[str, Any]) -> list[str]:
    """Nesting deeper than any real config, and numbers too large for any field: both
    reported before validation, which recurses over the nesting and would build a
    billion-digit integer from `1e999999999` before a bound could refuse it."""
    problems: list[str] = []
    pending: list[tuple[Loc, object]] = [((), raw)]
    while pending:
        loc, value = pending.pop()
        if len(loc) > MAX_DEPTH:
            message = f"arrays or tables nested more than {MAX_DEPTH} levels deep"
            problems.append(f"{render_path(loc[:MAX_DEPTH])}: {message}")
            continue
        if isinstance(value, dict):
            pending.extend(((*loc, key), item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend(((*loc, index), item) for index, item in enumerate(value))
        elif (number := _too_large(value)) is not None:
            problems.append(f"{render_path(loc)}: number out of range (got {number:.3e})")
    return sorted(set(problems))


def _too_large(value: object) -> Decimal | None:
    """`value` as a Decimal when it is a number out of every field's range, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        return Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite() or value == 0:
        return None
    return None if -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT else value


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
