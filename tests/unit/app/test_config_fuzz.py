"""The config loader under fuzzed input: a valid config mutated structurally and by value.

Whatever the file holds, `load_config` returns a config or raises `ConfigError` whose
problems are one line each, never anything else (issue 9 §5 found 92 tracebacks in
2,200 fuzzed configs: deep nesting, inf/NaN/1e20 numbers, binary bytes).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app.config import ConfigError, LevbotConfig, load_config

BASE = """
snapshot_retention_days = 30
[database]
url = "sqlite:///data/levbot.sqlite"
[log]
level = "INFO"
[telegram]
token = "${TOKEN}"
allowed_chat_ids = [-1001234]
mute = ["info"]
daily_summary = "08:00"
[[accounts]]
name = "paper"
exchange = "sim"
interval_seconds = 5
unreachable_alert_after = 3
symbols = ["BTC/USDT:USDT"]
[accounts.target]
leverage = 3
min = 2.5
max = 3.5
emergency_margin_ratio = 0.8
[accounts.symbol_targets."BTC/USDT:USDT"]
leverage = 3
min = 2
max = 4
[accounts.policy]
cooldown_seconds = 10
max_snapshot_age_seconds = 30
max_order_notional = 1000
daily_transfer_cap = 5000
source_floor = 0
[accounts.backstop]
enabled = true
margin_ratio = 0.85
liquidation_buffer = 0.02
levels = 3
fraction = 0.5
reprice_tolerance = 0.005
[accounts.stream]
enabled = true
debounce_seconds = 1.0
max_backoff_seconds = 60
[accounts.sim]
equity = 10000
reserve = 5000
leverage = 4
bar_seconds = 1.0
fee = 0.0005
[[accounts]]
name = "bybit"
exchange = "bybit"
environment = "testnet"
api_key = "${KEY}"
secret = "${SECRET}"
[accounts.target]
leverage = 3
min = 2
max = 4
"""
ENV = {"TOKEN": "123456:token-value", "KEY": "key-value", "SECRET": "secret-value"}
# A problem line: a field path (or "(top level)" / "invalid TOML"), a colon, a message.
PROBLEM = re.compile(r"^[^\n]+: [^\n]+$")


@dataclass(frozen=True)
class Raw:
    """TOML text written as is (nesting deeper than any builder would make)."""

    text: str


def dump(value: object) -> str:
    """Inline TOML for a value (tables inline, so any shape can go anywhere)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return "nan"
        if value.is_infinite():
            return "-inf" if value < 0 else "inf"
        text = str(value)
        return text if any(c in text for c in ".eE") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(item) for item in value) + "]"
    return json.dumps(str(value))


def document(config: dict[str, Any]) -> str:
    return "\n".join(f"{json.dumps(key)} = {dump(value)}" for key, value in config.items())


ABSURD = [Decimal(t) for t in ("inf", "-inf", "nan", "1e20", "1e12", "1e30", "1e-30",
                                "1e999999999", "-1e20", "0.0")]  # fmt: skip
SCALARS = st.one_of(
    st.sampled_from(ABSURD),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -1, 2**63, 10**12, 10**20, 10**4000]),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)
BAD_VALUES = st.one_of(
    SCALARS,
    st.integers(min_value=1, max_value=700).map(lambda n: Raw("[" * n + "]" * n)),
    st.integers(min_value=1, max_value=700).map(lambda n: Raw("{a = " * n + "1" + "}" * n)),
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=6), SCALARS, max_size=3),
)


def base_tree() -> dict[str, Any]:
    return tomllib.loads(BASE, parse_float=Decimal)


def places(node: object, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value in the tree (tables and arrays included)."""
    found: list[tuple[Any, ...]] = [loc] if loc else []
    if isinstance(node, dict):
        for key, item in node.items():
            found += places(item, (*loc, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += places(item, (*loc, index))
    return found


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    tree = base_tree()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        # Every place equally likely, so each number of the config gets its turn.
        loc = draw(st.sampled_from(places(tree)))
        parent: Any = tree
        for part in loc[:-1]:
            parent = parent[part]
        key = loc[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[key] = draw(BAD_VALUES)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(BAD_VALUES)
        else:
            parent.append(draw(BAD_VALUES))
    data = document(tree).encode("utf-8", "surrogatepass")
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        # Binary garbage at a random place.
        where = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:where] + draw(st.binary(min_size=1, max_size=16)) + data[where:]
    return data


def test_fuzz_document_when_not_mutated_then_loads() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "levbot.toml"
        path.write_text(document(base_tree()))
        assert isinstance(load_config(path, env=ENV), LevbotConfig)


# In `make test` the same 300 examples every run (derandomized), so CI is reproducible;
# `make fuzz` draws FUZZ_EXAMPLES fresh ones (a failure there becomes a fixed case here).
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


@settings(
    max_examples=FUZZ_EXAMPLES or 300,
    derandomize=not FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=mutated_text())
def test_load_config_when_fuzzed_then_a_config_or_one_line_problems(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "levbot.toml"
        path.write_bytes(data)
        try:
            config = load_config(path, env=ENV)
        except ConfigError as error:
            assert error.problems
            for problem in error.problems:
                assert PROBLEM.fullmatch(problem), problem
        else:
            assert isinstance(config, LevbotConfig)
