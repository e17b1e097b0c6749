"""`levbot check|plan|status|history|health` on a real paper config and a real SQLite journal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.entrypoints.cli import app
from bot.store.journal import Journal

PAPER = Path(__file__).parents[3] / "config" / "paper.toml"


@pytest.fixture
def paper_config(tmp_path: Path) -> Path:
    """config/paper.toml with its journal and paper state inside tmp_path."""
    text = PAPER.read_text().replace(
        'url = "sqlite:///data/levbot.sqlite"', f'url = "sqlite:///{tmp_path}/levbot.sqlite"'
    )
    path = tmp_path / "paper.toml"
    path.write_text(text)
    return path


async def _make_journal(url: str) -> None:
    await (await Journal.open(url)).close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_help_when_asked_then_every_command_is_listed() -> None:
    code, output = run("--help")
    assert code == 0
    for command in ("run", "check", "plan", "status", "history", "health", "backtest"):
        assert command in output


def test_check_when_paper_config_then_ok_with_account_figures(paper_config: Path) -> None:
    code, output = run("check", "--config", str(paper_config))
    assert code == 0, output
    assert "config OK: 1 account(s)" in output
    assert "paper (sim): OK — equity 10000.00 USDT, 1 position(s), leverage 4.00" in output
    assert "position mode one-way" in output


def test_check_when_config_has_an_unknown_key_then_exit_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(PAPER.read_text().replace("dry_run = false", "dry_rum = false"))
    code, output = run("check", "--config", str(path))
    assert code == 2
    assert "accounts[0].dry_rum" in output
    assert "Traceback" not in output


def test_check_when_band_is_inverted_then_exit_2_naming_field_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(PAPER.read_text().replace("max = 3.5 ", "max = 2.9 "))
    code, output = run("check", "--config", str(path))
    assert code == 2
    assert "accounts[0].target.max" in output and "2.9" in output


def test_plan_when_json_then_actions_with_reasons_and_nothing_written(
    paper_config: Path, tmp_path: Path
) -> None:
    code, output = run("plan", "--config", str(paper_config), "--json")
    assert code == 0, output
    [account] = json.loads(output)
    assert account["account"] == "paper"
    assert float(account["leverage"]) == pytest.approx(4.0, abs=0.01)
    [action] = account["actions"]
    assert action["kind"] == "transfer_in"
    assert "de-lever paper: leverage 4.00 -> 3.00" in action["why"]
    # A look, not a move: the paper account's state file is not written.
    assert not (tmp_path / "paper-paper.json").exists()


def test_plan_when_text_then_one_line_per_action(paper_config: Path) -> None:
    code, output = run("plan", "--config", str(paper_config))
    assert code == 0, output
    assert "paper: leverage 4.00, 1 action(s) planned" in output
    assert "- transfer in" in output


def test_plan_when_account_unknown_then_exit_2(paper_config: Path) -> None:
    code, output = run("plan", "--config", str(paper_config), "--account", "nope")
    assert code == 2
    assert "--account nope: not in the config (paper)" in output


def test_status_history_health_when_journal_is_empty_then_say_so(
    paper_config: Path, tmp_path: Path
) -> None:
    # The journal exists (a daemon made it); read-only commands never make one.
    asyncio.run(_make_journal(f"sqlite:///{tmp_path}/levbot.sqlite"))
    code, output = run("status", "--config", str(paper_config))
    assert code == 0 and "never" in output
    code, output = run("history", "--config", str(paper_config))
    assert code == 0 and "no actions journaled yet" in output
    code, output = run("health", "--config", str(paper_config))
    assert code == 1
    assert "paper: STALE (last successful cycle never" in output


def test_config_when_missing_then_exit_2_naming_the_path(tmp_path: Path) -> None:
    code, output = run("status", "--config", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "nope.toml" in output and "file not found" in output
