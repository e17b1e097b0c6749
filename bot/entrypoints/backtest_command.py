"""`levbot backtest`: the command-line face of the replay (DESIGN.md §8)."""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.backtest.policies import POLICY_NAMES
from bot.backtest.report import load_plotting, write_outputs
from bot.backtest.runner import PolicyResult, Scenario, ScenarioError, run_backtest
from bot.domain.models import MarginMode, Side
from bot.domain.targets import Target, TargetError
from bot.exchange.sim.prices import (
    FundingRate,
    PriceFileError,
    PriceSeries,
    load_funding,
    load_prices,
)

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_interval(text: str) -> int:
    """'5m' -> 300000 ms. Units s, m, h, d."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if match is None or int(match.group(1)) <= 0:
        raise ScenarioError(f"--interval {text!r}: use a number and a unit, like 1m, 5m, 1h")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _decimal(flag: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ScenarioError(f"{flag} {text!r}: not a number") from None
    if not value.is_finite():
        raise ScenarioError(f"{flag} {text!r}: not a finite number")
    return value


def _guess_symbol(path: Path) -> str:
    name = path.name.upper()
    return "ETH/USDT:USDT" if "ETH" in name else "BTC/USDT:USDT"


def backtest(
    prices: Annotated[
        Path,
        typer.Option(
            help="Candles: CSV timestamp,open,high,low,close,volume (ms, UTC) or freqtrade JSON."
        ),
    ],
    target: Annotated[str, typer.Option(help="Target leverage T.")],
    min_: Annotated[str, typer.Option("--min", help="Lower band edge (re-lever below it).")],
    max_: Annotated[str, typer.Option("--max", help="Upper band edge (de-lever above it).")],
    out: Annotated[
        Path, typer.Option(help="Directory for summary.json, per-policy CSVs, report.png.")
    ],
    funding: Annotated[
        Path | None, typer.Option(help="Funding CSV timestamp,funding_rate.")
    ] = None,
    symbol: Annotated[
        str | None, typer.Option(help="Market, e.g. BTC/USDT:USDT (default: from the file name).")
    ] = None,
    side: Annotated[
        Side, typer.Option(help="Side of the position opened at the first close.")
    ] = Side.LONG,
    margin_mode: Annotated[MarginMode, typer.Option(help="cross or isolated.")] = MarginMode.CROSS,
    equity: Annotated[str, typer.Option(help="Derivatives wallet at the start.")] = "10000",
    reserve: Annotated[
        str, typer.Option(help="Source (spot/funding) wallet at the start.")
    ] = "5000",
    interval: Annotated[
        str | None, typer.Option(help="Cycle interval, e.g. 5m (default: the bar size).")
    ] = None,
    fee: Annotated[str, typer.Option(help="Taker fee rate.")] = "0.0005",
    slippage: Annotated[str, typer.Option(help="Market-order slippage rate.")] = "0.0005",
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="Policy to run (repeat): levbot, levbot-poll, none, auto-margin, periodic. "
            "Default: all."
        ),
    ] = None,
    outage: Annotated[
        tuple[str, str] | None,
        typer.Option(
            metavar="START END",
            help="The daemon is down from START until END (ISO times, UTC, e.g. "
            "2021-05-19T00:00 2021-05-20T00:00): no poll, no stream; only orders resting "
            "at the exchange act.",
        ),
    ] = None,
    release_excess: Annotated[
        bool,
        typer.Option(
            help="Let the levbot policy move surplus collateral back to the reserve below the band."
        ),
    ] = True,
    plot: Annotated[bool, typer.Option(help="Draw report.png.")] = True,
) -> None:
    """Replay a price file through levbot and the baseline policies, side by side."""
    console = Console(stderr=True)
    try:
        series = load_prices(prices)
        rates: Sequence[FundingRate] = load_funding(funding) if funding is not None else ()
        scenario = _scenario(
            series, prices, target, min_, max_, symbol, side, margin_mode, equity, reserve,
            interval, fee, slippage, tuple(policy or POLICY_NAMES), release_excess,
            parse_outage(outage, series),
        )  # fmt: skip
    except TargetError as error:
        flag = {"leverage": "--target"}.get(error.field_name, f"--{error.field_name}")
        typer.echo(f"error: {flag} {error.value}: {error.rule}", err=True)
        raise typer.Exit(2) from None
    except (PriceFileError, ScenarioError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    problem = _unwritable(out)
    if problem is not None:
        # Checked before the run: a long replay must not end in a traceback over a typo.
        typer.echo(f"error: --out {out}: {problem}", err=True)
        raise typer.Exit(2)
    for stamp in series.clamped:
        typer.echo(
            f"note: bad tick at {stamp} clamped (a one-off print the mark never saw)", err=True
        )

    results = _run_with_progress(scenario, series, rates, console, plot)
    write_outputs(out, scenario, results, plot=plot)
    stdout = Console() if sys.stdout.isatty() else Console(width=200)
    stdout.print(_summary_table(results, scenario.symbol.split(":")[-1]))
    stdout.print(f"wrote {out}/summary.json, per-policy CSVs" + (", report.png" if plot else ""))


def parse_outage(window: tuple[str, str] | None, series: PriceSeries) -> tuple[int, int] | None:
    """`--outage START END` as [start, end) in ms; naive times are UTC."""
    if window is None:
        return None
    start, end = (_instant(text) for text in window)
    if end <= start:
        raise ScenarioError(f"--outage {window[0]} {window[1]}: END must be after START")
    if series.bars:
        first, last = series.bars[0].timestamp, series.bars[-1].timestamp
        if end <= first or start > last:
            raise ScenarioError(
                f"--outage {window[0]} {window[1]}: outside the price file "
                f"({_stamp(first)} to {_stamp(last)})"
            )
    return start, end


def _instant(text: str) -> int:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(
            f"--outage {text!r}: not an ISO time (use e.g. 2021-05-19T00:00, UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _stamp(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


def _unwritable(out: Path) -> str | None:
    """Why the outputs cannot be written under `out`, or None. Creates the directory."""
    if out.exists() and not out.is_dir():
        return "exists and is not a directory; give a directory for the outputs"
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Permissions alone do not tell (root, ACLs, read-only mounts): write a probe.
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        return f"cannot write there ({error.strerror or error})"
    return None


def _scenario(
    series: PriceSeries,
    prices: Path,
    target: str,
    min_: str,
    max_: str,
    symbol: str | None,
    side: Side,
    margin_mode: MarginMode,
    equity: str,
    reserve: str,
    interval: str | None,
    fee: str,
    slippage: str,
    names: tuple[str, ...],
    release_excess: bool,
    outage: tuple[int, int] | None = None,
) -> Scenario:
    band = Target(_decimal("--target", target), _decimal("--min", min_), _decimal("--max", max_))
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        raise ScenarioError(f"--policy {unknown[0]}: unknown ({', '.join(POLICY_NAMES)})")
    start_equity = _decimal("--equity", equity)
    start_reserve = _decimal("--reserve", reserve)
    if start_equity <= 0:
        raise ScenarioError(f"--equity {equity}: must be positive")
    if start_reserve < 0:
        raise ScenarioError(f"--reserve {reserve}: must not be negative")
    fee_rate, slippage_rate = _decimal("--fee", fee), _decimal("--slippage", slippage)
    if not 0 <= fee_rate < Decimal("0.1"):
        raise ScenarioError(f"--fee {fee}: must be in [0, 0.1)")
    if not 0 <= slippage_rate < Decimal("0.1"):
        raise ScenarioError(f"--slippage {slippage}: must be in [0, 0.1)")
    scenario = Scenario(
        symbol=symbol or _guess_symbol(prices),
        side=side,
        target=band,
        margin_mode=margin_mode,
        equity=start_equity,
        reserve=start_reserve,
        interval_ms=parse_interval(interval) if interval else max(series.bar_ms, 1),
        fee=fee_rate,
        slippage=slippage_rate,
        policies=names,
        release_excess=release_excess,
        outage=outage,
    )
    scenario.market()
    return scenario


def _run_with_progress(
    scenario: Scenario,
    series: PriceSeries,
    rates: Sequence[FundingRate],
    console: Console,
    plot: bool,
) -> dict[str, PolicyResult]:
    total = len(series.bars) * len(scenario.policies)
    # Matplotlib's import waits on the replay's forked policy rather than after it.
    meanwhile = load_plotting if plot else None
    if not sys.stderr.isatty():
        return run_backtest(scenario, series, rates, meanwhile=meanwhile)
    # Only a terminal shows a progress bar: a piped run does not import it.
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("backtest", total=total)
        counter = {"n": 0}

        def tick(name: str) -> None:
            counter["n"] += 1
            if counter["n"] % 500 == 0:
                progress.update(task, completed=counter["n"], description=f"backtest: {name}")

        results = run_backtest(scenario, series, rates, on_bar=tick, meanwhile=meanwhile)
        progress.update(task, completed=total)
    return results


def _summary_table(results: dict[str, PolicyResult], settle: str) -> Table:
    """The summary.json figures a trader reads first, with their units."""
    table = Table(title="backtest summary")
    columns = ("liquidated", "max leverage", "time in band", "min margin headroom", "transfers",
               "orders", "backstop fills", "stream triggers", "fees paid", "slippage cost",
               "final equity")  # fmt: skip
    table.add_column("policy")
    for column in columns:
        table.add_column(column, justify="right")
    for name, result in results.items():
        summary = result.summary()
        liquidated = summary["liquidation_time"]
        table.add_row(
            name,
            "no" if liquidated is None else f"{str(liquidated).replace('T', ' ')[:16]} UTC",
            f"{_float(summary['max_leverage']):.2f}x",
            f"{_float(summary['time_in_band']) * 100:.1f}%",
            f"{_float(summary['min_margin_headroom']) * 100:.1f}%",
            str(summary["transfers"]),
            str(summary["orders"]),
            str(summary["backstop_fills"]),
            str(summary["stream_triggers"]),
            *(f"{_float(summary[key]):,.2f} {settle}"
              for key in ("fees_paid", "slippage_cost", "final_equity")),
        )  # fmt: skip
    return table


def _float(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)
