"""The journal as the executor's ActionJournal: a real plan on the simulated exchange."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from bot.app.execute import execute_plan
from bot.domain.actions import ActionKind, Rule
from bot.domain.models import Side
from bot.domain.planner import plan_rebalance
from bot.domain.summary import account_metrics
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.store.records import ActionStatus

NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"


def _over_levered() -> SimulatedExchange:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(),
        clock=lambda: NOW,
        derivatives=Decimal(1000),
        source=Decimal(300),
        account="main",
    )
    exchange.set_mark(BTC, Decimal(50000))
    exchange.open_position(BTC, Side.LONG, Decimal("0.1"))
    return exchange


async def test_execute_plan_when_journal_given_then_every_action_journaled_ok(
    db_url: str,
) -> None:
    exchange = _over_levered()
    targets = Targets(account=Target(Decimal(3), Decimal("2.5"), Decimal("3.5")))
    counter = itertools.count(1)

    def client_ids() -> str:
        return f"lb{next(counter)}"

    journal = await Journal.open(db_url, clock=lambda: NOW)
    try:
        cycle_id = await journal.start_cycle("main", NOW)
        snapshot = await exchange.fetch_snapshot()
        metrics = account_metrics(snapshot)
        await journal.record_snapshot(
            "main", snapshot, metrics.equity, metrics.notional, metrics.leverage, None, cycle_id
        )
        activity = await journal.recent_activity("main", NOW)
        plan = plan_rebalance(snapshot, targets, Policy(), NOW, activity)
        outcomes = await execute_plan(exchange, plan, client_ids, journal.actions("main", cycle_id))
        await journal.finish_cycle(cycle_id, "ok", NOW, list(plan.notes))

        journaled = await journal.cycle_actions(cycle_id)
        activity_after = await journal.recent_activity("main", NOW)
        pending = await journal.pending_intents("main")
    finally:
        await journal.close()

    assert [a.kind for a in plan.actions] == [ActionKind.TRANSFER_IN, ActionKind.REDUCE_ORDER]
    assert all(o.ok for o in outcomes)
    assert [(a.client_id, a.kind, a.status) for a in journaled] == [
        ("lb1", ActionKind.TRANSFER_IN, ActionStatus.OK),
        ("lb2", ActionKind.REDUCE_ORDER, ActionStatus.OK),
    ]
    assert [a.amount for a in journaled] == [a.amount for a in plan.actions]
    assert all(a.rule == Rule.DELEVER.value for a in journaled)
    order = journaled[1]
    assert (order.side, order.fill_price) == ("sell", Decimal(50000))
    assert order.fee is not None and order.fee > 0
    assert activity_after.transferred_today == plan.actions[0].amount
    assert activity_after.last_order_at == {plan.actions[1].reason.scope: NOW}
    assert pending == []
