"""The /chart picture: leverage against the band, with the actions marked."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from bot.domain.targets import Target
from bot.store.records import ActionRecord, SnapshotRecord


def leverage_chart(
    account: str,
    snapshots: Sequence[SnapshotRecord],
    actions: Sequence[ActionRecord],
    target: Target,
    window: str,
) -> bytes:
    """A PNG (bytes). Rendering is CPU work: call it in a thread from async code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    points = [(s.taken_at, float(s.leverage)) for s in snapshots if s.leverage is not None]
    if points:
        times = _axis_times([p[0] for p in points])
        axis.plot(times, [p[1] for p in points], lw=1.2, label="leverage")
    for level, style in ((target.min, "--"), (target.leverage, "-"), (target.max, "--")):
        axis.axhline(float(level), color="tab:red", ls=style, lw=0.8, alpha=0.8)
    done = [a for a in actions if not a.dry_run and a.leverage_before is not None]
    if done:
        axis.scatter(
            _axis_times([a.created_at for a in done]),
            [float(a.leverage_before or 0) for a in done],
            marker="v", color="tab:orange", zorder=3, label="actions",
        )  # fmt: skip
    axis.set_title(f"{account}: leverage, last {window}")
    axis.set_ylabel("leverage")
    axis.set_ylim(bottom=0)
    axis.legend(loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _axis_times(times: Sequence[datetime]) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    """UTC datetimes as numpy datetime64 (naive UTC: numpy rejects time zones)."""
    import numpy as np

    return np.array([t.astimezone(UTC).replace(tzinfo=None) for t in times], dtype="datetime64[ms]")
