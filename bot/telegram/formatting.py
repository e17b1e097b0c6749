"""Turning control-layer values into chat text (HTML parse mode, user text escaped)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape

from bot.app.control import AccountStatus, resting_line
from bot.domain.actions import Plan
from bot.domain.leverage import isolated_equity, notional
from bot.domain.models import AccountSnapshot, MarginMode
from bot.store.records import ActionRecord, SnapshotRecord

MAX_MESSAGE = 4096


def esc(value: object) -> str:
    """Escape anything for Telegram's HTML parse mode."""
    return escape(str(value), quote=False)


def num(value: Decimal | None, places: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{places}f}"


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Split on line breaks into chunks Telegram accepts (hard-cut overlong lines)."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        candidate = line if not current else f"{current}\n{line}"
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current or not chunks:
        chunks.append(current)
    return chunks


def status_text(rows: Sequence[AccountStatus], now: datetime) -> str:
    if not rows:
        return "No accounts configured."
    lines = []
    for row in rows:
        snap = row.snapshot
        head = f"<b>{esc(row.account)}</b> — {esc(row.state)}"
        band = f"{row.band[0]} / <b>{row.target}</b> / {row.band[1]}"
        if snap is None:
            lines.append(f"{head}\nno snapshot yet; band {band}\n{backstops_text(row)}")
            continue
        lines.append(
            f"{head}\n"
            f"equity {num(snap.equity)} {esc(snap.settle)}, notional {num(snap.notional)}\n"
            f"leverage <b>{num(snap.leverage)}</b> (band {band})\n"
            f"margin ratio {num(snap.margin_ratio, 3)}, liquidation "
            f"{'n/a' if row.liquidation_distance is None else f'{row.liquidation_distance:.1%}'}"
            f" away\nlast cycle {ago(row.last_cycle_at, now)}"
            f" ({esc(row.last_cycle_status or 'none')})\n{backstops_text(row)}"
        )
    return "\n\n".join(lines)


def backstops_text(row: AccountStatus) -> str:
    """The stops levbot believes rest at the venue for this account (from the journal)."""
    if not row.backstops:
        return "backstops: off" if not row.backstop_enabled else "backstops: none resting"
    lines = [f"backstops resting: {len(row.backstops)}"]
    lines += [f"🛡 {esc(resting_line(record))}" for record in row.backstops]
    return "\n".join(lines)


def backstop_changes_text(changes: Sequence[str], notes: Sequence[str] = ()) -> str:
    """What the next cycle would do to the resting ladder, one short line each."""
    lines = ["Backstops:", *(f"• {esc(line)}" for line in changes)]
    lines += [f"<i>{esc(note)}</i>" for note in notes]
    return "\n".join(lines)


def positions_text(items: Sequence[tuple[str, SnapshotRecord | None]]) -> str:
    blocks = []
    for account, snap in items:
        if snap is None:
            blocks.append(f"<b>{esc(account)}</b>: no snapshot yet")
            continue
        if not snap.positions:
            blocks.append(f"<b>{esc(account)}</b>: no open positions")
            continue
        lines = [f"<b>{esc(account)}</b> ({snap.taken_at:%H:%M:%S} UTC)"]
        for p in snap.positions:
            mode = p.margin_mode.value
            # Without a mark price the venue gave no notional or PnL to show.
            extra = ""
            if p.margin_mode is MarginMode.ISOLATED:
                equity = isolated_equity(p) if p.priced else None
                lev = notional(p) / equity if equity is not None and equity > 0 else None
                extra = f", margin {num(p.isolated_margin)}, leverage {num(lev)}"
            liq = "n/a" if p.liquidation_price is None else num(p.liquidation_price)
            lines.append(
                f"• {esc(p.symbol)} {p.side.value} {p.contracts} @ {num(p.entry_price)} "
                f"(mark {num(p.mark_price)}, notional {num(notional(p) if p.priced else None)}, "
                f"{mode}{extra}, liq {liq})"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def plan_text(account: str, snapshot: AccountSnapshot, plan: Plan, leverage: Decimal | None) -> str:
    lines = [f"<b>{esc(account)}</b>: leverage {num(leverage)}"]
    for decision in plan.decisions:
        lines.append(
            f"scope {esc(decision.scope)}: {num(decision.leverage)} vs band "
            f"{decision.band[0]}–{decision.band[1]} (target {decision.target})"
            + (f" → {decision.rule.value}" if decision.rule else " → in band")
        )
    if plan.actions:
        lines.append("Would do:")
        lines.extend(
            f"• {esc(a.reason.describe())}: {a.kind.value} {a.amount}" for a in plan.actions
        )
    else:
        lines.append("Nothing to do right now.")
    notes = [*plan.notes, *(n for d in plan.decisions for n in d.notes)]
    lines.extend(f"<i>{esc(n)}</i>" for n in notes)
    return "\n".join(lines)


def history_text(actions: Sequence[ActionRecord]) -> str:
    if not actions:
        return "No actions journaled yet."
    lines = []
    for a in actions:
        result = "dry run" if a.dry_run else a.status.value
        if a.error and not a.dry_run:
            result += f" ({esc(a.error)})"
        lines.append(
            f"{a.created_at:%m-%d %H:%M} <b>{esc(a.account)}</b> {a.kind.value} {a.amount} "
            f"{esc(a.symbol)}: {result}\n  <i>{esc(a.reason)}</i>"
        )
    return "\n".join(lines)
