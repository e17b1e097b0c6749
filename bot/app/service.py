"""One account's cycle (DESIGN.md §4), and the control surface the CLI and Telegram call.

fetch snapshot -> plan -> gate -> journal intent -> execute -> re-fetch and verify ->
journal result -> alert. Start-up reconciliation and crash recovery are the same path:
the first cycle of every process settles pending intents before anything is planned.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bot.app.alerts import LogChannel
from bot.app.backstops import NO_ROUND, BackstopKeeper, BackstopPreview, BackstopRound
from bot.app.execute import run_plan
from bot.app.journal_port import CycleJournal
from bot.app.settlement import Settler
from bot.clock import Clock
from bot.domain.actions import (
    STOP_KINDS,
    MarginAdjustment,
    Plan,
    Rule,
    describe_action,
)
from bot.domain.gate import Denied, GateDecision, TradingState, gate, trading_state
from bot.domain.leverage import ScopeMetrics
from bot.domain.models import AccountSnapshot
from bot.domain.outcomes import ActionOutcome, ActionStatus
from bot.domain.planner import needs_source, plan_rebalance
from bot.domain.stops import BACKSTOP_OFF, BackstopSettings
from bot.domain.summary import account_metrics
from bot.domain.targets import Policy, Targets
from bot.domain.triggers import MarkTrigger, stream_triggers
from bot.domain.vocabulary import ALL_ACCOUNTS, AlertLevel, CycleStatus
from bot.exchange.port import (
    AuthenticationError,
    Exchange,
    ExchangeError,
    TemporaryError,
)
from bot.store.lease_errors import LeaseExpiring, LeaseLost

logger = logging.getLogger(__name__)

# While an emergency lasts (e.g. on a paused account), repeat its alert this often.
EMERGENCY_REPEAT = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class AccountRuntime:
    """Everything one account's cycle needs, wired by the daemon."""

    name: str
    exchange: Exchange
    targets: Targets
    policy: Policy
    interval: timedelta
    dry_run: bool = False
    # Alert "exchange unreachable" after this many failed cycles in a row.
    unreachable_after: int = 3
    # The resting reduce-only stop ladder (off unless the config turns it on).
    backstop: BackstopSettings = BACKSTOP_OFF


@dataclass(frozen=True, slots=True)
class CycleReport:
    account: str
    started_at: datetime
    finished_at: datetime
    status: CycleStatus
    plan: Plan | None = None
    outcomes: tuple[ActionOutcome, ...] = ()
    # Planned actions the gate held back (paused, halted, dry run), with the reason.
    held_back: tuple[Denied, ...] = ()
    before: ScopeMetrics | None = None
    after: ScopeMetrics | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None
    # What the cycle did to the resting backstop ladder (fills seen, places, cancels).
    backstops: BackstopRound = NO_ROUND


def new_client_id() -> str:
    """A fresh client id: "lb" + 28 hex digits, valid as a Binance, Bybit or OKX client
    order id as it is (a profile maps it where a venue wants another shape)."""
    return "lb" + uuid.uuid4().hex[:28]


@dataclass(slots=True)
class AccountService:
    """Runs cycles for one account, one at a time."""

    runtime: AccountRuntime
    journal: CycleJournal
    clock: Clock
    # The daemon run this service's cycles belong to (None outside the daemon).
    run_id: int | None = None
    # Set by an authentication error; only a restart (with fixed keys) clears it.
    halted: bool = False
    # No longer driven by this process: the journal refused an intent because another
    # process took the account's lease, or the daemon handed the lease back (`retire`).
    # It never cycles again; a new service, which reconciles first, drives the account
    # if the lease is won back.
    retired: bool = False
    # The account's state as of the last cycle (None before the first).
    state: TradingState | None = None
    last_report: CycleReport | None = None
    failures_in_row: int = 0
    # Collateral moves the venue or key cannot do (CapabilityMissing): planned without
    # until a restart, so protection falls to reduce-only orders instead of stalling.
    transfers_unsupported: bool = False
    margin_unsupported: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _reconciled: bool = False
    _emergency_alerted_at: datetime | None = None
    settler: Settler = field(init=False)
    keeper: BackstopKeeper = field(init=False)
    # Per symbol, the marks at which the streaming trigger runs a cycle at once
    # (recomputed from every cycle's last snapshot; empty before the first).
    triggers: dict[str, MarkTrigger] = field(default_factory=dict)

    def __post_init__(self) -> None:
        runtime = self.runtime
        self.settler = Settler(self.name, runtime.exchange, self.journal, self.clock)
        self.keeper = BackstopKeeper(
            self.name, runtime.exchange, self.journal, runtime.backstop, new_client_id
        )

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def run_cycle(self) -> CycleReport:
        """One full cycle; never raises for exchange trouble (it is journaled instead)."""
        async with self._lock:
            if self.retired:
                now = self.clock()
                return CycleReport(
                    self.name, now, now, CycleStatus.SKIPPED, error="driven by another process"
                )
            report = await self._cycle()
        self.last_report = report
        return report

    async def retire(self) -> None:
        """Let the running cycle (if any) finish, then never cycle again: the account's
        lease is about to go to another process."""
        async with self._lock:
            self.retired = True

    async def preview(self) -> tuple[AccountSnapshot, Plan]:
        """What the bot would do right now (no journal writes, no exchange writes)."""
        snapshot = await self.runtime.exchange.fetch_snapshot()
        now = self.clock()
        targets = await self.current_targets()
        activity = await self.journal.recent_activity(self.name, now)
        return snapshot, plan_rebalance(snapshot, targets, self.runtime.policy, now, activity)

    async def backstop_preview(self) -> BackstopPreview:
        """The backstop ladder the bot would keep right now, what rests at the venue and
        what would change (no journal writes, no exchange writes)."""
        snapshot = await self.runtime.exchange.fetch_snapshot()
        targets = await self.current_targets()
        preview = await self.keeper.preview(snapshot, targets, self.runtime.policy)
        now = self.clock()
        activity = await self.journal.recent_activity(self.name, now)
        if not plan_rebalance(snapshot, targets, self.runtime.policy, now, activity).empty:
            note = "ladder for the position as it is now; re-priced after this cycle's trades"
            preview = replace(preview, notes=(*preview.notes, note))
        return preview

    async def current_targets(self) -> Targets:
        """Config targets with the owner's persisted overrides on top."""
        return self.runtime.targets.overridden(await self.journal.target_overrides(self.name))

    async def trading_state(self) -> TradingState:
        paused = await self.journal.paused_accounts()
        return trading_state(
            halted=self.halted,
            paused=self.name in paused or ALL_ACCOUNTS in paused,
            dry_run=self.runtime.dry_run,
        )

    async def reconcile(self, current_cycle: int | None = None) -> list[str]:
        """Settle intents a previous process left pending, before anything new is planned.

        Orders are looked up by client id, transfers where the venue can look them up
        (`Exchange.fetch_transfer`). What cannot be looked up (margin changes, transfers
        on some venues) is marked unknown and the owner is told; the fresh snapshot the
        next plan starts from already shows whatever they did, so nothing repeats.
        Actions an earlier cycle journaled `unknown` are looked up again too.
        """
        notes: list[str] = []
        interrupted = await self.journal.close_interrupted_cycles(
            self.name, self.clock(), keep=current_cycle
        )
        if interrupted:
            notes.append(f"{interrupted} cycle(s) interrupted by the previous process")
        for intent in await self.journal.pending_intents(self.name):
            notes.append(await self.settler.settle(intent, interrupted=True))
        notes.extend(await self.settler.settle_unknown())
        if notes:
            await self.journal.enqueue_alert(
                AlertLevel.WARNING,
                f"[{self.name}] recovered after a restart:\n" + "\n".join(notes),
            )
        self._reconciled = True
        return notes

    async def _cycle(self) -> CycleReport:
        started = self.clock()
        try:
            cycle_id = await self.journal.start_cycle(self.name, started, run_id=self.run_id)
        except Exception as error:
            return await self._unjournaled(started, error)
        try:
            report = await self._guarded_cycle(started, cycle_id)
        except AuthenticationError as error:
            report = await self._halt(started, cycle_id, error)
        except ExchangeError as error:
            report = await self._failed(started, error)
        except LeaseExpiring as error:
            # Still ours, but the heartbeat is late: nothing sent now, tried next cycle.
            logger.warning("%s: %s; not acting this cycle", self.name, error)
            report = CycleReport(
                self.name, started, self.clock(), CycleStatus.FAILED, error=str(error)
            )
        except LeaseLost as error:
            # Another process drives the account now: nothing was journaled or sent.
            logger.warning("%s: %s; no longer driven by this process", self.name, error)
            self.retired = True
            report = CycleReport(
                self.name, started, self.clock(), CycleStatus.FAILED, error=str(error)
            )
        except Exception as error:
            # A bug or a database hiccup must not leave the cycle `running` until a restart.
            # An exchange call it interrupted has an unknown outcome, as after a crash:
            # the next cycle reconciles first.
            logger.exception("%s: cycle failed unexpectedly", self.name)
            self._reconciled = False
            report = await self._failed(started, error)
        try:
            await self.journal.finish_cycle(
                cycle_id, report.status, report.finished_at, list(report.notes), report.error
            )
        except Exception as error:
            # The cycle ran; only its end could not be written (the next process closes it
            # as interrupted). Said loudly, straight to the log, never raised.
            what = f"{type(error).__name__}: {error}"
            logger.exception("%s: cannot journal the end of cycle %s", self.name, cycle_id)
            await LogChannel().deliver(
                AlertLevel.CRITICAL, f"[{self.name}] journal unavailable at a cycle's end: {what}"
            )
        return report

    async def _halt(
        self, started: datetime, cycle_id: int, error: AuthenticationError
    ) -> CycleReport:
        # The exchange refused the call, so an intent it refused never took effect.
        for intent in await self.journal.pending_intents(self.name):
            if intent.cycle_id == cycle_id:
                await self.journal.resolve_intent(
                    intent.client_id, ActionStatus.FAILED, error=f"AuthenticationError: {error}"
                )
        self.state = TradingState.HALTED
        if not self.halted:
            # Alert once, on the way in: a halted account keeps cycling (and watching).
            self.halted = True
            await self.journal.enqueue_alert(
                AlertLevel.CRITICAL,
                f"[{self.name}] HALTED: {error}. Fix the API keys, then restart.",
            )
        return CycleReport(self.name, started, self.clock(), CycleStatus.HALTED, error=str(error))

    async def _failed(self, started: datetime, error: Exception) -> CycleReport:
        """Any failed cycle counts toward the streak that alerts (`unreachable_after`)."""
        self.failures_in_row += 1
        if isinstance(error, ExchangeError):
            # A lost or unreadable reply (5xx, timeout, reset, -1000) is "unreachable".
            kind = "unreachable" if isinstance(error, TemporaryError) else "error"
            logger.warning("%s: cycle failed (%s): %s", self.name, kind, error)
            what, text = f"exchange {kind}", str(error)
        else:
            # Not the venue: a parsing bug, the database. Named, so the owner can tell.
            what, text = "cycle failing", f"{type(error).__name__}: {error}"
        if self.failures_in_row == self.runtime.unreachable_after:
            await self.journal.enqueue_alert(
                AlertLevel.WARNING,
                f"[{self.name}] {what} for {self.failures_in_row} cycles: {text}",
            )
        return CycleReport(self.name, started, self.clock(), CycleStatus.FAILED, error=text)

    async def _unjournaled(self, started: datetime, error: Exception) -> CycleReport:
        """The journal cannot even record the cycle (database gone): nothing is planned or
        sent, and the alert goes straight to the log (the outbox is in that database)."""
        self.failures_in_row += 1
        logger.error(
            "%s: cannot journal a cycle, skipping it: %s: %s", self.name, type(error).__name__,
            error,
        )  # fmt: skip
        await LogChannel().deliver(
            AlertLevel.CRITICAL,
            f"[{self.name}] journal unavailable, cycle skipped: {type(error).__name__}: {error}",
        )
        return CycleReport(
            self.name, started, self.clock(), CycleStatus.FAILED,
            error=f"{type(error).__name__}: {error}",
        )  # fmt: skip

    async def _guarded_cycle(self, started: datetime, cycle_id: int) -> CycleReport:
        if not self._reconciled:
            await self.reconcile(cycle_id)
        else:
            settled = await self.settler.settle_unknown()
            if settled:
                await self.journal.enqueue_alert(
                    AlertLevel.WARNING,
                    f"[{self.name}] looked up actions whose outcome was unknown:\n"
                    + "\n".join(settled),
                )
        exchange = self.runtime.exchange
        # The source wallet is read only when the plan may draw on it (below).
        snapshot = await exchange.fetch_snapshot(include_source=False)
        before = account_metrics(snapshot)
        await self._record(snapshot, before, cycle_id)
        # Stops that triggered while nobody looked are journaled before anything is
        # planned; the snapshot already shows what they did.
        observed = await self._backstop_step(self.keeper.observe(snapshot, cycle_id))

        targets = await self.current_targets()
        plan = await self._plan(snapshot, targets)
        if needs_source(snapshot, plan) and not self.transfers_unsupported:
            # A plan made without the source wallet is never sent: read it, plan again.
            snapshot = await exchange.fetch_source(snapshot)
            plan = await self._plan(snapshot, targets)
        notes = [*plan.notes, *(n for d in plan.decisions for n in d.notes)]
        state = self.state = await self.trading_state()
        decision = gate(plan, state)
        if plan.emergency:
            await self._alert_emergency(plan, decision, state)
        else:
            self._emergency_alerted_at = None

        outcomes: list[ActionOutcome] = []
        unsupported: tuple[ActionOutcome, ...] = ()
        if decision.denied:
            await self._journal_denied(cycle_id, decision, state)
            # For the journal's reader; channels use the typed `CycleReport.held_back`.
            notes.extend(f"held back: {d.action.kind.value}: {d.reason}" for d in decision.denied)
        if decision.allowed:
            recorder = self.journal.actions(self.name, cycle_id)
            execution = await run_plan(exchange, decision.plan(plan), new_client_id, recorder)
            outcomes = list(execution.outcomes)
            unsupported = execution.unsupported
            if unsupported:
                # Carry on in the same cycle without the capability (reduce-only orders),
                # from a fresh snapshot: in an emergency the rest of the plan already ran.
                await self._capability_missing(unsupported)
                fresh = await exchange.fetch_snapshot()
                replan = await self._plan(fresh, targets)
                redecision = gate(replan, state)
                if redecision.allowed:
                    again = await run_plan(
                        exchange, redecision.plan(replan), new_client_id, recorder
                    )
                    outcomes.extend(again.outcomes)
            outcomes = await self.settler.look_up_unknown(outcomes, started)

        after, latest = before, snapshot
        if outcomes:
            latest = await exchange.fetch_snapshot()
            after = account_metrics(latest)
            await self._record(latest, after, cycle_id)
            reported = [o for o in outcomes if o not in unsupported]
            await self._alert_outcomes(reported, before, after)
        adjusted = await self._backstop_step(
            self.keeper.adjust(
                latest, targets, self.runtime.policy, state, cycle_id, self.clock(),
                await self._unsettled_stop_symbols(),
            )
        )  # fmt: skip
        if any(o.status is ActionStatus.UNKNOWN for o in adjusted.outcomes):
            # Looked up by client id like any lost reply (found now, or next cycle).
            looked_up = await self.settler.look_up_unknown(list(adjusted.outcomes), started)
            adjusted = replace(adjusted, outcomes=tuple(looked_up))
        self.triggers = stream_triggers(latest, targets, self.runtime.policy)

        status = _CYCLE_STATUS.get(state, CycleStatus.OK)
        if state is TradingState.DRY_RUN and not decision.denied:
            status = CycleStatus.OK
        # A step the venue cannot do was planned around, not failed (told separately).
        unfinished = [o for o in outcomes if not o.ok and o not in unsupported]
        error = None
        if unfinished:
            status = CycleStatus.FAILED
            error = "; ".join(
                f"{o.action.kind.value} {o.status.value}: {o.error}" for o in unfinished
            )
        await self._succeeded()
        backstops = BackstopRound(
            outcomes=observed.outcomes + adjusted.outcomes,
            fills=observed.fills,
            held_back=adjusted.held_back,
            notes=observed.notes + adjusted.notes,
            error=observed.error or adjusted.error,
        )
        return CycleReport(
            self.name, started, self.clock(), status, plan, tuple(outcomes), decision.denied,
            before, after, tuple(notes), error, backstops,
        )  # fmt: skip

    async def _backstop_step(self, step: Awaitable[BackstopRound]) -> BackstopRound:
        """A backstop step that fails at the venue must not stop the cycle's own work
        (de-levering comes first): it is noted, logged and tried again next cycle."""
        try:
            return await step
        except (AuthenticationError, LeaseLost):
            raise
        except ExchangeError as error:
            logger.warning("%s: backstop step failed: %s", self.name, error)
            return BackstopRound(notes=(f"backstop: {type(error).__name__}: {error}",))
        except Exception as error:
            # A bug in the ladder must not stop the de-levering that follows it either:
            # logged with its traceback, carried in the report (the backtest raises it).
            logger.exception("%s: backstop step failed unexpectedly", self.name)
            what = f"{type(error).__name__}: {error}"
            return BackstopRound(notes=(f"backstop: {what}",), error=what)

    async def _unsettled_stop_symbols(self) -> frozenset[str]:
        """Symbols with a backstop write whose outcome is still unknown (rare: only asked
        while the settler has lookups left)."""
        if not self.settler.lookups_due or not self.keeper.active:
            return frozenset()
        unknown = await self.journal.unknown_intents(self.name)
        return frozenset(i.symbol for i in unknown if i.kind in STOP_KINDS)

    async def _succeeded(self) -> None:
        """A cycle ran to its end: the failure streak is over."""
        if self.failures_in_row >= self.runtime.unreachable_after:
            await self.journal.enqueue_alert(
                AlertLevel.INFO, f"[{self.name}] exchange reachable again"
            )
        self.failures_in_row = 0

    async def _plan(self, snapshot: AccountSnapshot, targets: Targets) -> Plan:
        """The plan on `snapshot`, without the collateral moves the venue cannot do."""
        if self.transfers_unsupported:
            # source None (and not unknown): "no collateral source", so the planner
            # de-levers with reduce-only orders.
            snapshot = replace(snapshot, source=None, source_read=True)
        if self.margin_unsupported:
            snapshot = replace(snapshot, can_adjust_margin=False)
        now = self.clock()
        activity = await self.journal.recent_activity(self.name, now)
        return plan_rebalance(snapshot, targets, self.runtime.policy, now, activity)

    async def _capability_missing(self, unsupported: tuple[ActionOutcome, ...]) -> None:
        """Remember what the venue cannot do (until a restart) and tell the owner once."""
        lines: list[str] = []
        for outcome in unsupported:
            margin = isinstance(outcome.action, MarginAdjustment)
            if margin and not self.margin_unsupported:
                self.margin_unsupported = True
                lines.append(f"isolated margin changes: {outcome.error}")
            elif not margin and not self.transfers_unsupported:
                self.transfers_unsupported = True
                lines.append(f"wallet transfers: {outcome.error}")
        if lines:
            await self.journal.enqueue_alert(
                AlertLevel.WARNING,
                f"[{self.name}] the venue cannot do these, so the bot de-levers with "
                "reduce-only orders instead until a restart:\n" + "\n".join(lines),
            )

    async def _record(
        self, snapshot: AccountSnapshot, metrics: ScopeMetrics, cycle_id: int
    ) -> None:
        await self.journal.record_snapshot(
            self.name, snapshot, metrics.equity, metrics.notional, metrics.leverage,
            metrics.margin_ratio, cycle_id,
        )  # fmt: skip

    async def _journal_denied(
        self, cycle_id: int, decision: GateDecision, state: TradingState
    ) -> None:
        """In a dry run the held-back actions are journaled (as dry-run) and alerted."""
        if state is not TradingState.DRY_RUN:
            return
        recorder = self.journal.actions(self.name, cycle_id, dry_run=True)
        for denied in decision.denied:
            client_id = new_client_id()
            await recorder.intent(denied.action, client_id)
            await recorder.result(ActionOutcome.failed(denied.action, client_id, "dry run"))
        lines = [f"would {describe_action(d.action)}" for d in decision.denied]
        await self.journal.enqueue_alert(
            AlertLevel.INFO, f"[{self.name}] dry run:\n" + "\n".join(lines)
        )

    async def _alert_emergency(
        self, plan: Plan, decision: GateDecision, state: TradingState
    ) -> None:
        """Critical alert when an emergency starts, then at most every EMERGENCY_REPEAT."""
        now = self.clock()
        last = self._emergency_alerted_at
        if last is not None and now - last < EMERGENCY_REPEAT:
            return
        self._emergency_alerted_at = now
        emergency = (a for a in plan.actions if a.reason.rule is Rule.EMERGENCY)
        reasons = sorted({a.reason.describe() for a in emergency})
        held = "" if not decision.denied else f" NOT ACTING: {decision.denied[0].reason}."
        await self.journal.enqueue_alert(
            AlertLevel.CRITICAL,
            f"[{self.name}] EMERGENCY ({state.value}).{held}\n" + "\n".join(reasons),
        )

    async def _alert_outcomes(
        self, outcomes: list[ActionOutcome], before: ScopeMetrics, after: ScopeMetrics
    ) -> None:
        done = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if o.status is ActionStatus.FAILED]
        for outcome in outcomes:
            if outcome.status is ActionStatus.UNKNOWN:
                await self.journal.enqueue_alert(
                    AlertLevel.WARNING,
                    f"[{self.name}] {describe_action(outcome.action)}: outcome UNKNOWN "
                    f"({outcome.error}); counted as done for the cooldown and the daily cap "
                    "until the venue says otherwise",
                )
        if done:
            lines = [f"{describe_action(o.action)} — {o.action.reason.describe()}" for o in done]
            lines.append(f"account leverage {_fmt(before.leverage)} -> {_fmt(after.leverage)}")
            text = f"[{self.name}] rebalanced:\n" + "\n".join(lines)
            await self.journal.enqueue_alert(AlertLevel.ACTION, text)
        for outcome in failed:
            await self.journal.enqueue_alert(
                AlertLevel.WARNING,
                f"[{self.name}] {describe_action(outcome.action)} FAILED: {outcome.error}",
            )


# How a cycle that ran to the end is journaled, by the account's state.
_CYCLE_STATUS = {
    TradingState.ACTIVE: CycleStatus.OK,
    TradingState.PAUSED: CycleStatus.PAUSED,
    TradingState.HALTED: CycleStatus.HALTED,
    TradingState.DRY_RUN: CycleStatus.DRY_RUN,
}


def _fmt(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
