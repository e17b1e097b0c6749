"""The dependency rule of DESIGN.md §5: `bot/domain` is pure.

It imports nothing from the adapters' libraries, no other `bot.*` package, no asyncio,
and never reads the clock (the planner gets `now` as an argument). Checked on the
syntax tree, so an import inside a function or a `TYPE_CHECKING` block counts too.
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
