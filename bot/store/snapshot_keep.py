"""Which snapshots the journal keeps: a changed account, or a heartbeat.

A steady account's snapshot is the same cycle after cycle; storing every one costs most
of a steady cycle's writes and tells the reader nothing new. A snapshot is kept when
something moved beyond the tolerance (a position's size, a balance, the notional, the
margin ratio), or when the account's newest kept snapshot is `heartbeat` old, so
`status` and `/chart` always have a recent point and the newest snapshot's time says
when the account was last seen as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.domain.models import AccountSnapshot

# Relative change that counts (0.1%): a leverage of 3.000 moving to 3.003.
SNAPSHOT_TOLERANCE = Decimal("0.001")
SNAPSHOT_HEARTBEAT = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SnapshotFigures:
    """What a kept snapshot is compared by."""

    taken_at: datetime
    legs: dict[tuple[str, str, str], tuple[Decimal, Decimal, Decimal | None]]
    amounts: tuple[Decimal | None, ...]
    source: Decimal | None


def snapshot_figures(
    snapshot: AccountSnapshot,
    equity: Decimal,
    notional: Decimal,
    margin_ratio: Decimal | None,
) -> SnapshotFigures:
    legs = {
        (p.symbol, p.side.value, p.margin_mode.value): (
            p.contracts, p.isolated_margin, p.mark_price,
        )
        for p in snapshot.positions
    }  # fmt: skip
    derivatives = snapshot.derivatives
    amounts = (derivatives.total, derivatives.free, equity, notional, margin_ratio)
    source = None if snapshot.source is None else snapshot.source.total
    return SnapshotFigures(snapshot.taken_at, legs, amounts, source)


@dataclass(frozen=True, slots=True)
class SnapshotKeep:
    """The rule: keep on a change beyond `tolerance` (relative), or every `heartbeat`."""

    tolerance: Decimal = SNAPSHOT_TOLERANCE
    heartbeat: timedelta = SNAPSHOT_HEARTBEAT

    def worth_keeping(self, new: SnapshotFigures, kept: SnapshotFigures | None) -> bool:
        if kept is None or new.taken_at - kept.taken_at >= self.heartbeat:
            return True
        if new.taken_at < kept.taken_at or new.legs.keys() != kept.legs.keys():
            return True
        for leg, (contracts, margin, mark) in new.legs.items():
            old_contracts, old_margin, old_mark = kept.legs[leg]
            if contracts != old_contracts or self._moved(margin, old_margin):
                return True
            if self._moved(mark, old_mark):
                return True
        if any(self._moved(a, b) for a, b in zip(new.amounts, kept.amounts, strict=True)):
            return True
        # The source wallet is read only when a plan may draw on it: unread is no change.
        return new.source is not None and self._moved(new.source, kept.source)

    def _moved(self, new: Decimal | None, old: Decimal | None) -> bool:
        if new is None or old is None:
            return new is not old
        if new == old:
            return False
        scale = max(abs(new), abs(old))
        return abs(new - old) > self.tolerance * scale
