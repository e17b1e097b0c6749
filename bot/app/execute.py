"""Carry a plan out on an Exchange, one action at a time, journaling intent and result.

This is the one write path: the daemon's cycle and the backtest's `levbot` policy both
come through here, so what the backtest measures is what the daemon does. It is also
where each action's verdict is decided (`ActionOutcome.of`): everything after it reads
`outcome.status`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.domain.actions import (
    Action,
    CancelStop,
    MarginAdjustment,
    Order,
    PlaceStop,
    Plan,
    StopFilled,
    Transfer,
)
from bot.domain.outcomes import ActionJournal, ActionOutcome, ActionStatus, ExchangeReceipt
from bot.exchange.port import (
    AuthenticationError,
    CapabilityMissing,
    Exchange,
    ExchangeError,
    OrderRequest,
    OutcomeUnknown,
    StopRequest,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Execution:
    """What became of a plan's actions, in order."""

    outcomes: tuple[ActionOutcome, ...]
    # Steps (transfers, margin changes, resting stops) the venue or ccxt cannot do at
    # all: the caller can plan the rest without that capability instead of trying again.
    unsupported: tuple[ActionOutcome, ...] = ()


async def execute_plan(
    exchange: Exchange,
    plan: Plan,
    new_client_id: Callable[[], str],
    journal: ActionJournal | None = None,
) -> list[ActionOutcome]:
    """Execute `plan.actions` in order (see `run_plan`); the outcomes."""
    return list((await run_plan(exchange, plan, new_client_id, journal)).outcomes)


async def run_plan(
    exchange: Exchange,
    plan: Plan,
    new_client_id: Callable[[], str],
    journal: ActionJournal | None = None,
) -> Execution:
    """Execute `plan.actions` in order.

    A failed action, or one whose outcome could not be seen (`OutcomeUnknown`: journaled
    `unknown`, never `failed`, and never sent again), stops the rest of an ordinary plan
    (the next cycle re-plans from a fresh snapshot); in an emergency the remaining
    actions are still tried. Authentication errors propagate: the account must halt.
    An intent the journal refuses (`bot.store.leases.LeaseLost`: another process holds
    the account's lease) propagates before anything is sent: no intent, no write.
    """
    outcomes: list[ActionOutcome] = []
    unsupported: list[ActionOutcome] = []
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
        except OutcomeUnknown as error:
            logger.warning("%s %s outcome unknown: %s", action.kind.value, client_id, error)
            outcome = ActionOutcome(
                action, client_id, None, f"OutcomeUnknown: {error}", ActionStatus.UNKNOWN
            )
        except ExchangeError as error:
            logger.warning("%s %s failed: %s", action.kind.value, client_id, error)
            outcome = ActionOutcome.failed(action, client_id, f"{type(error).__name__}: {error}")
            if isinstance(error, CapabilityMissing) and isinstance(
                action, (Transfer, MarginAdjustment, PlaceStop)
            ):
                unsupported.append(outcome)
        if outcome.status is ActionStatus.FAILED and outcome.receipt is not None:
            logger.warning("%s %s failed: %s", action.kind.value, client_id, outcome.error)
        if journal is not None:
            await journal.result(outcome)
        outcomes.append(outcome)
        if not outcome.ok and not plan.emergency:
            break
    return Execution(tuple(outcomes), tuple(unsupported))


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
    if isinstance(action, PlaceStop):
        return await exchange.place_stop(stop_request(action, client_id))
    if isinstance(action, CancelStop):
        return await exchange.cancel_stop(action.order)
    if isinstance(action, StopFilled):
        # An observation (the venue already acted), journaled but never sent.
        raise TypeError("a triggered stop is journaled, not executed")
    return await exchange.create_order(order_request(action, client_id))


def stop_request(action: PlaceStop, client_id: str) -> StopRequest:
    stop = action.stop
    return StopRequest(
        symbol=stop.symbol,
        side=stop.order_side,
        amount=stop.amount,
        trigger_price=stop.trigger_price,
        position_side=stop.position_side,
        client_order_id=client_id,
        hedged=stop.hedged,
    )


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
