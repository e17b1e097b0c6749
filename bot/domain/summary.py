"""Whole-account figures for status lines, the journal and alerts."""

from __future__ import annotations

from bot.domain.leverage import (
    ScopeMetrics,
    cross_equity,
    isolated_equity,
    notional,
    scope_metrics,
)
from bot.domain.models import ZERO, AccountSnapshot


def account_metrics(snapshot: AccountSnapshot) -> ScopeMetrics:
    """Leverage and margin ratio of the whole account: every position over all equity.

    Equity is the cross equity (or the pooled margin balance) plus each isolated
    position's own equity, so isolated legs count with the margin they hold.
    A position without a mark price leaves leverage and margin ratio unknown (None):
    the wallet and the exposure that can be priced are reported, nothing is guessed.
    """
    priced = [p for p in snapshot.positions if p.priced]
    if len(priced) < len(snapshot.positions):
        equity = snapshot.pooled_equity
        if equity is None:
            equity = snapshot.derivatives.total
        exposure = sum((notional(p) for p in priced), ZERO)
        return ScopeMetrics(equity, exposure, None, None, None, None)
    cross = snapshot.cross_positions()
    equity = (
        snapshot.pooled_equity
        if snapshot.pooled_equity is not None
        else cross_equity(snapshot.derivatives.total, cross)
    )
    for position in snapshot.isolated_positions():
        equity += isolated_equity(position)
    return scope_metrics(equity, snapshot.positions, snapshot.markets)
