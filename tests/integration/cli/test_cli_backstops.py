"""What the owner sees of the backstop ladder from the command line (issue 10 §1):
`check` lists each stop that would rest, `plan` what would change (and a `backstops`
object with `--json`), `status` each stop the journal believes rests, and the live
table of `run` a count. Real CLI, paper config, real SQLite journal."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bot.app.config import load_config
from bot.app.service import AccountService
from bot.domain.models import Side
from bot.domain.stops import StopOrder
from bot.entrypoints.bootstrap import build_runtime
from bot.entrypoints.cli import app
from bot.entrypoints.commands import _check_backstops, _live_table, _plan_backstops, _run_daemon
from bot.entrypoints.daemon import Daemon
from bot.exchange.port import TemporaryError
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal

BTC = "BTC/USDT:USDT"
ACCOUNT = """
[database]
url = "sqlite:///{database}"
[[accounts]]
name = "paper"
exchange = "sim"
interval_seconds = 60
{keys}
[accounts.target]
leverage = 3
min = 2.5
max = 3.5
[accounts.sim]
leverage = 4
{tables}
"""
# `L1 sell 0.977 BTC/USDT:USDT @ 30,447.06`
LEVEL = re.compile(r"L(\d+) sell (\d+\.\d+) BTC/USDT:USDT @ ([\d,]+\.\d+)")


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The paper exchange keeps its state beside the journal; nothing lands in the repo.
    monkeypatch.chdir(tmp_path)
    yield


def write_config(tmp_path: Path, keys: str = "", tables: str = "") -> Path:
    path = tmp_path / "levbot.toml"
    database = tmp_path / "levbot.sqlite"
    path.write_text(ACCOUNT.format(database=database, keys=keys, tables=tables))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


# -- check -----------------------------------------------------------------------------


def test_check_when_backstop_on_then_each_level_with_side_amount_symbol_and_trigger(
    tmp_path: Path,
) -> None:
    code, output = run("check", "--config", str(write_config(tmp_path)))

    assert code == 0, output
    levels = [m.groups() for m in LEVEL.finditer(output)]
    assert [int(level) for level, _, _ in levels] == [1, 2, 3]
    for line in (line for line in output.splitlines() if LEVEL.search(line)):
        assert line.startswith("    backstop L")
    # A long's stops sell below the mark (50,000 at the start of the built-in feed or
    # not, always below where the position is now), each level further down.
    triggers = [Decimal(trigger.replace(",", "")) for _, _, trigger in levels]
    assert triggers == sorted(triggers, reverse=True)
    assert "backstop: 0 resting at the venue; next cycle places 3, cancels 0, keeps 0" in output
    # A look never makes a journal.
    assert not (tmp_path / "levbot.sqlite").exists()


def test_check_when_dry_run_then_backstop_off_and_says_how_to_turn_it_on(tmp_path: Path) -> None:
    code, output = run("check", "--config", str(write_config(tmp_path, keys="dry_run = true")))

    assert code == 0, output
    assert (
        "    backstop: off (dry_run; enabled = true in [accounts.backstop] to plan them)" in output
    )
    assert not LEVEL.search(output)


def test_check_when_backstop_disabled_then_one_off_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, tables="[accounts.backstop]\nenabled = false\n")

    code, output = run("check", "--config", str(config))

    assert code == 0, output
    assert "\n    backstop: off\n" in output


def test_check_when_dry_run_but_backstop_enabled_then_ladder_shown(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, keys="dry_run = true", tables="[accounts.backstop]\nenabled = true\nlevels = 2\n"
    )

    code, output = run("check", "--config", str(config))

    assert code == 0, output
    assert [int(m.group(1)) for m in LEVEL.finditer(output)] == [1, 2]


# -- plan ------------------------------------------------------------------------------


def test_plan_json_when_backstop_on_then_a_backstops_object_with_ladder_and_changes(
    tmp_path: Path,
) -> None:
    code, output = run("plan", "--config", str(write_config(tmp_path)), "--json")

    assert code == 0, output
    [result] = json.loads(output)
    backstops = result["backstops"]
    assert backstops["enabled"] is True
    assert backstops["error"] is None
    assert backstops["resting"] == []
    desired = backstops["desired"]
    assert [stop["level"] for stop in desired] == [1, 2, 3]
    for stop in desired:
        assert (stop["symbol"], stop["side"], stop["position_side"]) == (BTC, "sell", "long")
        assert Decimal(stop["amount"]) > 0
        assert Decimal(stop["trigger_price"]) > 0
    # Nothing rests yet (a first run): the whole ladder would be placed.
    assert backstops["changes"] == {"place": desired, "cancel": [], "keep": []}
    assert "_backstop_lines" not in result


def test_plan_json_when_backstop_off_then_enabled_false_with_the_reason(tmp_path: Path) -> None:
    config = write_config(tmp_path, tables="[accounts.backstop]\nenabled = false\n")

    code, output = run("plan", "--config", str(config), "--json")

    assert code == 0, output
    [result] = json.loads(output)
    assert result["backstops"] == {
        "enabled": False,
        "desired": [],
        "resting": [],
        "changes": {"place": [], "cancel": [], "keep": []},
        "notes": ["backstop: off"],
        "error": None,
    }


def test_plan_when_text_then_one_line_per_backstop_change(tmp_path: Path) -> None:
    code, output = run("plan", "--config", str(write_config(tmp_path)))

    assert code == 0, output
    places = [line for line in output.splitlines() if line.startswith("  backstop: place L")]
    assert len(places) == 3
    assert all(LEVEL.search(line) for line in places)


# -- status and the live table ---------------------------------------------------------


async def _cycle_once(config: Path) -> AccountService:
    """One real cycle of the config's account on a simulated venue: the ladder is placed
    and journaled."""
    settings = load_config(config)
    account = settings.accounts[0]
    clock = lambda: datetime.now(UTC)  # noqa: E731
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=clock,
        derivatives=Decimal(10000), source=Decimal(0), account=account.name,
    )  # fmt: skip
    exchange.set_mark(BTC, Decimal(50000))
    exchange.open_position(BTC, Side.LONG, Decimal("0.6"))  # 30k on 10k: 3x, in band
    journal = await Journal.open(settings.database.url)
    try:
        service = AccountService(build_runtime(account, exchange), journal, clock)
        report = await service.run_cycle()
        assert report.error is None, report
        return service
    finally:
        await journal.close()


def test_status_when_backstops_rest_then_each_trigger_and_size_listed(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    asyncio.run(_cycle_once(config))

    code, output = run("status", "--config", str(config))

    assert code == 0, output
    [row] = [line for line in output.splitlines() if "│ paper" in line]
    assert "│ 3 " in row
    assert "backstops resting at the venue (as the journal last saw them):" in output
    listed = [line for line in output.splitlines() if line.startswith("  paper: sell ")]
    assert len(listed) == 3
    for line in listed:
        assert re.fullmatch(
            r"  paper: sell \d+\.\d+ BTC/USDT:USDT @ [\d,]+\.\d+ "
            r"\(placed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)",
            line,
        ), line


def test_status_when_backstop_off_then_column_says_off_and_nothing_listed(tmp_path: Path) -> None:
    config = write_config(tmp_path, tables="[accounts.backstop]\nenabled = false\n")
    asyncio.run(_cycle_once(config))

    code, output = run("status", "--config", str(config))

    assert code == 0, output
    [row] = [line for line in output.splitlines() if "│ paper" in line]
    assert "│ off " in row
    assert "backstops resting" not in output


@pytest.mark.parametrize(
    ("tables", "counts", "cell"),
    [("", {"paper": 3}, "3"), ("", {}, "…"),
     ("[accounts.backstop]\nenabled = false\n", {"paper": 0}, "off")],
)  # fmt: skip
async def test_live_table_when_counts_known_then_backstops_column_shows_them(
    tmp_path: Path, tables: str, counts: dict[str, int], cell: str
) -> None:
    service = await _cycle_once(write_config(tmp_path, tables=tables))
    console = Console(width=220, record=True)

    console.print(_live_table([service], counts))

    text = console.export_text()
    header = next(line for line in text.splitlines() if "account" in line)
    names = [name.strip() for name in header.split("┃")[1:-1]]
    [row] = [line for line in text.splitlines() if "│ paper" in line]
    cells = [value.strip() for value in row.split("│")[1:-1]]
    assert cells[names.index("backstops")] == cell


class BlindStopsVenue(SimulatedExchange):
    """The simulated venue, except that it cannot list resting stops (a key without
    the right, a venue outage on that endpoint)."""

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        raise TemporaryError("stop listing timed out")


async def _blind_service(tmp_path: Path) -> tuple[AccountService, Journal]:
    account = load_config(write_config(tmp_path)).accounts[0]
    venue = BlindStopsVenue(
        markets=binance_usdm_markets(), clock=lambda: datetime.now(UTC),
        derivatives=Decimal(10000), source=Decimal(0), account=account.name,
    )  # fmt: skip
    venue.set_mark(BTC, Decimal(50000))
    venue.open_position(BTC, Side.LONG, Decimal("0.6"))
    journal = await Journal.open("sqlite://")
    return AccountService(
        build_runtime(account, venue), journal, lambda: datetime.now(UTC)
    ), journal


async def test_check_when_venue_cannot_list_stops_then_the_backstop_line_fails_the_check(
    tmp_path: Path,
) -> None:
    service, journal = await _blind_service(tmp_path)
    account = load_config(write_config(tmp_path)).accounts[0]
    try:
        lines, failures = await _check_backstops(account, service.runtime.exchange, journal)
    finally:
        await journal.close()

    assert lines == ["backstop: FAILED TemporaryError: stop listing timed out"]
    assert failures == 1


async def test_plan_json_when_venue_cannot_list_stops_then_error_in_the_backstops_object(
    tmp_path: Path,
) -> None:
    service, journal = await _blind_service(tmp_path)
    account = load_config(write_config(tmp_path)).accounts[0]
    try:
        shown, lines = await _plan_backstops(account, service)
    finally:
        await journal.close()

    assert shown["enabled"] is True
    assert shown["error"] == "stop listing timed out"
    assert shown["desired"] == [] and shown["changes"]["place"] == []
    assert lines == ["backstop: FAILED TemporaryError: stop listing timed out"]


async def test_run_when_live_table_then_backstops_column_counts_what_the_journal_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = Daemon(load_config(write_config(tmp_path)))
    running = asyncio.create_task(_run_daemon(daemon, live=True, backstop_seconds=0.2))
    try:
        for _ in range(100):
            journal = daemon.journal
            if journal is not None and len(await journal.resting_stops("paper")) == 3:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.6)  # a count and a refresh after the ladder was journaled
    finally:
        daemon.stop.set()
        assert await running == 0
    # The final frame (at 80 columns headers are cut: "back…"); columns in their order.
    [row] = [line for line in capsys.readouterr().out.splitlines() if "│ paper" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[6] == "3"
