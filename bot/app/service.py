"""One account's cycle (DESIGN.md §4), and the control surface the CLI and Telegram call.

fetch snapshot -> plan -> gate -> journal intent -> execute -> re-fetch and verify ->
journal result -> alert. Start-up reconciliation and crash recovery are the same path:
the first cycle of every process settles pending intents before anything is planned.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bot.app.execute import ActionOutcome, execute_plan
from bot.domain.actions import Action, ActionKind, Order, Plan, Rule
from bot.domain.gate import GateDecision, TradingState, gate
from bot.domain.leverage import ScopeMetrics
from bot.domain.models import AccountSnapshot
from bot.domain.planner import plan_rebalance
from bot.domain.summary import account_metrics
from bot.domain.targets import Policy, Targets
from bot.exchange.port import AuthenticationError, Exchange, ExchangeError, TemporaryError
from bot.store.journal import Journal

logger = logging.getLogger(__name__)

INFO, ACTION, WARNING, CRITICAL = "info", "action", "warning", "critical"
# While an emergency lasts (e.g. on a paused account), repeat its alert this often.
EMERGENCY_REPEAT = timedelta(minutes=15)
# Order states that mean the exchange did nothing, when nothing was filled.
DEAD_ORDER_STATES = frozenset({"canceled", "cancelled", "rejected", "expired"})


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
    status: str  # ok | failed | paused | halted | dry_run
    plan: Plan | None = None
    outcomes: tuple[ActionOutcome, ...] = ()
    before: ScopeMetrics | None = None
    after: ScopeMetrics | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None


def new_client_id(action: Action) -> str:
    """Alphanumeric, <= 32 chars: valid as Binance, Bybit and OKX client order ids."""
    return "lb" + uuid.uuid4().hex[:28]


@dataclass(slots=True)
class AccountService:
    """Runs cycles for one account, one at a time."""

    runtime: AccountRuntime
    journal: Journal
    clock: Callable[[], datetime]
    state: TradingState = TradingState.ACTIVE
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
        if self.state is TradingState.HALTED:
            return self.state
        paused = await self.journal.paused_accounts()
        if self.name in paused or "*" in paused:
            return TradingState.PAUSED
        return TradingState.ACTIVE

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
                        intent.client_id, "failed", error="never reached the exchange"
                    )
                    notes.append(f"{intent.client_id}: order never reached the exchange")
                elif order.status in DEAD_ORDER_STATES and order.filled == 0:
                    await self.journal.resolve_intent(
                        intent.client_id, "failed", exchange_id=order.exchange_id,
                        error=f"order {order.status} with nothing filled",
                    )  # fmt: skip
                    notes.append(f"{intent.client_id}: order {order.status}, nothing filled")
                else:
                    await self.journal.resolve_intent(
                        intent.client_id, "ok", exchange_id=order.exchange_id,
                        filled=order.filled, fill_price=order.average_price, fee=order.fee,
                    )  # fmt: skip
                    notes.append(f"{intent.client_id}: order found ({order.status})")
            else:
                await self.journal.resolve_intent(
                    intent.client_id, "unknown", error="interrupted; effect read from balances"
                )
                notes.append(f"{intent.client_id}: {intent.kind} interrupted, outcome unknown")
        if notes:
            await self.journal.enqueue_alert(
                WARNING, f"[{self.name}] recovered after a restart:\n" + "\n".join(notes)
            )
        self._reconciled = True
        return notes

    async def _cycle(self) -> CycleReport:
        started = self.clock()
        cycle_id = await self.journal.start_cycle(self.name, started)
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
                self.name, started, self.clock(), "failed", error=f"{type(error).__name__}: {error}"
            )
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
                    intent.client_id, "failed", error=f"AuthenticationError: {error}"
                )
        if self.state is not TradingState.HALTED:
            # Alert once, on the way in: a halted account keeps cycling (and watching).
            self.state = TradingState.HALTED
            await self.journal.enqueue_alert(
                CRITICAL, f"[{self.name}] HALTED: {error}. Fix the API keys, then restart."
            )
        return CycleReport(self.name, started, self.clock(), "halted", error=str(error))

    async def _failed(self, started: datetime, error: ExchangeError) -> CycleReport:
        self.failures_in_row += 1
        kind = "unreachable" if isinstance(error, TemporaryError) else "error"
        logger.warning("%s: cycle failed (%s): %s", self.name, kind, error)
        if self.failures_in_row == self.runtime.unreachable_after:
            await self.journal.enqueue_alert(
                WARNING,
                f"[{self.name}] exchange {kind} for {self.failures_in_row} cycles: {error}",
            )
        return CycleReport(self.name, started, self.clock(), "failed", error=str(error))

    async def _guarded_cycle(self, started: datetime, cycle_id: int) -> CycleReport:
        if not self._reconciled:
            await self.reconcile(cycle_id)
        exchange = self.runtime.exchange
        snapshot = await exchange.fetch_snapshot()
        if self.failures_in_row >= self.runtime.unreachable_after:
            await self.journal.enqueue_alert(INFO, f"[{self.name}] exchange reachable again")
        self.failures_in_row = 0
        before = account_metrics(snapshot)
        await self._record(snapshot, before, cycle_id)

        now = self.clock()
        targets = await self.current_targets()
        activity = await self.journal.recent_activity(self.name, now)
        plan = plan_rebalance(snapshot, targets, self.runtime.policy, now, activity)
        notes = [*plan.notes, *(n for d in plan.decisions for n in d.notes)]
        state = await self.trading_state()
        decision = gate(plan, state, self.runtime.dry_run)
        if plan.emergency:
            await self._alert_emergency(plan, decision, state)
        else:
            self._emergency_alerted_at = None

        outcomes: list[ActionOutcome] = []
        if decision.denied:
            await self._journal_denied(cycle_id, decision, state)
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

        status = "ok"
        if state is TradingState.HALTED:
            status = "halted"
        elif state is TradingState.PAUSED:
            status = "paused"
        elif self.runtime.dry_run and decision.denied:
            status = "dry_run"
        if any(not o.ok for o in outcomes):
            status = "failed"
        return CycleReport(
            self.name, started, self.clock(), status, plan, tuple(outcomes), before, after,
            tuple(notes),
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
        if not self.runtime.dry_run or state in (TradingState.PAUSED, TradingState.HALTED):
            return
        recorder = self.journal.actions(self.name, cycle_id, dry_run=True)
        for denied in decision.denied:
            client_id = new_client_id(denied.action)
            await recorder.intent(denied.action, client_id)
            await recorder.result(ActionOutcome(denied.action, client_id, None, "dry run"))
        lines = [f"would {describe(d.action)}" for d in decision.denied]
        await self.journal.enqueue_alert(INFO, f"[{self.name}] dry run:\n" + "\n".join(lines))

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
            CRITICAL, f"[{self.name}] EMERGENCY ({state.value}).{held}\n" + "\n".join(reasons)
        )

    async def _alert_outcomes(
        self, outcomes: list[ActionOutcome], before: ScopeMetrics, after: ScopeMetrics
    ) -> None:
        done = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]
        if done:
            lines = [f"{describe(o.action)} — {o.action.reason.describe()}" for o in done]
            lines.append(f"account leverage {_fmt(before.leverage)} -> {_fmt(after.leverage)}")
            text = f"[{self.name}] rebalanced:\n" + "\n".join(lines)
            await self.journal.enqueue_alert(ACTION, text)
        for outcome in failed:
            await self.journal.enqueue_alert(
                WARNING, f"[{self.name}] {describe(outcome.action)} FAILED: {outcome.error}"
            )


def describe(action: Action) -> str:
    """One short human line for an action."""
    if isinstance(action, Order):
        return (
            f"{action.order_side.value} {action.amount} {action.symbol} "
            f"({'reduce-only' if action.reduce_only else 'increase'}, ~{action.notional:.2f})"
        )
    kind = action.kind.value.replace("_", " ")
    where = getattr(action, "symbol", None) or getattr(action, "currency", "")
    return f"{kind} {action.amount} {where}".strip()


def _fmt(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
