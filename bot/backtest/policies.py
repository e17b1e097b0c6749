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
from bot.domain.triggers import MarkTrigger
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

    async def cycle(self, exchange: SimulatedExchange, now: datetime, log: MemoryJournal) -> None:
        """Runs on a bar's close every interval."""
        return None

    async def intrabar(
        self, exchange: SimulatedExchange, margin_ratio: Decimal, now: datetime, log: MemoryJournal
    ) -> None:
        """Runs at the bar's adverse extreme, before the liquidation check.

        Only the exchange's own machinery acts here (it watches continuously); a bot
        that polls on a schedule cannot.
        """
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
    _service: AccountService | None = None

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

    async def cycle(self, exchange: SimulatedExchange, now: datetime, log: MemoryJournal) -> None:
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


@dataclass(slots=True)
class NonePolicy(BacktestPolicy):
    """Never act."""

    name: str = PolicyName.NONE

    async def cycle(self, exchange: SimulatedExchange, now: datetime, log: MemoryJournal) -> None:
        return None


@dataclass(slots=True)
class AutoMarginPolicy(BacktestPolicy):
    """Exchange-style auto-add-margin: near liquidation, add the position's initial margin.

    The exchange watches continuously, so this acts intra-bar at the adverse extreme.
    """

    initial_margin: Decimal
    name: str = PolicyName.AUTO_MARGIN
    ids: ClientIds = field(default_factory=lambda: ClientIds(PolicyName.AUTO_MARGIN))

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

    async def cycle(self, exchange: SimulatedExchange, now: datetime, log: MemoryJournal) -> None:
        if self._next is not None and now < self._next:
            return
        self._next = now + PERIODIC_EVERY
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
