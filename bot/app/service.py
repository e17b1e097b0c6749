"""One account's cycle (DESIGN.md §4), and the control surface the CLI and Telegram call.

fetch snapshot -> plan -> gate -> journal intent -> execute -> re-fetch and verify ->
journal result -> alert. Start-up reconciliation and crash recovery are the same path:
the first cycle of every process settles pending intents before anything is planned.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bot.app.execute import execute_plan
from bot.app.journal_port import CycleJournal
from bot.clock import Clock
from bot.domain.actions import ActionKind, Plan, Rule, describe_action
from bot.domain.gate import Denied, GateDecision, TradingState, gate, trading_state
from bot.domain.leverage import ScopeMetrics
from bot.domain.models import AccountSnapshot
from bot.domain.outcomes import ActionOutcome, ActionStatus
from bot.domain.planner import plan_rebalance
from bot.domain.summary import account_metrics
from bot.domain.targets import Policy, Targets
from bot.domain.vocabulary import ALL_ACCOUNTS, AlertLevel, CycleStatus
from bot.exchange.port import AuthenticationError, Exchange, ExchangeError, TemporaryError

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
    # The account's state as of the last cycle (None before the first).
    state: TradingState | None = None
    last_report: CycleReport | None = None
    failures_in_row: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _reconciled: bool = False
    _emergency_alerted_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def run_cycle(self) -> CycleReport:
        """One full cycle; never raises for exchange trouble (it is journaled instead)."""
        async with self._lock:
            report = await self._cycle()
        self.last_report = report
        return report

    async def preview(self) -> tuple[AccountSnapshot, Plan]:
        """What the bot would do right now (no journal writes, no exchange writes)."""
        snapshot = await self.runtime.exchange.fetch_snapshot()
        now = self.clock()
        targets = await self.current_targets()
        activity = await self.journal.recent_activity(self.name, now)
        return snapshot, plan_rebalance(snapshot, targets, self.runtime.policy, now, activity)

    async def current_targets(self) -> Targets:
        """Config targets with the owner's persisted overrides on top."""
        overrides = await self.journal.target_overrides(self.name)
        targets = self.runtime.targets
        account = overrides.get(None, targets.account)
        symbols = dict(targets.symbols)
        symbols.update({k: v for k, v in overrides.items() if k is not None})
        return replace(targets, account=account, symbols=symbols)

    async def trading_state(self) -> TradingState:
        paused = await self.journal.paused_accounts()
        return trading_state(
            halted=self.halted,
            paused=self.name in paused or ALL_ACCOUNTS in paused,
            dry_run=self.runtime.dry_run,
        )

    async def reconcile(self, current_cycle: int | None = None) -> list[str]:
        """Settle intents a previous process left pending, before anything new is planned.

        Orders are looked up by client id. Transfers and margin changes cannot be looked
        up everywhere: they are marked unknown and the owner is told; the fresh snapshot
        the next plan starts from already shows whatever they did, so nothing repeats.
        """
        notes: list[str] = []
        interrupted = await self.journal.close_interrupted_cycles(
            self.name, self.clock(), keep=current_cycle
        )
        if interrupted:
            notes.append(f"{interrupted} cycle(s) interrupted by the previous process")
        for intent in await self.journal.pending_intents(self.name):
            if intent.kind in (ActionKind.REDUCE_ORDER.value, ActionKind.INCREASE_ORDER.value):
                order = await self.runtime.exchange.fetch_order_by_client_id(
                    intent.symbol or "", intent.client_id
                )
                if order is None:
                    await self.journal.resolve_intent(
                        intent.client_id, ActionStatus.FAILED, error="never reached the exchange"
                    )
                    notes.append(f"{intent.client_id}: order never reached the exchange")
                elif (nothing := order.did_nothing) is not None:
                    await self.journal.resolve_intent(
                        intent.client_id, ActionStatus.FAILED, exchange_id=order.exchange_id,
                        error=nothing,
                    )  # fmt: skip
                    notes.append(f"{intent.client_id}: {nothing}")
                else:
                    await self.journal.resolve_intent(
                        intent.client_id, ActionStatus.OK, exchange_id=order.exchange_id,
                        filled=order.filled, fill_price=order.average_price, fee=order.fee,
                    )  # fmt: skip
                    notes.append(f"{intent.client_id}: order found ({order.status.value})")
            else:
                await self.journal.resolve_intent(
                    intent.client_id, ActionStatus.UNKNOWN,
                    error="interrupted; effect read from balances",
                )  # fmt: skip
                notes.append(f"{intent.client_id}: {intent.kind} interrupted, outcome unknown")
        if notes:
            await self.journal.enqueue_alert(
                AlertLevel.WARNING,
                f"[{self.name}] recovered after a restart:\n" + "\n".join(notes),
            )
        self._reconciled = True
        return notes

    async def _cycle(self) -> CycleReport:
        started = self.clock()
        cycle_id = await self.journal.start_cycle(self.name, started, run_id=self.run_id)
        try:
            report = await self._guarded_cycle(started, cycle_id)
        except AuthenticationError as error:
            report = await self._halt(started, cycle_id, error)
        except ExchangeError as error:
            report = await self._failed(started, error)
        except Exception as error:
            # A bug or a database hiccup must not leave the cycle `running` until a restart.
            # An exchange call it interrupted has an unknown outcome, as after a crash:
            # the next cycle reconciles first.
            logger.exception("%s: cycle failed unexpectedly", self.name)
            self._reconciled = False
            report = CycleReport(
                self.name, started, self.clock(), CycleStatus.FAILED,
                error=f"{type(error).__name__}: {error}",
            )  # fmt: skip
        await self.journal.finish_cycle(
            cycle_id, report.status, report.finished_at, list(report.notes), report.error
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

    async def _failed(self, started: datetime, error: ExchangeError) -> CycleReport:
        self.failures_in_row += 1
        kind = "unreachable" if isinstance(error, TemporaryError) else "error"
        logger.warning("%s: cycle failed (%s): %s", self.name, kind, error)
        if self.failures_in_row == self.runtime.unreachable_after:
            await self.journal.enqueue_alert(
                AlertLevel.WARNING,
                f"[{self.name}] exchange {kind} for {self.failures_in_row} cycles: {error}",
            )
        return CycleReport(self.name, started, self.clock(), CycleStatus.FAILED, error=str(error))

    async def _guarded_cycle(self, started: datetime, cycle_id: int) -> CycleReport:
        if not self._reconciled:
            await self.reconcile(cycle_id)
        exchange = self.runtime.exchange
        snapshot = await exchange.fetch_snapshot()
        if self.failures_in_row >= self.runtime.unreachable_after:
            await self.journal.enqueue_alert(
                AlertLevel.INFO, f"[{self.name}] exchange reachable again"
            )
        self.failures_in_row = 0
        before = account_metrics(snapshot)
        await self._record(snapshot, before, cycle_id)

        now = self.clock()
        targets = await self.current_targets()
        activity = await self.journal.recent_activity(self.name, now)
        plan = plan_rebalance(snapshot, targets, self.runtime.policy, now, activity)
        notes = [*plan.notes, *(n for d in plan.decisions for n in d.notes)]
        state = self.state = await self.trading_state()
        decision = gate(plan, state)
        if plan.emergency:
            await self._alert_emergency(plan, decision, state)
        else:
            self._emergency_alerted_at = None

        outcomes: list[ActionOutcome] = []
        if decision.denied:
            await self._journal_denied(cycle_id, decision, state)
            # For the journal's reader; channels use the typed `CycleReport.held_back`.
            notes.extend(f"held back: {d.action.kind.value}: {d.reason}" for d in decision.denied)
        if decision.allowed:
            recorder = self.journal.actions(self.name, cycle_id)
            outcomes = await execute_plan(exchange, decision.plan(plan), new_client_id, recorder)

        after = before
        if outcomes:
            verified = await exchange.fetch_snapshot()
            after = account_metrics(verified)
            await self._record(verified, after, cycle_id)
            await self._alert_outcomes(outcomes, before, after)

        status = _CYCLE_STATUS.get(state, CycleStatus.OK)
        if state is TradingState.DRY_RUN and not decision.denied:
            status = CycleStatus.OK
        if any(not o.ok for o in outcomes):
            status = CycleStatus.FAILED
        return CycleReport(
            self.name, started, self.clock(), status, plan, tuple(outcomes), decision.denied,
            before, after, tuple(notes),
        )  # fmt: skip

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
        failed = [o for o in outcomes if not o.ok]
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
