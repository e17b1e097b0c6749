"""Write a backtest's outputs: summary.json, <policy>/actions.csv, timeline.csv, report.png."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bot.backtest.policies import PolicyName
from bot.backtest.runner import PolicyResult, Scenario

ACTION_COLUMNS = ("timestamp", "kind", "symbol", "side", "amount", "price", "notional", "fee",
                  "reason")  # fmt: skip
TIMELINE_COLUMNS = ("timestamp", "price", "wallet", "equity", "notional", "leverage",
                    "margin_ratio", "source_balance")  # fmt: skip


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = f"{value:.8f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def write_outputs(
    out: Path, scenario: Scenario, results: Mapping[str, PolicyResult], plot: bool = True
) -> None:
    """Write every file of DESIGN.md §8 under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {name: result.summary() for name, result in results.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, result in results.items():
        folder = out / name
        folder.mkdir(exist_ok=True)
        with (folder / "actions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(ACTION_COLUMNS)
            for row in result.actions:
                writer.writerow([_cell(getattr(row, c)) for c in ACTION_COLUMNS])
        with (folder / "timeline.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(TIMELINE_COLUMNS)
            for line in result.timeline:
                writer.writerow([_cell(getattr(line, c)) for c in TIMELINE_COLUMNS])
    if plot:
        plot_report(out / "report.png", scenario, results)


def plot_report(path: Path, scenario: Scenario, results: Mapping[str, PolicyResult]) -> None:
    """Price, leverage against the band, and actions, for every policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (price_axis, leverage_axis) = plt.subplots(
        2, 1, figsize=(12, 8), sharex=True, height_ratios=(1, 1.4)
    )
    longest = max(results.values(), key=lambda r: len(r.timeline))
    times = [_time(row.timestamp) for row in longest.timeline]
    price_axis.plot(times, [float(row.price) for row in longest.timeline], color="black", lw=0.8)
    price_axis.set_ylabel(f"{scenario.symbol} close")
    price_axis.set_title(
        f"{scenario.side.value} {scenario.symbol}, target {scenario.target.leverage} "
        f"(band {scenario.target.min}-{scenario.target.max})"
    )
    colours: dict[str, str] = {
        PolicyName.LEVBOT: "tab:blue",
        PolicyName.NONE: "tab:gray",
        PolicyName.AUTO_MARGIN: "tab:orange",
        PolicyName.PERIODIC: "tab:green",
    }
    for name, result in results.items():
        colour = colours.get(name)
        xs = [_time(r.timestamp) for r in result.timeline if r.leverage is not None]
        ys = [float(r.leverage) for r in result.timeline if r.leverage is not None]
        leverage_axis.plot(xs, ys, lw=0.9, label=name, color=colour)
        by_time = {r.timestamp: r for r in result.timeline}
        acted = [by_time[a.timestamp] for a in result.actions if a.timestamp in by_time]
        if acted:
            leverage_axis.scatter(
                [_time(r.timestamp) for r in acted],
                [float(r.leverage or 0) for r in acted],
                s=14, color=colour, marker="v", zorder=3,
            )  # fmt: skip
            price_axis.scatter(
                [_time(r.timestamp) for r in acted],
                [float(r.price) for r in acted],
                s=10, color=colour, marker="v", zorder=3,
            )  # fmt: skip
        if result.liquidation_time is not None:
            leverage_axis.axvline(_time(result.liquidation_time), color=colour, ls=":", lw=1)
    for level, style in ((scenario.target.min, "--"), (scenario.target.leverage, "-"),
                         (scenario.target.max, "--")):  # fmt: skip
        leverage_axis.axhline(float(level), color="red", ls=style, lw=0.7, alpha=0.7)
    # Baselines can spike to 100x+ before a liquidation; clip so the band stays readable.
    ceiling = float(scenario.target.max) * 3
    peak = max((float(r.leverage) for res in results.values() for r in res.timeline
                if r.leverage is not None), default=0.0)  # fmt: skip
    label = "leverage (after each cycle)"
    if peak > ceiling:
        label += f", clipped at {ceiling:g}x (peak {peak:.0f}x)"
    leverage_axis.set_ylabel(label)
    leverage_axis.legend(loc="upper left")
    leverage_axis.set_ylim(0, min(max(peak * 1.05, float(scenario.target.max) * 1.2), ceiling))
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _time(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp / 1000, UTC)
