"""What `levbot` imports at start-up: the backtest never loads the daemon's libraries.

A 60,000-bar backtest has a 10 s budget (issue 12 §4) and the daemon's stack (the
journal's SQLAlchemy and alembic, Telegram, ccxt, aiohttp, the scheduler) took about
2.5 s of it before a single bar was read. Each `levbot` command imports its own module
when it is the one asked for; `levbot --help` still lists every command with its help.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.entrypoints.cli import app

FIXTURES = Path(__file__).parents[2] / "fixtures" / "prices"
# The daemon's libraries: none of them does anything in a replay.
DAEMON_LIBRARIES = (
    "sqlalchemy", "sqlmodel", "alembic", "telegram", "ccxt", "aiohttp", "apscheduler",
    "prometheus_client",
)  # fmt: skip
# Runs `levbot ARGS...` in a fresh interpreter and writes the top-level names of the
# modules it imported to the file named by argv[1], however the command exits.
PROBE = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(
    lambda: open(out, "w").write(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
)
sys.argv[0] = "levbot"
from bot.entrypoints.cli import main
main()
"""
COMMANDS = ("run", "check", "plan", "status", "history", "health", "backtest", "paper-exchange")


def imported_by(tmp_path: Path, *args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    listing = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(listing), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return set(json.loads(listing.read_text())), result


@pytest.fixture(scope="module")
def backtest_help_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    modules, result = imported_by(tmp_path_factory.mktemp("help"), "backtest", "--help")
    assert "--prices" in result.stdout
    return modules


@pytest.fixture(scope="module")
def backtest_run_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """A whole (small) replay of every policy, the levbot cycle included."""
    folder = tmp_path_factory.mktemp("run")
    modules, result = imported_by(
        folder, "backtest", "--prices", str(FIXTURES / "eth_perp_1h_2020-03-12_03-14.csv"),
        "--target", "3", "--min", "2.5", "--max", "3.5", "--no-plot", "--out", str(folder),
    )  # fmt: skip
    assert (folder / "summary.json").exists(), result.stderr
    return modules


@pytest.mark.parametrize("library", DAEMON_LIBRARIES)
def test_backtest_help_when_started_then_daemon_library_not_imported(
    backtest_help_modules: set[str], library: str
) -> None:
    assert library not in backtest_help_modules


@pytest.mark.parametrize("library", DAEMON_LIBRARIES)
def test_backtest_when_replayed_then_daemon_library_not_imported(
    backtest_run_modules: set[str], library: str
) -> None:
    assert library not in backtest_run_modules


def test_help_when_asked_then_every_command_is_listed_with_its_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line]
    assert listed == list(COMMANDS)
    assert "backtest        Replay a price file through levbot and the baseline" in result.output
    assert "run             Run the daemon until SIGTERM/SIGINT" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_when_asked_then_shown(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: levbot {command} [OPTIONS]" in result.output


def test_command_when_misspelt_then_the_close_one_is_suggested() -> None:
    result = CliRunner().invoke(app, ["bakctest"])
    assert result.exit_code == 2
    assert "No such command 'bakctest'. Did you mean 'backtest'?" in result.output
