"""Write a backtest's outputs: summary.json, <policy>/actions.csv, timeline.csv, report.png."""

from __future__ import annotations

import bisect
import csv
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from bot.backtest.policies import PolicyName
from bot.backtest.results import ActionRow, PolicyResult, ReplayEvent, TimelineRow
from bot.backtest.runner import Scenario
from bot.domain.actions import ActionKind, Rule

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    import numpy as np
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

ACTION_COLUMNS = ("timestamp", "kind", "symbol", "side", "amount", "price", "notional", "fee",
                  "reason")  # fmt: skip
TIMELINE_COLUMNS = ("timestamp", "price", "wallet", "equity", "notional", "leverage",
                    "margin_ratio", "source_balance")  # fmt: skip
_TIMELINE_ROW = ",".join(["{}"] * len(TIMELINE_COLUMNS)) + "\r\n"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = f"{value:.8f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _plain_column(values: Sequence[object]) -> list[str] | None:
    """`_cell` of each value when the column is ints, or finite Decimals with a few None,
    formatted by the same calls without one Python call per cell (a 60,000-bar timeline of
    four policies is two million cells); None for any other column."""
    present = [value for value in values if value is not None]
    kinds = set(map(type, present))
    if kinds == {int}:
        texts: Iterable[str] = map(str, present)
    elif kinds == {Decimal} and all(map(Decimal.is_finite, cast("list[Decimal]", present))):
        # A finite Decimal's ".8f" always has a point, so `_cell`'s test always holds.
        fixed = map(format, present, itertools.repeat(".8f"))
        zeros = map(str.rstrip, fixed, itertools.repeat("0"))
        texts = map(str.rstrip, zeros, itertools.repeat("."))
    else:
        return None
    if len(present) == len(values):
        return list(texts)
    given = iter(texts)
    return ["" if value is None else next(given) for value in values]


def _write_timeline(handle: TextIO, timeline: Sequence[TimelineRow]) -> None:
    writer = csv.writer(handle)
    writer.writerow(TIMELINE_COLUMNS)
    values = [list(map(attrgetter(c), timeline)) for c in TIMELINE_COLUMNS]
    plain = [text for column in values if (text := _plain_column(column)) is not None]
    if len(plain) == len(values):
        # Digits, signs and points: the csv module would quote none of it. Its rows, ended
        # as it ends them.
        handle.writelines(map(_TIMELINE_ROW.format, *plain))
    else:
        writer.writerows([[_cell(value) for value in row] for row in zip(*values, strict=True)])


def write_outputs(
    out: Path, scenario: Scenario, results: Mapping[str, PolicyResult], plot: bool = True
) -> None:
    """Write every file of DESIGN.md §8 under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {name: result.summary() for name, result in results.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not plot:
        _write_csvs(out, results)
        return
    # The CSVs (about 1 s of Decimal formatting for 60,000 bars x 4 policies) are written
    # by a forked child while this process draws report.png (about 2 s with Matplotlib's
    # import): a core each. If the child did not write them all, they are written here,
    # so any error is this process's own, as before.
    child = _fork(_write_csvs_or_exit, out, results)
    try:
        plot_report(out / "report.png", scenario, results)
    finally:
        if child is not None:
            child.join()
    if child is None or child.exitcode != 0:
        _write_csvs(out, results)


def _fork(target: Callable[..., None], *args: object) -> BaseProcess | None:
    """`target(*args)` started in a forked child (which shares, not copies, the results),
    or None where this platform cannot fork."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    child = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
    child.start()
    return child


def _write_csvs_or_exit(out: Path, results: Mapping[str, PolicyResult]) -> None:
    try:
        _write_csvs(out, results)
    except Exception:
        # Quietly: the parent writes them again and raises the error itself.
        raise SystemExit(1) from None


def _write_csvs(out: Path, results: Mapping[str, PolicyResult]) -> None:
    for name, result in results.items():
        folder = out / name
        folder.mkdir(exist_ok=True)
        with (folder / "actions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(ACTION_COLUMNS)
            for row in result.actions:
                writer.writerow([_cell(getattr(row, c)) for c in ACTION_COLUMNS])
        with (folder / "timeline.csv").open("w", newline="") as handle:
            _write_timeline(handle, result.timeline)


# What each marker shape means. Colour says which policy acted, shape says what it did.
# Backstop fills and stream triggers are drawn at their own price (the fill, the crossing
# mark), the others at the cycle's close.
MARKERS: dict[str, tuple[str, str]] = {
    "transfer": ("^", "collateral in (transfer / add margin)"),
    "reduce": ("v", "reduce-only order"),
    "re-lever": ("o", "re-lever (collateral out / exposure in)"),
    "emergency": ("X", "emergency action"),
    "backstop fill": ("*", "backstop fill (resting stop at the exchange)"),
    "stream trigger": ("D", "stream trigger (cycle at the crossing mark)"),
}
AT_OWN_PRICE = ("backstop fill", "stream trigger")
# Shown in the legend even when a run has none of them: "no emergency" is information.
ALWAYS_IN_LEGEND = ("transfer", "reduce", "re-lever", "emergency")
COLOURS: dict[str, str] = {
    PolicyName.LEVBOT: "tab:blue",
    PolicyName.LEVBOT_POLL: "tab:purple",
    PolicyName.NONE: "black",
    PolicyName.AUTO_MARGIN: "tab:orange",
    PolicyName.PERIODIC: "tab:green",
}


def marker_category(row: ActionRow) -> str:
    """Which legend entry an action is drawn as."""
    if row.kind == ActionKind.BACKSTOP_FILL:
        return "backstop fill"
    if row.kind == ReplayEvent.STREAM_TRIGGER:
        return "stream trigger"
    if row.reason.startswith(Rule.EMERGENCY.value):
        return "emergency"
    if row.reason.startswith(Rule.RELEVER.value) or row.kind in (
        ActionKind.TRANSFER_OUT, ActionKind.REDUCE_MARGIN, ActionKind.INCREASE_ORDER,
    ):  # fmt: skip
        return "re-lever"
    if row.kind == ActionKind.REDUCE_ORDER:
        return "reduce"
    return "transfer"


def load_plotting() -> None:
    """Import what drawing report.png needs (about a second of Matplotlib), ahead of the
    drawing: a replay that waits for its forked policy does it meanwhile."""
    import matplotlib.dates
    import matplotlib.figure
    import matplotlib.lines
    import matplotlib.patches  # noqa: F401


def plot_report(path: Path, scenario: Scenario, results: Mapping[str, PolicyResult]) -> None:
    """Draw `report_figure` into a PNG."""
    report_figure(scenario, results).savefig(path, dpi=110)


def report_figure(scenario: Scenario, results: Mapping[str, PolicyResult]) -> Figure:
    """Price, leverage against the band, and equity + source wallet, for every policy.

    A `Figure` without pyplot: no global state, safe off the main thread.
    """
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    settle = scenario.symbol.split(":")[-1]
    figure = Figure(figsize=(12, 11))
    price_axis, leverage_axis, equity_axis = figure.subplots(
        3, 1, sharex=True, height_ratios=(1, 1.4, 1)
    )
    longest = max(results.values(), key=lambda r: len(r.timeline))
    # Lines get their times as numpy datetime64: Matplotlib converts those to its floats
    # in one array operation, aware datetimes one by one (each time a line is re-cached),
    # which took most of the drawing of a 60,000-bar run. The same floats either way.
    # The axis is told its dates are UTC, as a first datetime would have told it.
    if longest.timeline:
        price_axis.xaxis.update_units([_time(longest.timeline[0].timestamp)])
    times = _dates(list(map(attrgetter("timestamp"), longest.timeline)))
    closes = list(map(float, map(attrgetter("price"), longest.timeline)))
    price_axis.plot(times, closes, color="black", lw=0.8)
    price_axis.set_ylabel(f"{scenario.symbol} close")
    price_axis.set_title(
        f"{scenario.side.value} {scenario.symbol}, target {scenario.target.leverage}x "
        f"(band {scenario.target.min}-{scenario.target.max}x)"
    )
    drawn: set[str] = set()
    policy_lines: list[Line2D] = []
    leverages: list[list[float]] = []  # each policy's, in order: `peak` is taken from them
    for name, result in results.items():
        colour = COLOURS.get(name)
        # `none` and `auto-margin` coincide until auto-margin first adds margin: `none`
        # is drawn dashed on top so both stay visible.
        style = {"ls": (0, (4, 2)), "lw": 1.1, "zorder": 4} if name == PolicyName.NONE else {
            "ls": "-", "lw": 0.9, "zorder": 2}  # fmt: skip
        label = name
        if result.liquidation_time is not None:
            label += f" (liquidated {_time(result.liquidation_time):%Y-%m-%d %H:%M} UTC)"
        levered = [r for r in result.timeline if r.leverage is not None]
        xs = _dates(list(map(attrgetter("timestamp"), levered)))
        ys = list(map(float, map(attrgetter("leverage"), levered)))
        leverages.append(ys)
        (line,) = leverage_axis.plot(xs, ys, label=label, color=colour, **style)
        policy_lines.append(line)
        rows = result.timeline
        row_times = _dates(list(map(attrgetter("timestamp"), rows)))
        equity = list(map(float, map(attrgetter("equity"), rows)))
        equity_axis.plot(row_times, equity, color=colour, **style)
        equity_axis.plot(row_times, list(map(float, map(attrgetter("source_balance"), rows))),
                         color=colour, ls=":", lw=1.0, zorder=style["zorder"])  # fmt: skip
        for category, (marker, _) in MARKERS.items():
            points = [(a, after) for a in result.actions if marker_category(a) == category
                      for after in [_state_after(result.timeline, a)]
                      if after is not None]  # fmt: skip
            if not points:
                continue
            drawn.add(category)
            when = [_time(a.timestamp) for a, _ in points]
            leverage_axis.scatter(when, [float(r.leverage or 0) for _, r in points],
                                  s=18, color=colour, marker=marker, zorder=5)  # fmt: skip
            own = category in AT_OWN_PRICE
            price_axis.scatter(when, [float(a.price if own and a.price is not None else r.price)
                                      for a, r in points],
                               s=12, color=colour, marker=marker, zorder=5)  # fmt: skip
        if result.liquidation_time is not None:
            for axis in (price_axis, leverage_axis, equity_axis):
                axis.axvline(_time(result.liquidation_time), color=colour, ls=":", lw=1.2)
    outage: list[Patch] = []
    if scenario.outage is not None:
        start, end = (_time(t) for t in scenario.outage)
        for axis in (price_axis, leverage_axis, equity_axis):
            axis.axvspan(start, end, color="gold", alpha=0.25, lw=0, zorder=0)
        outage.append(Patch(color="gold", alpha=0.25,
                            label=f"outage {start:%d-%m %H:%M}-{end:%d-%m %H:%M} UTC "
                                  "(no poll, no stream)"))  # fmt: skip
    for level, style_ in ((scenario.target.min, "--"), (scenario.target.leverage, "-"),
                          (scenario.target.max, "--")):  # fmt: skip
        leverage_axis.axhline(float(level), color="red", ls=style_, lw=0.7, alpha=0.7)
    # Baselines can spike to 100x+ before a liquidation; clip so the band stays readable.
    ceiling = float(scenario.target.max) * 3
    peak = max(itertools.chain(*leverages), default=0.0)
    label = "leverage (x, after each cycle)"
    if peak > ceiling:
        label += f"\nclipped at {ceiling:g}x (peak {peak:.0f}x)"
    leverage_axis.set_ylabel(label)
    leverage_axis.set_ylim(0, min(max(peak * 1.05, float(scenario.target.max) * 1.2), ceiling))
    band = Line2D([], [], color="red", ls="--", lw=0.7,
                  label=f"band {scenario.target.min}-{scenario.target.max}x "
                        f"(solid: target {scenario.target.leverage}x)")  # fmt: skip
    liquidation = Line2D([], [], color="gray", ls=":", lw=1.2,
                         label="liquidation (dotted, policy colour)")  # fmt: skip
    shown = [c for c in MARKERS if c in ALWAYS_IN_LEGEND or c in drawn]
    markers = [Line2D([], [], ls="", marker=MARKERS[c][0], color="dimgray", label=MARKERS[c][1])
               for c in shown]  # fmt: skip
    first = leverage_axis.legend(handles=[*policy_lines, band], loc="upper left", fontsize=8,
                                 title="policy (line colour)", title_fontsize=8)  # fmt: skip
    leverage_axis.add_artist(first)
    leverage_axis.legend(handles=[*markers, liquidation, *outage], loc="upper right", fontsize=8,
                         title="actions (marker shape)", title_fontsize=8)  # fmt: skip
    equity_axis.set_ylabel(f"{settle}")
    equity_axis.set_title("equity per policy: derivatives (solid), source wallet (dotted)",
                          fontsize=9)  # fmt: skip
    equity_axis.legend(
        handles=[Line2D([], [], color="dimgray", lw=0.9, label="derivatives equity"),
                 Line2D([], [], color="dimgray", ls=":", lw=1.0, label="source wallet")],
        loc="upper right", fontsize=8,
    )  # fmt: skip
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    equity_axis.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    equity_axis.xaxis.set_major_formatter(formatter)
    equity_axis.set_xlabel("time (UTC)")
    figure.tight_layout()
    return figure


def _state_after(timeline: list[TimelineRow], row: ActionRow) -> TimelineRow | None:
    """The first timeline row at or after an action (a stop can fill between cycles)."""
    index = bisect.bisect_left(timeline, row.timestamp, key=lambda r: r.timestamp)
    if index < len(timeline):
        return timeline[index]
    return timeline[-1] if timeline else None


def _time(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp / 1000, UTC)


def _dates(timestamps: list[int]) -> NDArray[np.datetime64] | list[datetime]:
    """ms timestamps as the microseconds Matplotlib makes of `_time`'s datetimes. None is
    an empty list, as it was: an empty datetime64 array would make the axis a date axis."""
    import numpy as np

    if not timestamps:
        return []
    return np.array(timestamps, dtype="datetime64[ms]").astype("datetime64[us]")
