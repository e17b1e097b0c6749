"""The /chart picture: leverage against the band, with the actions marked."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

from bot.domain.actions import Rule
from bot.domain.targets import Target
from bot.store.records import ActionRecord, SnapshotRecord

# Marker and colour per kind of action, so a glance tells de-levering from re-levering.
# The backstop work (issue 11 §3) draws its stop-order fills as "backstop fill": map its
# records in `marker_category`; the legend shows an entry only for what was drawn.
MARKERS: dict[str, tuple[str, str, str]] = {
    "de-lever": ("v", "tab:orange", "de-lever"),
    "re-lever": ("^", "tab:green", "re-lever"),
    "emergency": ("X", "tab:red", "emergency"),
    "backstop fill": ("*", "tab:purple", "backstop fill"),
}


def marker_category(action: ActionRecord) -> str:
    """Which legend entry an action is drawn as (the planner rule that produced it)."""
    if action.rule == Rule.EMERGENCY.value:
        return "emergency"
    if action.rule == Rule.RELEVER.value:
        return "re-lever"
    return "de-lever"


def leverage_chart(
    account: str,
    snapshots: Sequence[SnapshotRecord],
    actions: Sequence[ActionRecord],
    target: Target,
    window: str,
) -> bytes:
    """A PNG (bytes). Rendering is CPU work: call it in a thread from async code."""
    figure = chart_figure(account, snapshots, actions, target, window)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def chart_figure(
    account: str,
    snapshots: Sequence[SnapshotRecord],
    actions: Sequence[ActionRecord],
    target: Target,
    window: str,
) -> Figure:
    """The /chart figure. A `Figure` without pyplot: no global state, safe in a thread."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5))
    axis = figure.subplots()
    low, high = float(target.min), float(target.max)
    axis.axhspan(low, high, color="tab:red", alpha=0.08, lw=0,
                 label=f"band {target.min}-{target.max}x")  # fmt: skip
    for level in (target.min, target.max):
        axis.axhline(float(level), color="tab:red", ls="--", lw=0.8, alpha=0.8)
    axis.axhline(float(target.leverage), color="tab:red", lw=0.8, alpha=0.8,
                 label=f"target {target.leverage}x")  # fmt: skip
    points = [(s.taken_at, float(s.leverage)) for s in snapshots if s.leverage is not None]
    if points:
        axis.plot(_axis_times([p[0] for p in points]), [p[1] for p in points], lw=1.2,
                  color="tab:blue", label="leverage", zorder=3)  # fmt: skip
    done = [a for a in actions if not a.dry_run and a.leverage_before is not None]
    for category, (marker, colour, label) in MARKERS.items():
        drawn = [a for a in done if marker_category(a) == category]
        if drawn:
            axis.scatter(
                _axis_times([a.created_at for a in drawn]),
                [float(a.leverage_before or 0) for a in drawn],
                marker=marker, color=colour, s=40, zorder=4, label=label,
            )  # fmt: skip
    # Frame the band and what was seen, not 0..peak: the band is what the owner reads.
    seen = [p[1] for p in points] + [float(a.leverage_before or 0) for a in done]
    bottom, top = min([low, *seen]), max([high, *seen])
    pad = max((top - bottom) * 0.1, 0.2)
    axis.set_ylim(max(bottom - pad, 0), top + pad)
    axis.set_title(f"{account}: leverage, last {window}")
    axis.set_ylabel("leverage (x)")
    axis.set_xlabel("time (UTC)")
    # Day and month on every tick: a 7d window spans a month boundary.
    formatter = mdates.DateFormatter("%d %b %H:%M", tz=UTC)  # type: ignore[no-untyped-call]
    axis.xaxis.set_major_formatter(formatter)
    # Outside the plot: inside, it covers the first hours of the window.
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    figure.autofmt_xdate(rotation=30)
    figure.tight_layout()
    return figure


def _axis_times(times: Sequence[datetime]) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    """UTC datetimes as numpy datetime64 (naive UTC: numpy rejects time zones)."""
    import numpy as np

    return np.array([t.astimezone(UTC).replace(tzinfo=None) for t in times], dtype="datetime64[ms]")
