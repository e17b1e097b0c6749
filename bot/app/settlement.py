"""Settling actions whose outcome the bot did not see (DESIGN.md §4, §11).

A write interrupted by a crash (`pending`) or whose reply was lost (`unknown`) is looked
up at the venue: orders by client id, transfers where the venue can say
(`Exchange.fetch_transfer`). What the venue cannot look up stays `unknown`, counts as
done for the cooldown and the daily cap, and the owner is told once. Nothing is resent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from bot.app.journal_port import CycleJournal
from bot.clock import Clock
from bot.domain.actions import STOP_KINDS, ActionKind, CancelStop, StopFilled, Transfer
from bot.domain.outcomes import ActionOutcome, ActionStatus, OrderResult, TransferResult
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.port import AuthenticationError, CapabilityMissing, Exchange, ExchangeError
from bot.store.records import PendingIntent

logger = logging.getLogger(__name__)

# Actions whose outcome was not seen are looked up for this long; older ones stay
# `unknown` (and count as done, which only matters for today's cap and the cooldown).
UNKNOWN_LOOKUP_WINDOW = timedelta(days=1)
_ORDER_KINDS = (ActionKind.REDUCE_ORDER, ActionKind.INCREASE_ORDER)
_NEVER_SENT = "never reached the exchange"


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a lookup made of an action whose outcome was not seen."""

    status: ActionStatus
    note: str
    exchange_id: str | None = None
    error: str | None = None
    filled: Decimal | None = None
    fill_price: Decimal | None = None
    fee: Decimal | None = None
    receipt: OrderResult | TransferResult | StopOrder | None = None


@dataclass(slots=True)
class Settler:
    """Looks up one account's unseen outcomes and journals what the venue says."""

    name: str
    exchange: Exchange
    journal: CycleJournal
    clock: Clock
    # Unknown actions the venue cannot look up: the owner was told; not asked again.
    unresolvable: set[str] = field(default_factory=set)
    # Whether an `unknown` action may still be looked up: true at start-up (a previous
    # process may have left some) and whenever one is left; a steady cycle with none
    # skips the journal query.
    lookups_due: bool = True

    async def settle_unknown(self) -> list[str]:
        """Look up the actions journaled `unknown` (lately) that the venue can look up."""
        if not self.lookups_due:
            return []
        since = self.clock() - UNKNOWN_LOOKUP_WINDOW
        notes: list[str] = []
        self.lookups_due = False
        for intent in await self.journal.unknown_intents(self.name, since):
            if intent.client_id in self.unresolvable:
                continue
            try:
                notes.append(await self.settle(intent, interrupted=False))
            except AuthenticationError:
                self.lookups_due = True
                raise
            except ExchangeError as error:
                # Asked again next cycle; the action keeps counting as done meanwhile.
                self.lookups_due = True
                logger.warning("%s: cannot look up %s yet: %s", self.name, intent.client_id, error)
        return notes

    async def settle(self, intent: PendingIntent, *, interrupted: bool) -> str:
        """Look `intent` up at the venue, journal what it found, and say it in a line."""
        try:
            settled = await self.look_up(intent, after_the_fact=True)
        except CapabilityMissing:
            settled = None
        if settled is None:
            self.unresolvable.add(intent.client_id)
            how = "interrupted" if interrupted else "sent, reply lost"
            note = (
                f"{intent.client_id}: {intent.kind.value} {how}, outcome unknown "
                "(counted as done for the cooldown and the daily cap)"
            )
            if not interrupted:
                return note  # already journaled unknown, with the error that made it so
            settled = Settlement(
                ActionStatus.UNKNOWN, note, error="interrupted; effect read from balances"
            )
        await self.journal.resolve_intent(
            intent.client_id, settled.status, exchange_id=settled.exchange_id,
            error=settled.error, filled=settled.filled, fill_price=settled.fill_price,
            fee=settled.fee,
        )  # fmt: skip
        return settled.note

    async def look_up(self, intent: PendingIntent, *, after_the_fact: bool) -> Settlement | None:
        """What the venue knows of `intent`. Raises `CapabilityMissing` where it cannot say.

        `after_the_fact` (a later cycle, or a new process): not found means the write
        never reached the venue. Right after a lost reply it may still be on its way,
        so then not found settles nothing (None).
        """
        cid = intent.client_id
        exchange = self.exchange
        if intent.kind in _ORDER_KINDS:
            order = await exchange.fetch_order_by_client_id(intent.symbol or "", cid)
            if order is None:
                if not after_the_fact:
                    return None
                return Settlement(
                    ActionStatus.FAILED, f"{cid}: order {_NEVER_SENT}", error=_NEVER_SENT
                )
            if (nothing := order.did_nothing) is not None:
                return Settlement(
                    ActionStatus.FAILED, f"{cid}: {nothing}", order.exchange_id, nothing,
                    receipt=order,
                )  # fmt: skip
            return Settlement(
                ActionStatus.OK, f"{cid}: order found ({order.status.value})", order.exchange_id,
                filled=order.filled, fill_price=order.average_price, fee=order.fee,
                receipt=order,
            )  # fmt: skip
        if intent.kind in STOP_KINDS:
            return await self._look_up_stop(intent, after_the_fact=after_the_fact)
        if intent.kind not in (ActionKind.TRANSFER_IN, ActionKind.TRANSFER_OUT):
            raise CapabilityMissing("margin changes carry no client id to look them up by")
        transfer = await exchange.fetch_transfer(
            cid, intent.symbol, intent.amount,
            intent.kind is ActionKind.TRANSFER_IN, intent.created_at,
        )  # fmt: skip
        if transfer is None:
            if not after_the_fact:
                return None
            return Settlement(
                ActionStatus.FAILED, f"{cid}: transfer {_NEVER_SENT}", error=_NEVER_SENT
            )
        return Settlement(
            ActionStatus.OK, f"{cid}: transfer found", transfer.transfer_id,
            filled=transfer.amount, receipt=transfer,
        )  # fmt: skip

    async def _look_up_stop(
        self, intent: PendingIntent, *, after_the_fact: bool
    ) -> Settlement | None:
        """A backstop placement is found by its own client id; a cancellation or a fill by
        the client id of the stop it concerns (`ref`)."""
        cid = intent.client_id
        if intent.kind is ActionKind.BACKSTOP_PLACE:
            stop = await self.exchange.fetch_stop(intent.symbol, cid)
            if stop is None:
                if not after_the_fact:
                    return None
                return Settlement(
                    ActionStatus.FAILED, f"{cid}: backstop {_NEVER_SENT}", error=_NEVER_SENT
                )
            if stop.status in (StopStatus.CANCELED, StopStatus.REJECTED):
                error = f"stop {stop.status.value} by the venue"
                return Settlement(
                    ActionStatus.FAILED, f"{cid}: {error}", stop.exchange_id, error, receipt=stop
                )
            return Settlement(
                ActionStatus.OK, f"{cid}: backstop found ({stop.status.value})",
                stop.exchange_id, receipt=stop,
            )  # fmt: skip
        ref = intent.ref or ""
        stop = await self.exchange.fetch_stop(intent.symbol, ref)
        if intent.kind is ActionKind.BACKSTOP_FILL:
            # An observation: the venue already acted; the lookup only refreshes the fill.
            if stop is None or stop.status is not StopStatus.TRIGGERED:
                return Settlement(ActionStatus.OK, f"{cid}: backstop fill of {ref} journaled")
            return Settlement(
                ActionStatus.OK, f"{cid}: backstop fill of {ref} journaled", stop.exchange_id,
                filled=stop.filled, fill_price=stop.average_price, fee=stop.fee, receipt=stop,
            )  # fmt: skip
        if stop is not None and stop.resting:
            if not after_the_fact:
                return None  # the cancel may still be on its way
            error = "stop still resting: the cancel never took effect"
            return Settlement(
                ActionStatus.FAILED, f"{cid}: {error}", stop.exchange_id, error, receipt=stop
            )
        what = "gone" if stop is None else stop.status.value
        return Settlement(
            ActionStatus.OK, f"{cid}: backstop {ref} {what}",
            None if stop is None else stop.exchange_id, receipt=stop,
        )  # fmt: skip

    async def look_up_unknown(
        self, outcomes: list[ActionOutcome], sent_after: datetime
    ) -> list[ActionOutcome]:
        """This cycle's actions whose reply was lost, looked up before the verify snapshot:
        found ones are settled now; the rest stay unknown (looked up again next cycle,
        except where the venue cannot look them up: they count as done)."""
        settled: list[ActionOutcome] = []
        for outcome in outcomes:
            if outcome.status is not ActionStatus.UNKNOWN:
                settled.append(outcome)
                continue
            try:
                found = await self.look_up(_intent_of(outcome, sent_after), after_the_fact=False)
            except CapabilityMissing:
                self.unresolvable.add(outcome.client_id)
                found = None
            except AuthenticationError:
                raise
            except ExchangeError as error:
                logger.warning("%s: cannot look up %s: %s", self.name, outcome.client_id, error)
                found = None
            if found is None:
                # Still unknown: looked up again next cycle (unless it cannot be).
                self.lookups_due |= outcome.client_id not in self.unresolvable
                settled.append(outcome)
                continue
            await self.journal.resolve_intent(
                outcome.client_id, found.status, exchange_id=found.exchange_id,
                error=found.error, filled=found.filled, fill_price=found.fill_price,
                fee=found.fee,
            )  # fmt: skip
            receipt = found.receipt
            settled.append(
                ActionOutcome.of(outcome.action, outcome.client_id, receipt)
                if receipt is not None
                else ActionOutcome.failed(outcome.action, outcome.client_id, found.error or "")
            )
        return settled


def _intent_of(outcome: ActionOutcome, sent_after: datetime) -> PendingIntent:
    """The journaled intent of one of this cycle's outcomes, as a lookup needs it."""
    action = outcome.action
    concerns = action.order if isinstance(action, (CancelStop, StopFilled)) else None
    return PendingIntent(
        client_id=outcome.client_id,
        kind=action.kind,
        symbol=action.currency if isinstance(action, Transfer) else action.symbol,
        side=None,
        amount=action.amount,
        created_at=sent_after,
        cycle_id=None,
        hedged=False,
        ref=None if concerns is None else concerns.client_order_id,
        exchange_id=None if concerns is None else concerns.exchange_id,
    )
