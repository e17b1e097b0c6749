"""Config problems: raising several at once, and saying each one in the file's own terms.

A problem line reads `<field.path>: <message> (got <value>)`. The path uses the TOML
names with list indices (`accounts[1].target.max`); a secret's value is shown as `***`
and a password inside a URL as `user:***@`.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
# A problem with no value worth showing (a missing key, an unknown key).
NO_VALUE: Any = object()
SECRET_KEYS = frozenset({"api_key", "secret", "password", "token"})
# An account's venue credentials sit under this key in the model, at the top of the
# account table in the file: every value under it is a secret.
CREDENTIALS_KEY = "credentials"
_HIDDEN: Any = object()

_PROBLEMS = "levbot_problems"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `user:password@` in a URL, even a malformed one.
URL_PASSWORD = re.compile(r"([^:/@\s]+:)[^@/\s]*@")
_REPHRASED = {
    "missing": "required key is missing",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
}

# pydantic's bound checks, said shortly (`1E+9` shown as 1000000000).
_BOUNDS = {
    "greater_than": "must be greater than",
    "greater_than_equal": "must be at least",
    "less_than": "must be less than",
    "less_than_equal": "must be at most",
}


class ConfigError(Exception):
    """The config cannot be used. `problems` holds one line per problem."""

    def __init__(self, source: Path, problems: Sequence[str]) -> None:
        self.source = source
        # One line each, whatever a key or value held (a newline, a terminal escape).
        self.problems = tuple(_CONTROL.sub(_escape, problem) for problem in problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def raise_problems(found: Sequence[tuple[Loc, str, object]]) -> None:
    """From a model validator: report every cross-field problem, each at its own path
    (relative to the table being validated). Does nothing when `found` is empty."""
    if found:
        summary = "; ".join(f"{render_path(loc)}: {message}" for loc, message, _ in found)
        context = {"summary": summary, "problems": tuple(found)}
        raise PydanticCustomError(_PROBLEMS, "{summary}", context)


def _describe(detail: ErrorDetails, root: type[BaseModel]) -> list[tuple[Loc, str, object]]:
    """One pydantic error as (path, message, offending value) triples."""
    loc: Loc = tuple(part for part in detail["loc"] if part != "[key]")
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    value = detail["input"]
    if CREDENTIALS_KEY in loc:
        loc = tuple(part for part in loc if part != CREDENTIALS_KEY)
        value = _HIDDEN
    if kind == _PROBLEMS:
        return [((*loc, *sub), message, bad) for sub, message, bad in ctx["problems"]]
    if kind == "extra_forbidden":
        return [(loc, _unknown_key_message(loc, root), NO_VALUE)]
    if kind == "missing":
        return [(loc, _REPHRASED[kind], NO_VALUE)]
    if kind in ("list_type", "tuple_type") and isinstance(value, dict) and loc:
        return [(loc, f"must be an array of tables: write [[{render_path(loc)}]]", NO_VALUE)]
    if kind in _REPHRASED:
        return [(loc, _REPHRASED[kind], value)]
    if kind == "value_error":
        return [(loc, str(ctx["error"]), value)]
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        shown = (
            f"{bound:g}" if isinstance(bound, float)
            else f"{bound:f}" if isinstance(bound, Decimal)
            else str(bound)
        )  # fmt: skip
        return [(loc, f"{_BOUNDS[kind]} {shown}", value)]
    if kind == "too_short":
        return [(loc, f"must have at least {ctx['min_length']} item(s)", value)]
    return [(loc, detail["msg"].replace("Input should be", "must be"), value)]


def problem_lines(
    error: ValidationError, root: type[BaseModel], skip: Sequence[Loc] = ()
) -> list[str]:
    """Every problem of a failed validation, one line each, in the file's terms.

    Problems at or under a path in `skip` are left out (already reported another way).
    """
    details = error.errors()
    lines = []
    for detail in details:
        # pydantic calls an array "too short" when every item failed: noise, not news.
        if detail["type"] == "too_short" and _has_error_under(detail["loc"], details):
            continue
        for loc, message, value in _describe(detail, root):
            if not any(loc[: len(prefix)] == prefix for prefix in skip):
                lines.append(_format_problem(loc, message, value))
    return lines


def _has_error_under(loc: tuple[str | int, ...], details: Sequence[ErrorDetails]) -> bool:
    return any(
        len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in details
    )


def _format_problem(loc: Loc, message: str, value: object) -> str:
    line = f"{render_path(loc)}: {message}"
    # A table (the input of a table-level error) may hold secrets: never shown.
    if value is NO_VALUE or _holds_table(value):
        return line
    if value is _HIDDEN or any(part in SECRET_KEYS for part in loc):
        return f"{line} (got ***)"
    return f"{line} (got {_show(value)})"


def render_path(loc: Loc) -> str:
    """('accounts', 1, 'symbol_targets', 'BTC/USDT:USDT', 'max')
    -> accounts[1].symbol_targets["BTC/USDT:USDT"].max"""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text or "(top level)"


def _holds_table(value: object) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list | tuple) and any(_holds_table(item) for item in value)


def _show(value: object) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + URL_PASSWORD.sub(r"\1***@", value) + '"'
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_show(item) for item in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _unknown_key_message(loc: Loc, root: type[BaseModel]) -> str:
    allowed = _keys_at(loc[:-1], root)
    message = "unknown key"
    key = loc[-1] if loc else ""
    if allowed and isinstance(key, str):
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            message += f' (did you mean "{close[0]}"?)'
        message += f"; allowed here: {', '.join(allowed)}"
    return message


def _keys_at(loc: Loc, root: type[BaseModel]) -> list[str]:
    """The keys the table at `loc` accepts, found by walking the models' annotations."""
    current: Any = root
    for part in (*loc, None):
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {
                field.alias or name: field
                for name, field in current.model_fields.items()
                if name != CREDENTIALS_KEY
            }
            if part is None:
                return list(fields)
            if part not in fields:
                return []
            current = fields[part].annotation
        elif get_origin(current) in (tuple, list):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
    return []


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; `Annotated[X, ...]` -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation
