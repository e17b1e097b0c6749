"""Carry a plan out on an Exchange, one action at a time, journaling intent and result.

This is the one write path: the daemon's cycle and the backtest's `levbot` policy both
come through here, so what the backtest measures is what the daemon does. It is also
where each action's verdict is decided (`ActionOutcome.of`): everything after it reads
`outcome.status`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.domain.actions import Action, MarginAdjustment, Order, Plan, Transfer
from bot.domain.outcomes import ActionJournal, ActionOutcome, ExchangeReceipt
from bot.exchange.port import AuthenticationError, Exchange, ExchangeError, OrderRequest

logger = logging.getLogger(__name__)


async def execute_plan(
    exchange: Exchange,
    plan: Plan,
    new_client_id: Callable[[], str],
    journal: ActionJournal | None = None,
) -> list[ActionOutcome]:
    """Execute `plan.actions` in order.

    A failed action stops the rest of an ordinary plan (the next cycle re-plans from a
    fresh snapshot); in an emergency the remaining actions are still tried.
    Authentication errors propagate: the account must halt.
    """
    outcomes: list[ActionOutcome] = []
    for action in plan.actions:
        client_id = new_client_id()
        if journal is not None:
            await journal.intent(action, client_id)
        try:
            receipt = await apply_action(exchange, action, client_id)
            outcome = ActionOutcome.of(action, client_id, receipt)
        except AuthenticationError as error:
            # The exchange refused before acting: journal that, then halt the account.
            if journal is not None:
                await journal.result(ActionOutcome.failed(action, client_id, f"halted: {error}"))
            raise
        except ExchangeError as error:
            logger.warning("%s %s failed: %s", action.kind.value, client_id, error)
            outcome = ActionOutcome.failed(action, client_id, f"{type(error).__name__}: {error}")
        if not outcome.ok and outcome.receipt is not None:
            logger.warning("%s %s failed: %s", action.kind.value, client_id, outcome.error)
        if journal is not None:
            await journal.result(outcome)
        outcomes.append(outcome)
        if not outcome.ok and not plan.emergency:
            break
    return outcomes


async def apply_action(exchange: Exchange, action: Action, client_id: str) -> ExchangeReceipt:
    """Send one action to the exchange."""
    if isinstance(action, Transfer):
        return await exchange.transfer(
            action.currency, action.amount, action.into_derivatives, client_id
        )
    if isinstance(action, MarginAdjustment):
        return await exchange.adjust_margin(
            action.symbol, action.side, action.amount, action.add, action.hedged
        )
    return await exchange.create_order(order_request(action, client_id))


def order_request(order: Order, client_id: str) -> OrderRequest:
    return OrderRequest(
        symbol=order.symbol,
        side=order.order_side,
        amount=order.amount,
        reduce_only=order.reduce_only,
        position_side=order.position_side,
        client_order_id=client_id,
        hedged=order.hedged,
    )
