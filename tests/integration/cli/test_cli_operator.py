"""What an operator meets first (issue 11 §3, §4): `check` proves the Telegram token,
read-only commands need no secrets they do not use and never create a journal, relative
paths resolve one way, help is readable at 80 columns, the plain-log heartbeat."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bot.app.config import load_config
from bot.entrypoints.cli import app
from bot.entrypoints.commands import _live_table, _run_daemon
from bot.entrypoints.daemon import Daemon
from bot.store.journal import Journal
from tests.support.fake_bot_api import FakeBotApi

REPO = Path(__file__).parents[3]
PAPER = REPO / "config" / "paper.toml"
PAPER_DB = 'url = "sqlite:///data/levbot.sqlite"'
COMMANDS = ("run", "check", "plan", "status", "history", "health", "backtest", "paper-exchange")


@pytest.fixture(autouse=True)
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns when time periods are read as ints; the suite turns warnings into errors."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture(autouse=True)
def clean_root_logger() -> Iterator[None]:
    """Each CLI run adds a root handler on CliRunner's stream, closed once it returns:
    start every test without them, and put back what was there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as api:
        yield api


def write_config(tmp_path: Path, *, database: str, telegram: str = "") -> Path:
    path = tmp_path / "levbot.toml"
    path.write_text(PAPER.read_text().replace(PAPER_DB, f'url = "{database}"') + telegram)
    return path


def telegram_table(api_url: str, token: str, chats: str = "[111, 222]") -> str:
    return (
        f'\n[telegram]\ntoken = "{token}"\nallowed_chat_ids = {chats}\napi_base_url = "{api_url}"\n'
    )


async def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The CLI in a worker thread: it runs its own event loop, and the fake Bot API
    serves on this test's loop."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.output


def invoke_sync(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


# -- check: the Telegram probe ---------------------------------------------------------


async def test_check_when_token_is_alive_then_names_the_bot(
    tmp_path: Path, fake_bot_api: FakeBotApi
) -> None:
    config = write_config(
        tmp_path, database=f"sqlite:///{tmp_path}/j.sqlite",
        telegram=telegram_table(fake_bot_api.url, fake_bot_api.token),
    )  # fmt: skip
    code, output = await invoke("check", "--config", str(config))
    assert code == 0, output
    assert f"telegram: OK @levbot_test_bot ({fake_bot_api.bot_id})" in output
    assert fake_bot_api.calls_to("getMe")
    assert not fake_bot_api.sent_messages()


async def test_check_when_token_is_dead_then_fails_without_quoting_it(
    tmp_path: Path, fake_bot_api: FakeBotApi
) -> None:
    dead = "987654321:AAH-a-revoked-token-nobody-knows"
    config = write_config(
        tmp_path, database=f"sqlite:///{tmp_path}/j.sqlite",
        telegram=telegram_table(fake_bot_api.url, dead),
    )  # fmt: skip
    code, output = await invoke("check", "--config", str(config))
    assert code == 1, output
    assert "telegram: FAILED the token was rejected (401 Unauthorized)" in output
    assert dead not in output and "AAH-a-revoked" not in output


async def test_check_when_send_test_then_every_allowed_chat_gets_one_and_each_is_reported(
    tmp_path: Path, fake_bot_api: FakeBotApi
) -> None:
    config = write_config(
        tmp_path, database=f"sqlite:///{tmp_path}/j.sqlite",
        telegram=telegram_table(fake_bot_api.url, fake_bot_api.token),
    )  # fmt: skip
    fake_bot_api.fail_next_to_chat(222, status=403)
    code, output = await invoke("check", "--config", str(config), "--send-test")
    assert code == 1, output
    assert "telegram: test message to chat 111: sent" in output
    assert "telegram: test message to chat 222: FAILED forbidden" in output
    assert [m.chat_id for m in fake_bot_api.sent_messages()] == [111]


# -- read-only commands: no unused secrets, no new journal -----------------------------


def test_read_only_commands_when_telegram_token_is_unset_then_they_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    database = f"sqlite:///{tmp_path}/j.sqlite"
    config = write_config(
        tmp_path, database=database,
        telegram=telegram_table("http://127.0.0.1:9", "${TELEGRAM_BOT_TOKEN}"),
    )  # fmt: skip
    asyncio.run(_make_journal(tmp_path / "j.sqlite"))
    for command in ("status", "history", "health", "plan"):
        code, output = invoke_sync(command, "--config", str(config))
        assert "TELEGRAM_BOT_TOKEN" not in output, (command, output)
        assert code in (0, 1) and "error" not in output, (command, output)
    # `run` and `check` use the token: still required there.
    code, output = invoke_sync("check", "--config", str(config))
    assert code == 2
    assert "telegram.token: environment variable TELEGRAM_BOT_TOKEN is not set" in output


def test_plan_when_exchange_key_is_unset_then_still_required(tmp_path: Path) -> None:
    config = tmp_path / "levbot.toml"
    config.write_text(
        (REPO / "config" / "testnet.example.toml").read_text().replace("${", "${LEVBOT_TEST_UNSET_")
    )
    code, output = invoke_sync("plan", "--config", str(config))
    assert code == 2
    assert "LEVBOT_TEST_UNSET_" in output
    assert "telegram.token: environment variable" not in output


@pytest.mark.parametrize("command", ["status", "history", "health"])
def test_read_only_command_when_no_journal_then_says_so_and_creates_none(
    command: str, tmp_path: Path
) -> None:
    database = tmp_path / "nowhere" / "levbot.sqlite"
    config = write_config(tmp_path, database=f"sqlite:///{database}")
    code, output = invoke_sync(command, "--config", str(config))
    assert code == 1, output
    assert output.strip() == f"error: no journal at {database}"
    assert not database.exists() and not database.parent.exists()


def test_plan_when_no_journal_then_plans_as_a_first_run_and_creates_none(tmp_path: Path) -> None:
    database = tmp_path / "nowhere" / "levbot.sqlite"
    config = write_config(tmp_path, database=f"sqlite:///{database}")
    code, output = invoke_sync("plan", "--config", str(config))
    assert code == 0, output
    assert "paper: leverage 4.00, 1 action(s) planned" in output
    assert not database.parent.exists()


def test_status_when_run_from_another_directory_then_relative_paths_follow_the_rule(
    tmp_path: Path,
) -> None:
    """The rule: a relative sqlite path is relative to the working directory (as
    `make run` and the Docker image use it); a relative feed to the config's directory.
    A real process, so the working directory is really elsewhere."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    (home / "data").mkdir(parents=True)
    elsewhere.mkdir()
    config = write_config(home, database="sqlite:///data/levbot.sqlite")

    def levbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=cwd, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    asyncio.run(_make_journal(home / "data" / "levbot.sqlite"))
    at_home = levbot("status", "--config", str(config), cwd=home)
    assert at_home.returncode == 0, at_home.stderr
    assert "never" in at_home.stdout
    away = levbot("status", "--config", str(config), cwd=elsewhere)
    assert away.returncode == 1
    assert away.stderr.strip() == f"error: no journal at {elsewhere / 'data' / 'levbot.sqlite'}"
    assert not (elsewhere / "data").exists()


async def _make_journal(path: Path) -> None:
    await (await Journal.open(f"sqlite:///{path}")).close()


# -- CLI help and --account -------------------------------------------------------------


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_when_80_columns_then_no_line_longer_and_no_bool_metavar(command: str) -> None:
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    assert "<bool>" not in result.output and "…" not in result.output


def test_flag_when_given_then_takes_no_value() -> None:
    code, output = invoke_sync("run", "--config", "x.toml", "--log-json", "true")
    assert code == 2
    assert "unexpected extra argument" in output.lower()


@pytest.mark.parametrize("command", ["plan", "history"])
def test_account_option_when_unknown_then_the_same_error_everywhere(
    command: str, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path}/j.sqlite"
    asyncio.run(_make_journal(tmp_path / "j.sqlite"))
    config = write_config(tmp_path, database=database)
    code, output = invoke_sync(command, "--config", str(config), "--account", "nope")
    assert code == 2
    assert output.strip() == "error: --account nope: not in the config (paper)"


# -- run: the plain-log heartbeat --------------------------------------------------------


async def test_run_when_plain_logs_then_a_heartbeat_line_every_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, database=f"sqlite:///{tmp_path}/j.sqlite")
    daemon = Daemon(load_config(config))
    caplog.set_level(logging.INFO, logger="bot.entrypoints.commands")
    running = asyncio.create_task(_run_daemon(daemon, live=False, heartbeat_seconds=0.3))
    try:
        for _ in range(100):
            beats = [r.getMessage() for r in caplog.records if "levbot alive" in r.getMessage()]
            if len(beats) >= 2 and "1 ok" in beats[-1]:
                break
            await asyncio.sleep(0.1)
    finally:
        daemon.stop.set()
        assert await running == 0
    assert len(beats) >= 2
    assert beats[-1].startswith("levbot alive: 1 account(s), last cycles 1 ok, 0 failed")
    assert "paper " in beats[-1]
    # The resting stop ladder, as the journal holds it (the paper account keeps one).
    assert re.search(r"paper \S+ \d+\.\d\dx ok \d\d:\d\d:\d\d backstops \d+$", beats[-1])


async def test_live_table_when_a_cycle_ran_then_equity_beside_the_status_state_name(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, database=f"sqlite:///{tmp_path}/j.sqlite")
    daemon = Daemon(load_config(config))
    running = asyncio.create_task(_run_daemon(daemon, live=False))
    try:
        for _ in range(100):
            if daemon.services and daemon.services[0].last_report is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        daemon.stop.set()
        assert await running == 0
    console = Console(width=200, record=True)
    console.print(_live_table(daemon.services))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "account" in line)
    assert [cell.strip() for cell in header.split("┃")[1:4]] == ["account", "state", "equity"]
    [row] = [line for line in text.splitlines() if "paper" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[1] == daemon.services[0].state.value  # the word `levbot status` shows
    # 10,000 USDT at the start, plus what the first de-lever moved in from the reserve.
    assert 10_000 <= float(cells[2]) <= 15_000
