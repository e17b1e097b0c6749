"""The policies a backtest compares. `levbot` is the daemon's own cycle (`AccountService`).

Each policy gets the simulated exchange once per cycle and acts through the Exchange
port only, the way a daemon would. `levbot` runs with the daemon's default protection
layers (DESIGN.md §11): the poll, the resting backstop ladder and the streaming trigger;
`levbot-poll` is the same cycle with the poll alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from bot.app.execute import execute_plan
from bot.app.service import AccountRuntime, AccountService
from bot.backtest.journal import MemoryJournal
from bot.domain.actions import (
    Action,
    MarginAdjustment,
    Order,
    Plan,
    Reason,
    Rule,
    Transfer,
)
from bot.domain.models import ZERO, MarginMode
from bot.domain.planner import plan_rebalance
from bot.domain.stops import BACKSTOP_OFF, BackstopSettings
from bot.domain.targets import Policy, Prefer, Target, Targets
from bot.domain.triggers import MarkTrigger, stream_triggers
from bot.exchange.sim.exchange import SimulatedExchange


class PolicyName(StrEnum):
    """The policies a backtest can compare, as `--policy` and the outputs name them."""

    # The daemon's defaults: poll + resting backstop + streaming trigger.
    LEVBOT = "levbot"
    # The same cycle on the poll alone (no backstop, no stream).
    LEVBOT_POLL = "levbot-poll"
    NONE = "none"
    AUTO_MARGIN = "auto-margin"
    PERIODIC = "periodic"


POLICY_NAMES: tuple[str, ...] = tuple(PolicyName)
# The exchange-style auto-add-margin fires when the margin ratio nears liquidation.
AUTO_MARGIN_TRIGGER = Decimal("0.8")
PERIODIC_EVERY = timedelta(days=1)
# The steady path skips a cycle only this far inside the last no-op cycle's triggers:
# far more than the digits by which a trigger computed at another mark differs, far
# less than a tick.
STEADY_MARGIN = Decimal("0.000001")


class BacktestPolicy:
    """A policy under test. It acts through the Exchange port only, like a daemon."""

    name: str

    @property
    def streams(self) -> bool:
        """Whether marks between polls can run the cycle (the streaming trigger)."""
        return False

    @property
    def rests_stops(self) -> bool:
        """Whether the policy keeps stops resting at the exchange (the backstop)."""
        return False

    def trigger(self, symbol: str) -> MarkTrigger | None:
        """The marks at which a streamed price runs the cycle (None: no stream)."""
        return None

    async def cycle(
        self,
        exchange: SimulatedExchange,
        now: datetime,
        log: MemoryJournal,
        may_skip: bool = False,
    ) -> None:
        """Runs on a bar's close every interval.

        `may_skip`: the next use of `trigger()` comes before the state or the mark
        changes (the next bar's stream, then its cycle), so a cycle that would do nothing
        may be skipped and its triggers computed when asked (`settle_trigger`).
        """
        return None

    async def settle_trigger(self, exchange: SimulatedExchange, adverse: Decimal) -> None:
        """Make `trigger()` exact where the path to `adverse` could reach it."""
        return None

    async def intrabar(
        self, exchange: SimulatedExchange, margin_ratio: Decimal, now: datetime, log: MemoryJournal
    ) -> None:
        """Runs at the bar's adverse extreme, before the liquidation check.

        Only the exchange's own machinery acts here (it watches continuously); a bot
        that polls on a schedule cannot.
        """
        return None

    # -- steady bars: what the replay may skip calling (see `_Replay._steady_bars`) --------
    # Each answers for the venue's state now; True must mean that the call it stands for
    # would do nothing at all (no order, no journal row, no change to the policy).

    def begin_steady(self, exchange: SimulatedExchange) -> None:
        """The replay starts a run of steady bars: until it ends, nothing at the venue
        changes but the marks (what the `quiet_*` answers may lean on)."""
        return None

    def quiet_path(self, symbol: str, adverse: Decimal) -> bool:
        """A path to `adverse` crosses no trigger and settles none (`settle_trigger`)."""
        return self.trigger(symbol) is None

    def quiet_intrabar(self, margin_ratio: Decimal) -> bool:
        """`intrabar` at this margin ratio does nothing."""
        return True

    async def quiet_cycle(
        self,
        exchange: SimulatedExchange,
        log: MemoryJournal,
        now_ms: int,
        symbol: str,
        close: Decimal,
        may_skip: bool,
    ) -> bool:
        """`cycle` with the mark of `symbol` at `close` (the venue's mark is still the
        last one) would do nothing but what `skip_cycle` records."""
        return True

    def skip_cycle(self, exchange: SimulatedExchange) -> None:
        """Record the cycle `quiet_cycle` vouched for, once the mark is at the close."""
        return None


@dataclass(slots=True)
class ClientIds:
    """Client ids `<policy>-1`, `<policy>-2`, ... for one replay."""

    prefix: str
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self) -> str:
        return f"{self.prefix}-{next(self._counter)}"


@dataclass(slots=True)
class LevbotPolicy(BacktestPolicy):
    """The daemon's own cycle: `AccountService` on the simulated exchange, journaling to
    the replay's `MemoryJournal`, on the replay's clock.

    `backstop` is the ladder the cycle keeps resting at the exchange (off: none), and
    `stream` whether the replay runs the cycle when a mark crosses the service's
    triggers between polls.
    """

    targets: Targets
    policy: Policy
    name: str = PolicyName.LEVBOT
    backstop: BackstopSettings = BACKSTOP_OFF
    stream: bool = False
    # Skip a cycle that would do nothing (see `cycle`): the same outputs, a tenth the time.
    steady: bool = True
    _service: AccountService | None = None
    # The steady path (issue 12 §4): the state after the last cycle, when that cycle
    # found every scope in band and did nothing, and the triggers it left.
    _steady: tuple[tuple[object, ...], dict[str, MarkTrigger]] | None = None
    # Set while the service's triggers are those of an earlier mark: the state and the
    # marks a skipped cycle saw, at which `settle_trigger` computes them as it would have.
    _skipped: tuple[tuple[object, ...], tuple[Decimal, ...]] | None = None
    # The state (stop book included) and targets at which the resting ladder was last
    # planned and found kept: see `_ladder_kept`.
    _kept: tuple[object, ...] | None = None
    # The venue's state during a run of steady bars (`begin_steady`), and the marks
    # beyond which the stream would act, for the triggers dict they were made from.
    _stretch: tuple[object, ...] | None = None
    _bounds: tuple[dict[str, MarkTrigger], Decimal | None, Decimal | None] | None = None

    @property
    def streams(self) -> bool:
        return self.stream

    @property
    def rests_stops(self) -> bool:
        return self.backstop.enabled

    def trigger(self, symbol: str) -> MarkTrigger | None:
        if not self.stream or self._service is None:
            return None
        return self._service.triggers.get(symbol)

    async def cycle(
        self,
        exchange: SimulatedExchange,
        now: datetime,
        log: MemoryJournal,
        may_skip: bool = False,
    ) -> None:
        if self.steady and (may_skip or not self.stream) and self._steady is not None:
            state = _state(exchange)
            if self._steady_at(exchange, state) and await self._ladder_kept(exchange, state, log):
                # What the cycle would do here: read the snapshot, plan nothing (every
                # scope stays inside the triggers the last cycle left, so in its band),
                # keep the ladder (checked), recompute the triggers (done when asked:
                # settle_trigger).
                self._skipped = (state, _marks(exchange))
                return
        self._skipped = None
        self._kept = None  # the cycle may change what the keeper holds resting
        if self._service is None:
            runtime = AccountRuntime(
                name=self.name,
                exchange=exchange,
                targets=self.targets,
                policy=self.policy,
                interval=timedelta(0),
                backstop=self.backstop,
            )
            self._service = AccountService(runtime, log, log.clock)
        report = await self._service.run_cycle()
        if report.error is not None and not report.outcomes:
            # The service turns a bug into a failed cycle (a daemon must go on); a replay
            # must not measure around one.
            raise RuntimeError(f"levbot cycle failed at {now.isoformat()}: {report.error}")
        if report.backstops.error is not None:
            raise RuntimeError(
                f"levbot backstop failed at {now.isoformat()}: {report.backstops.error}"
            )
        self._steady = None
        backstops = report.backstops
        if (
            report.error is None
            and report.plan is not None
            and not report.plan.actions
            and all(d.rule is None for d in report.plan.decisions)
            and not report.outcomes
            and not report.held_back
            and not (backstops.outcomes or backstops.fills or backstops.held_back)
            and self.targets.account.emergency_liquidation_distance is None
            and not self.targets.symbols
        ):
            self._steady = (_state(exchange), dict(self._service.triggers))

    def _steady_at(
        self,
        exchange: SimulatedExchange,
        now: tuple[object, ...],
        marks: dict[str, Decimal] | None = None,
    ) -> bool:
        """Whether a cycle now would do nothing: the state (`now`) is the last no-op
        cycle's and every mark (the venue's, or as given in `marks`) is inside that
        cycle's triggers (the planner acts only past them)."""
        if self._steady is None or self._service is None:
            return False
        state, triggers = self._steady
        if now != state:
            return False
        for symbol, trigger in triggers.items():
            mark = marks[symbol] if marks and symbol in marks else exchange.mark(symbol)
            if trigger.below is not None and mark <= trigger.below * (1 + STEADY_MARGIN):
                return False
            if trigger.above is not None and mark >= trigger.above * (1 - STEADY_MARGIN):
                return False
        return True

    async def _ladder_kept(
        self, exchange: SimulatedExchange, state: tuple[object, ...], log: MemoryJournal
    ) -> bool:
        """Whether the cycle would leave the resting ladder as it is.

        Planned as the cycle would, once per state: a replay has one leg, and a one-leg
        scope's ladder is a function of the state alone (each trigger is the price where
        the wallet and the leg reach the danger point, each size the cut back to target
        there); the mark a snapshot was taken at enters only through Decimal's 28th
        digit, far below a step or the re-price tolerance. A scope of several legs (each
        moving with the others from where it is) is planned at every cycle. `state` is
        `_state(exchange)`; the targets are the config's with the owner's overrides."""
        if self._service is None:
            return False
        keeper = self._service.keeper
        if not keeper.active:
            return True
        overrides = await log.target_overrides(self.name)
        single_leg = len(exchange.positions()) <= 1
        if single_leg and self._kept == (state, overrides):
            return True
        targets = await self._service.current_targets()
        snapshot = await exchange.fetch_snapshot(include_source=False)
        _, changes, _ = keeper.changes(snapshot, targets, self.policy)
        kept = not changes.place and not changes.cancel
        self._kept = (state, overrides) if kept and single_leg else None
        return kept

    def begin_steady(self, exchange: SimulatedExchange) -> None:
        self._stretch = _state(exchange)

    def quiet_path(self, symbol: str, adverse: Decimal) -> bool:
        # Clear of every trigger: `settle_trigger` finds nothing near and the stream
        # nothing crossed (each trigger is at least the steady margin inside).
        return not self.stream or self._service is None or self._clear_of_triggers(adverse)

    def _clear_of_triggers(self, adverse: Decimal) -> bool:
        """`adverse` is beyond every trigger of the service by the steady margin."""
        assert self._service is not None
        triggers = self._service.triggers
        bounds = self._bounds
        if bounds is None or bounds[0] is not triggers:
            values = triggers.values()
            below = [t.below * (1 + STEADY_MARGIN) for t in values if t.below is not None]
            above = [t.above * (1 - STEADY_MARGIN) for t in values if t.above is not None]
            bounds = self._bounds = (
                triggers, max(below) if below else None, min(above) if above else None
            )  # fmt: skip
        _, low, high = bounds
        return (low is None or adverse > low) and (high is None or adverse < high)

    async def quiet_cycle(
        self,
        exchange: SimulatedExchange,
        log: MemoryJournal,
        now_ms: int,
        symbol: str,
        close: Decimal,
        may_skip: bool,
    ) -> bool:
        # `cycle`'s own test for skipping, at the close, with the ladder's answer only
        # when it is already known for this state (planning it is `cycle`'s to do).
        if not (self.steady and (may_skip or not self.stream) and self._steady is not None):
            return False
        if self._service is None or self._stretch is None:
            return False
        state = self._stretch
        if not self._steady_at(exchange, state, {symbol: close}):
            return False
        if not self._service.keeper.active:
            return True
        overrides = await log.target_overrides(self.name)
        return self._kept == (state, overrides) and len(exchange.positions()) <= 1

    def skip_cycle(self, exchange: SimulatedExchange) -> None:
        assert self._stretch is not None  # quiet_cycle vouched with it
        self._skipped = (self._stretch, _marks(exchange))

    async def settle_trigger(self, exchange: SimulatedExchange, adverse: Decimal) -> None:
        if self._skipped is None or self._service is None:
            return
        if self._clear_of_triggers(adverse):
            # Triggers computed at the skipped cycle's mark differ from these in far
            # digits only: the path does not reach either.
            return
        if (_state(exchange), _marks(exchange)) != self._skipped:
            raise RuntimeError("backtest: a cycle was skipped whose triggers are now needed")
        # Exactly what the skipped cycle would have left: the same snapshot, targets, policy.
        snapshot = await exchange.fetch_snapshot(include_source=False)
        targets = await self._service.current_targets()
        self._service.triggers = stream_triggers(snapshot, targets, self.policy)
        self._skipped = None


@dataclass(slots=True)
class NonePolicy(BacktestPolicy):
    """Never act."""

    name: str = PolicyName.NONE

    async def cycle(
        self,
        exchange: SimulatedExchange,
        now: datetime,
        log: MemoryJournal,
        may_skip: bool = False,
    ) -> None:
        return None


@dataclass(slots=True)
class AutoMarginPolicy(BacktestPolicy):
    """Exchange-style auto-add-margin: near liquidation, add the position's initial margin.

    The exchange watches continuously, so this acts intra-bar at the adverse extreme.
    """

    initial_margin: Decimal
    name: str = PolicyName.AUTO_MARGIN
    ids: ClientIds = field(default_factory=lambda: ClientIds(PolicyName.AUTO_MARGIN))

    def quiet_intrabar(self, margin_ratio: Decimal) -> bool:
        return margin_ratio < AUTO_MARGIN_TRIGGER

    async def intrabar(
        self, exchange: SimulatedExchange, margin_ratio: Decimal, now: datetime, log: MemoryJournal
    ) -> None:
        if margin_ratio < AUTO_MARGIN_TRIGGER:
            return
        amount = min(self.initial_margin, exchange.source).quantize(Decimal("0.01"), ROUND_DOWN)
        positions = exchange.positions()
        if amount <= ZERO or not positions:
            return
        position = positions[0]
        reason = Reason(Rule.EMERGENCY, position.symbol, None, None, "auto-add margin")
        actions: list[Action] = [
            Transfer(currency=exchange.settle, amount=amount, into_derivatives=True, reason=reason)
        ]
        if position.margin_mode is MarginMode.ISOLATED:
            actions.append(
                MarginAdjustment(
                    symbol=position.symbol,
                    side=position.side,
                    amount=amount,
                    add=True,
                    reason=reason,
                )
            )
        await execute_plan(exchange, Plan(now, tuple(actions)), self.ids, log)


@dataclass(slots=True)
class PeriodicPolicy(BacktestPolicy):
    """Trade back to exactly the target once a day, with no band (a leveraged-token rebalance)."""

    target: Decimal
    slippage: Decimal
    name: str = PolicyName.PERIODIC
    ids: ClientIds = field(default_factory=lambda: ClientIds(PolicyName.PERIODIC))
    _next: datetime | None = None
    _next_ms: int | None = None

    async def quiet_cycle(
        self,
        exchange: SimulatedExchange,
        log: MemoryJournal,
        now_ms: int,
        symbol: str,
        close: Decimal,
        may_skip: bool,
    ) -> bool:
        # `now < self._next` as `cycle` asks it, on the millisecond clock the replay's
        # datetimes are made from (exact and in the same order).
        return self._next_ms is not None and now_ms < self._next_ms

    async def cycle(
        self,
        exchange: SimulatedExchange,
        now: datetime,
        log: MemoryJournal,
        may_skip: bool = False,
    ) -> None:
        if self._next is not None and now < self._next:
            return
        self._next = now + PERIODIC_EVERY
        self._next_ms = round(self._next.timestamp() * 1000)
        # A hair-thin band makes the planner move to the target on any deviation;
        # orders only (the source wallet is out of reach), both directions allowed.
        epsilon = self.target * Decimal("0.000001")
        targets = Targets(Target(self.target, self.target - epsilon, self.target + epsilon))
        policy = Policy(
            prefer=Prefer.ORDERS,
            allow_increase=True,
            source_floor=Decimal("1e30"),
            cooldown=timedelta(0),
            slippage_allowance=self.slippage,
        )
        snapshot = await exchange.fetch_snapshot()
        plan = plan_rebalance(snapshot, targets, policy, now)
        orders = tuple(a for a in plan.actions if isinstance(a, Order))
        await execute_plan(exchange, Plan(now, orders), self.ids, log)


def _state(exchange: SimulatedExchange) -> tuple[object, ...]:
    """Everything at the venue a cycle reads besides the marks."""
    return (
        exchange.wallet,
        exchange.source,
        tuple(
            (p.symbol, p.side, p.contracts, p.entry_price, p.margin_mode, p.isolated_margin)
            for p in exchange.positions()
        ),
        exchange.stop_revision,  # the stop book (it only grows: a new revision differs)
    )


def _marks(exchange: SimulatedExchange) -> tuple[Decimal, ...]:
    return tuple([exchange.mark(p.symbol) for p in exchange.positions()])
