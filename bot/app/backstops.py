"""The backstop keeper: the resting reduce-only stop ladder, kept in line every cycle.

DESIGN.md §11. Each cycle it asks the venue which of levbot's stops still rest (the
journal says which ones levbot placed), journals the ones that triggered with their
fill (and alerts), notices the ones that vanished otherwise (and places them again),
then cancel-replaces what the fresh snapshot wants different by more than the
tolerance. Every placement and cancellation goes through the one write path
(`run_plan`): intent journaled first, found again by client id after a crash.
A replacement is placed BEFORE its old stop is cancelled, so a leg is never left
unprotected in between (both are reduce-only: the venue never lets them flip it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bot.app.execute import run_plan
from bot.app.journal_port import CycleJournal
from bot.domain.actions import (
    Action,
    CancelStop,
    PlaceStop,
    Plan,
    Reason,
    Rule,
    StopFilled,
    describe_action,
)
from bot.domain.backstop import BackstopChanges, plan_backstops, reconcile_backstops
from bot.domain.gate import Denied, TradingState, gate
from bot.domain.models import AccountSnapshot, OrderSide
from bot.domain.outcomes import ActionJournal, ActionOutcome
from bot.domain.stops import BackstopSettings, Stop, StopOrder, StopStatus
from bot.domain.targets import Policy, Targets
from bot.domain.vocabulary import AlertLevel
from bot.exchange.port import Exchange
from bot.store.records import RestingStopRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackstopPreview:
    """What the keeper would do now: the ladder it wants, levbot's stops resting at the
    venue, and the changes between them (nothing is sent)."""

    desired: tuple[Stop, ...]
    resting: tuple[StopOrder, ...]
    changes: BackstopChanges
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Survey:
    """levbot's stops as the venue reports them: still resting, or gone since."""

    resting: tuple[StopOrder, ...]
    gone: tuple[RestingStopRecord, ...]


@dataclass(frozen=True, slots=True)
class BackstopRound:
    """What one cycle did to the ladder."""

    outcomes: tuple[ActionOutcome, ...] = ()
    fills: tuple[StopOrder, ...] = ()
    held_back: tuple[Denied, ...] = ()
    notes: tuple[str, ...] = ()
    # A bug in a backstop step (not the venue's refusal): the cycle went on without it.
    error: str | None = None


NO_ROUND = BackstopRound()


@dataclass(slots=True)
class BackstopKeeper:
    """Keeps one account's backstop ladder resting at the venue."""

    name: str
    exchange: Exchange
    journal: CycleJournal
    settings: BackstopSettings
    new_client_id: Callable[[], str]
    # Set when the venue or key cannot rest stops at all: off until a restart (told once).
    unsupported: bool = False
    # The last failure alerted, so a venue refusing every cycle is said once.
    _last_failure: str | None = None
    # levbot's stops resting at the venue, as of the last listing plus what was sent since.
    _resting: tuple[StopOrder, ...] = field(default=())
    # The legs (symbol, side -> contracts) and time of the last listing; None: never.
    _surveyed_legs: dict[tuple[str, str], Decimal] | None = None
    _surveyed_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.settings.enabled and not self.unsupported

    def survey_due(self, snapshot: AccountSnapshot) -> bool:
        """Whether to ask the venue which stops rest. A stop can only have triggered if a
        leg shrank, so a steady account is asked only every `settings.verify_seconds` (for
        stops cancelled by hand): a steady cycle costs no request for its backstops."""
        if self._surveyed_legs is None or self._surveyed_at is None:
            return True
        if _legs(snapshot) != self._surveyed_legs:
            return True
        verify_every = timedelta(seconds=self.settings.verify_seconds)
        return snapshot.taken_at - self._surveyed_at >= verify_every

    def _forget_survey(self) -> None:
        self._surveyed_legs = self._surveyed_at = None

    async def survey(self, snapshot: AccountSnapshot) -> Survey:
        """Which of levbot's journaled stops still rest at the venue (one request)."""
        records = await self.journal.resting_stops(self.name)
        symbols = sorted({p.symbol for p in snapshot.positions} | {r.symbol for r in records})
        if not symbols:
            return Survey((), ())
        by_id = {o.exchange_id: o for o in await self.exchange.fetch_stops(symbols)}
        resting = tuple(by_id[r.exchange_id] for r in records if r.exchange_id in by_id)
        gone = tuple(r for r in records if r.exchange_id not in by_id)
        return Survey(resting, gone)

    async def observe(self, snapshot: AccountSnapshot, cycle_id: int) -> BackstopRound:
        """Journal the stops that left the venue since the last look: triggered ones with
        their fill (and an alert), vanished ones (cancelled outside levbot) so the next
        step places them again. Runs whatever the trading state: it only records."""
        if not self.active or not self.survey_due(snapshot):
            return NO_ROUND
        survey = await self.survey(snapshot)
        self._resting = survey.resting
        self._surveyed_legs, self._surveyed_at = _legs(snapshot), snapshot.taken_at
        if not survey.gone:
            return NO_ROUND
        recorder = self.journal.actions(self.name, cycle_id)
        outcomes: list[ActionOutcome] = []
        fills: list[StopOrder] = []
        lines: list[str] = []
        for record in survey.gone:
            found = await self.exchange.fetch_stop(record.symbol, record.client_id)
            order = found if found is not None else _vanished(record)
            if order.status is StopStatus.OPEN:
                # Missing from the listing but resting (a venue listing late): it counts.
                self._resting = (*self._resting, order)
                continue
            # Named by our client id whatever form the venue echoes.
            order = _with_client_id(order, record.client_id)
            action: Action
            if order.status is StopStatus.TRIGGERED:
                detail = "triggered at the venue"
                action = StopFilled(order=order, reason=_reason(record.scope, detail))
                fills.append(order)
            else:
                detail = f"{order.status.value} outside levbot: placing it again"
                action = CancelStop(order=order, reason=_reason(record.scope, detail))
                lines.append(f"backstop {record.client_id} {detail}")
            outcome = ActionOutcome(action, self.new_client_id(), order)
            await recorder.intent(action, outcome.client_id)
            await recorder.result(outcome)
            outcomes.append(outcome)
        if fills:
            text = "\n".join(
                describe_action(o.action) for o in outcomes if isinstance(o.action, StopFilled)
            )
            await self.journal.enqueue_alert(
                AlertLevel.ACTION, f"[{self.name}] BACKSTOP TRIGGERED:\n{text}"
            )
        if lines:
            await self.journal.enqueue_alert(
                AlertLevel.WARNING, f"[{self.name}] " + "\n".join(lines)
            )
        return BackstopRound(outcomes=tuple(outcomes), fills=tuple(fills))

    def changes(
        self, snapshot: AccountSnapshot, targets: Targets, policy: Policy
    ) -> tuple[tuple[Stop, ...], BackstopChanges, tuple[str, ...]]:
        """The ladder `snapshot` wants and what differs from what rests now."""
        wanted = plan_backstops(snapshot, targets, self.settings, policy.slippage_allowance)
        changes = reconcile_backstops(wanted.stops, self._resting, self.settings)
        return wanted.stops, changes, wanted.notes

    async def adjust(
        self,
        snapshot: AccountSnapshot,
        targets: Targets,
        policy: Policy,
        state: TradingState,
        cycle_id: int,
        now: datetime,
        unsettled: frozenset[str] = frozenset(),
    ) -> BackstopRound:
        """Bring the resting ladder in line with `snapshot` (after this cycle's trades).

        `unsettled`: symbols with a stop placement or cancellation whose outcome is not
        known yet; they are left alone until it is (never two ladders for one leg)."""
        if not self.active:
            return NO_ROUND
        _, changes, notes = self.changes(snapshot, targets, policy)
        places = [
            PlaceStop(stop=s, reason=_reason(s.scope, f"level {s.level}"))
            for s in changes.place
            if s.symbol not in unsettled
        ]
        cancels = [
            CancelStop(order=o, reason=_reason(self.name, "re-priced, resized or orphaned"))
            for o in changes.cancel
            if o.symbol not in unsettled
        ]
        plan = Plan(now, tuple([*places, *cancels]))
        decision = gate(plan, state)
        if decision.denied:
            return BackstopRound(held_back=decision.denied, notes=notes)
        recorder = self.journal.actions(self.name, cycle_id)
        outcomes: list[ActionOutcome] = []
        failed_legs: set[tuple[str, str]] = set()
        for place in places:
            outcome = await self._send(place, now, recorder)
            outcomes.append(outcome)
            if not outcome.ok:
                failed_legs.add((place.stop.symbol, place.stop.order_side.value))
        for cancel in cancels:
            # The old stop stays while its replacement could not be placed.
            if (cancel.order.symbol, cancel.order.side.value) in failed_legs:
                continue
            outcomes.append(await self._send(cancel, now, recorder))
        self._after(outcomes)
        await self._tell_failures(outcomes)
        return BackstopRound(outcomes=tuple(outcomes), notes=notes)

    async def preview(
        self, snapshot: AccountSnapshot, targets: Targets, policy: Policy
    ) -> BackstopPreview:
        """The ladder and the changes, from a fresh look at the venue; nothing is sent."""
        if not self.settings.enabled:
            empty = reconcile_backstops((), (), self.settings)
            return BackstopPreview((), (), empty, ("backstop: off",))
        self._resting = (await self.survey(snapshot)).resting
        desired, changes, notes = self.changes(snapshot, targets, policy)
        return BackstopPreview(desired, self._resting, changes, notes)

    async def _send(self, action: Action, now: datetime, recorder: ActionJournal) -> ActionOutcome:
        # One action per plan: a refused level must not stop the others.
        execution = await run_plan(
            self.exchange, Plan(now, (action,)), self.new_client_id, recorder
        )
        if execution.unsupported:
            self.unsupported = True
        return execution.outcomes[0]

    def _after(self, outcomes: list[ActionOutcome]) -> None:
        """What rests now, from what was sent: placed stops added, cancelled ones gone.
        Anything not seen clearly (unknown, failed) is read from the venue next cycle."""
        if any(not o.ok for o in outcomes):
            self._forget_survey()
        gone = {o.action.order.exchange_id for o in outcomes
                if o.ok and isinstance(o.action, CancelStop)}  # fmt: skip
        placed = [o.receipt for o in outcomes if o.ok and isinstance(o.receipt, StopOrder)
                  and isinstance(o.action, PlaceStop)]  # fmt: skip
        self._resting = (*(r for r in self._resting if r.exchange_id not in gone), *placed)

    async def _tell_failures(self, outcomes: list[ActionOutcome]) -> None:
        failures = [o for o in outcomes if not o.ok]
        if not failures:
            self._last_failure = None
            return
        text = "\n".join(
            f"{describe_action(o.action)}: {o.status.value} ({o.error})" for o in failures
        )
        if self.unsupported:
            text += "\nthe venue cannot rest stop orders here: backstops off until a restart"
        if text == self._last_failure:
            return
        self._last_failure = text
        await self.journal.enqueue_alert(AlertLevel.WARNING, f"[{self.name}] backstop:\n{text}")


def _legs(snapshot: AccountSnapshot) -> dict[tuple[str, str], Decimal]:
    return {(p.symbol, p.side.value): p.contracts for p in snapshot.positions}


def _reason(scope: str, detail: str) -> Reason:
    return Reason(Rule.BACKSTOP, scope, None, None, detail)


def _vanished(record: RestingStopRecord) -> StopOrder:
    """A journaled stop the venue has no record of at all: as good as cancelled."""
    return StopOrder(
        client_order_id=record.client_id,
        exchange_id=record.exchange_id or "",
        symbol=record.symbol,
        side=OrderSide(record.side),
        amount=record.amount,
        trigger_price=record.trigger_price,
        status=StopStatus.CANCELED,
    )


def _with_client_id(order: StopOrder, client_id: str) -> StopOrder:
    return replace(order, client_order_id=client_id)
