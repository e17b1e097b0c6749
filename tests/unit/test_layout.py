"""The dependency rule of DESIGN.md §5: arrows point inward, for every layer.

`bot/domain` is pure: it imports nothing from the adapters' libraries, no other `bot.*`
package, no asyncio, and never reads the clock (the planner gets `now` as an argument).
Every other room imports only rooms below it (`LAYERS`, written down once here) and
only the third-party libraries that are its job (`LIBRARIES`). Checked on the syntax
tree, so an import inside a function or a `TYPE_CHECKING` block counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "bot" / "domain"
FORBIDDEN_LIBRARIES = frozenset(
    {
        "ccxt",
        "sqlmodel",
        "sqlalchemy",
        "telegram",
        "apscheduler",
        "asyncio",
        "aiohttp",
        "pydantic",
    }
)
# Attribute reads that return "now", by the name of what they are read from.
CLOCK_ATTRIBUTES = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "localtime"},
}
CLOCK_FUNCTIONS = {"time": CLOCK_ATTRIBUTES["time"]}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute_module(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """Resolve `from ..x import y` against the importing module."""
    if node.level == 0:
        return node.module or ""
    package = importer.split(".")
    if not is_package:
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(tree: ast.Module, importer: str, is_package: bool) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = absolute_module(node, importer, is_package)
            found.append((node.lineno, module))
            # `from bot import app` imports the package bot.app.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in {"__import__", "import_module"}:
                found.append((node.lineno, "<dynamic import>"))
    return found


def import_problems(source: str, importer: str, is_package: bool = False) -> list[str]:
    problems: list[str] = []
    tree = ast.parse(source)
    for line, module in imported_modules(tree, importer, is_package):
        top = module.split(".")[0]
        if module == "<dynamic import>":
            problems.append(f"line {line}: dynamic import")
        elif top in FORBIDDEN_LIBRARIES:
            problems.append(f"line {line}: imports {module}")
        elif top == "bot" and module != "bot" and not module.startswith("bot.domain"):
            problems.append(f"line {line}: imports {module} (outside bot.domain)")
    return problems


def clock_problems(source: str) -> list[str]:
    problems: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            owner = node.value
            owner_name = (
                owner.id
                if isinstance(owner, ast.Name)
                else owner.attr
                if isinstance(owner, ast.Attribute)
                else ""
            )
            if node.attr in CLOCK_ATTRIBUTES.get(owner_name, set()):
                problems.append(f"line {node.lineno}: reads the clock ({owner_name}.{node.attr})")
        elif isinstance(node, ast.ImportFrom) and node.module in CLOCK_FUNCTIONS:
            for alias in node.names:
                if alias.name in CLOCK_FUNCTIONS[node.module]:
                    problems.append(
                        f"line {node.lineno}: imports the clock ({node.module}.{alias.name})"
                    )
    return problems


def domain_files() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


# The rooms, innermost first: a room imports rooms of a lower rank (and itself), never
# one of its own rank or higher. Telegram and the backtest are peers: neither imports the
# other. The composition root (entrypoints) sits above everything it wires.
LAYERS: dict[str, int] = {
    "bot.domain": 0,
    "bot.clock": 1,
    "bot.redaction": 1,
    "bot.exchange": 2,
    "bot.store": 3,
    "bot.app": 4,
    "bot.telegram": 5,
    "bot.backtest": 5,
    "bot.entrypoints": 6,
    "bot.__main__": 7,
}
# Third-party libraries and the rooms whose job they are; any other is not checked.
LIBRARIES: dict[str, frozenset[str]] = {
    "ccxt": frozenset({"bot.exchange"}),
    "aiohttp": frozenset({"bot.exchange"}),
    "sqlalchemy": frozenset({"bot.store"}),
    "sqlmodel": frozenset({"bot.store"}),
    "alembic": frozenset({"bot.store"}),
    "apscheduler": frozenset({"bot.app"}),
    "prometheus_client": frozenset({"bot.app"}),
    "pydantic": frozenset({"bot.app"}),
    "pydantic_core": frozenset({"bot.app"}),
    "telegram": frozenset({"bot.telegram"}),
    "matplotlib": frozenset({"bot.telegram", "bot.backtest"}),
    "typer": frozenset({"bot.entrypoints"}),
    "rich": frozenset({"bot.entrypoints"}),
}


def room_of(module: str) -> str | None:
    """The room a `bot.*` module lives in (the longest matching prefix), or None."""
    matches = [room for room in LAYERS if module == room or module.startswith(room + ".")]
    return max(matches, key=len) if matches else None


def layer_problems(source: str, importer: str, is_package: bool = False) -> list[str]:
    """Imports of `importer` that point outward, sideways, or at another room's library."""
    own = room_of(importer)
    assert own is not None, f"{importer} is in no room: add it to LAYERS"
    problems: list[str] = []
    for line, module in imported_modules(ast.parse(source), importer, is_package):
        top = module.split(".")[0]
        if module == "<dynamic import>":
            problems.append(f"line {line}: dynamic import")
        elif top == "bot" and module != "bot":
            room = room_of(module)
            if room is None:
                problems.append(f"line {line}: imports {module}, which is in no room")
            elif room != own and LAYERS[room] >= LAYERS[own]:
                problems.append(f"line {line}: {own} imports {module} ({room} is not below it)")
        elif top in LIBRARIES and own not in LIBRARIES[top]:
            problems.append(f"line {line}: {own} imports {module} (only {sorted(LIBRARIES[top])})")
    return problems


def bot_files() -> list[Path]:
    return sorted((ROOT / "bot").rglob("*.py"))


def test_layers_when_listed_then_every_package_under_bot_is_in_a_room() -> None:
    packages = {module_name(path) for path in bot_files() if path.parent != ROOT / "bot"} | {
        module_name(path) for path in (ROOT / "bot").glob("*.py") if path.stem != "__init__"
    }
    assert [module for module in sorted(packages) if room_of(module) is None] == []


@pytest.mark.parametrize(
    "path", [p for p in bot_files() if p.name != "__init__.py" or p.parent != ROOT / "bot"],
    ids=lambda p: str(p.relative_to(ROOT / "bot")),
)  # fmt: skip
def test_module_when_parsed_then_imports_point_inward(path: Path) -> None:
    problems = layer_problems(
        path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
    )
    assert problems == [], f"{path.relative_to(ROOT)}: {problems}"


def test_domain_when_listed_then_has_the_core_modules() -> None:
    names = {path.stem for path in domain_files()}
    assert {"models", "leverage", "targets", "actions", "planner"} <= names


@pytest.mark.parametrize("path", domain_files(), ids=lambda p: p.name)
def test_domain_module_when_parsed_then_imports_only_stdlib_and_bot_domain(path: Path) -> None:
    problems = import_problems(
        path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
    )
    assert problems == [], f"{path.relative_to(ROOT)}: {problems}"


@pytest.mark.parametrize("path", domain_files(), ids=lambda p: p.name)
def test_domain_module_when_parsed_then_never_reads_the_clock(path: Path) -> None:
    problems = clock_problems(path.read_text(encoding="utf-8"))
    assert problems == [], f"{path.relative_to(ROOT)}: {problems}"


# The checks above only mean something if they catch what they look for.


@pytest.mark.parametrize(
    "source",
    [
        "import ccxt",
        "import ccxt.async_support as ccxt",
        "from sqlmodel import Session",
        "import sqlalchemy.orm",
        "from telegram.ext import Application",
        "import apscheduler",
        "import asyncio",
        "from asyncio import sleep",
        "import aiohttp",
        "from pydantic import BaseModel",
        "from bot.exchange.port import Exchange",
        "from bot import app",
        "import bot.store",
        "from ..app import service",
        "from .. import telegram",
        "def f():\n    import ccxt\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.app import execute\n",
        "import importlib\nimportlib.import_module('ccxt')",
        "__import__('ccxt')",
    ],
)
def test_import_problems_when_forbidden_import_then_reported(source: str) -> None:
    assert import_problems(source, "bot.domain.planner")


@pytest.mark.parametrize(
    "source",
    [
        "from decimal import Decimal",
        "from dataclasses import dataclass, field",
        "from datetime import datetime, timedelta",
        "from bot.domain.models import Position",
        "from bot.domain import leverage",
        "import bot.domain.targets",
        "from . import models",
        "from .models import Side",
    ],
)
def test_import_problems_when_stdlib_or_domain_then_clean(source: str) -> None:
    assert import_problems(source, "bot.domain.planner") == []


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\nnow = datetime.now()",
        "from datetime import UTC, datetime\nnow = datetime.now(UTC)",
        "import datetime\nnow = datetime.datetime.now()",
        "from datetime import datetime\nnow = datetime.utcnow()",
        "from datetime import date\nday = date.today()",
        "import time\nt = time.time()",
        "import time\nt = time.monotonic()",
        "from time import time",
        "from time import time_ns as clock",
    ],
)
def test_clock_problems_when_clock_read_then_reported(source: str) -> None:
    assert clock_problems(source)


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime, timedelta\nage = now - taken_at",
        "def plan(now):\n    return now.isoformat()",
        "from datetime import timedelta\ncooldown = timedelta(minutes=5)",
    ],
)
def test_clock_problems_when_time_is_an_argument_then_clean(source: str) -> None:
    assert clock_problems(source) == []


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("bot.store.codec", "from bot.app.execute import execute_plan"),
        ("bot.store.codec", "def f():\n    from bot.app import service\n"),
        ("bot.app.daemon", "def f():\n    from bot.telegram.runner import TelegramRunner\n"),
        ("bot.app.service", "from bot.entrypoints.bootstrap import build_runtime"),
        ("bot.telegram.commands", "from bot.backtest.runner import run_backtest"),
        ("bot.backtest.policies", "import bot.telegram.chart"),
        ("bot.exchange.port", "from bot.store.records import ActionRecord"),
        ("bot.exchange.port", "from ..store import records"),
        ("bot.clock", "from bot.exchange.port import Exchange"),
        ("bot.telegram.commands", "import ccxt.async_support as ccxt"),
        ("bot.app.service", "from sqlmodel import select"),
        ("bot.app.control", "from telegram import Update"),
        ("bot.store.journal", "import typer"),
        ("bot.telegram.runner", "import importlib\nimportlib.import_module('bot.entrypoints')"),
        ("bot.app.service", "from bot.nowhere import thing"),
    ],
)
def test_layer_problems_when_import_points_outward_or_sideways_then_reported(
    importer: str, source: str
) -> None:
    assert layer_problems(source, importer)


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("bot.exchange.port", "from bot.domain.models import AccountSnapshot"),
        ("bot.store.codec", "from bot.exchange.port import OrderResult"),
        ("bot.store.sessions", "from bot.clock import utc_now"),
        ("bot.app.service", "from bot.store.journal import Journal"),
        ("bot.telegram.commands", "from bot.app.control import Controls"),
        ("bot.backtest.runner", "from bot.app.service import AccountService"),
        ("bot.entrypoints.daemon", "from bot.telegram.runner import TelegramRunner"),
        ("bot.entrypoints.cli", "import typer"),
        ("bot.exchange.ccxt.adapter", "import ccxt.async_support as ccxt"),
        ("bot.app.service", "from . import execute"),
        ("bot.backtest.report", "import matplotlib.pyplot as plt"),
    ],
)
def test_layer_problems_when_import_points_inward_then_clean(importer: str, source: str) -> None:
    assert layer_problems(source, importer) == []
