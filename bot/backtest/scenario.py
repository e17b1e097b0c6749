"""What a backtest replays: the scenario (the market, the position, the band, the outage)
and the policies it compares, built by name."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.backtest.policies import (
    POLICY_NAMES,
    AutoMarginPolicy,
    BacktestPolicy,
    LevbotPolicy,
    NonePolicy,
    PeriodicPolicy,
    PolicyName,
)
from bot.domain.models import MarginMode, MarketRules, Side
from bot.domain.stops import BackstopSettings
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.sim.markets import binance_usdm_markets

# The ladder the daemon keeps by default (`[accounts.backstop]` left out).
DAEMON_BACKSTOP = BackstopSettings()


class ScenarioError(ValueError):
    """The backtest arguments cannot describe a run; the message names the argument."""


@dataclass(frozen=True, slots=True)
class Scenario:
    symbol: str
    side: Side
    target: Target
    margin_mode: MarginMode = MarginMode.CROSS
    equity: Decimal = Decimal(10000)
    reserve: Decimal = Decimal(5000)
    interval_ms: int = 300_000
    fee: Decimal = Decimal("0.0005")
    slippage: Decimal = Decimal("0.0005")
    policies: tuple[str, ...] = POLICY_NAMES
    # The levbot policy's `release_excess`: surplus goes back to the reserve below the band.
    release_excess: bool = True
    # [start, end) in ms: the daemon is down (no poll, no stream); resting stops still act.
    outage: tuple[int, int] | None = None
    # The `levbot` policy's ladder: the daemon's defaults unless a study says otherwise.
    backstop: BackstopSettings = DAEMON_BACKSTOP
    # Skip the `levbot` cycles that would do nothing (`LevbotPolicy.steady`) and run the
    # bars where nothing can act without calling the policies (`_Replay._steady_bars`);
    # the outputs are the same either way (tests compare both), only the time differs.
    steady_path: bool = True

    def in_outage(self, timestamp: int) -> bool:
        return self.outage is not None and self.outage[0] <= timestamp < self.outage[1]

    def market(self) -> MarketRules:
        markets = binance_usdm_markets(taker_fee=self.fee)
        if self.symbol not in markets:
            raise ScenarioError(
                f"--symbol {self.symbol}: the simulator knows {', '.join(sorted(markets))}"
            )
        return markets[self.symbol]


def make_policy(name: str, scenario: Scenario) -> BacktestPolicy:
    target = scenario.target
    if name in (PolicyName.LEVBOT, PolicyName.LEVBOT_POLL):
        policy = Policy(
            slippage_allowance=scenario.slippage, release_excess=scenario.release_excess
        )
        if name == PolicyName.LEVBOT_POLL:
            return LevbotPolicy(
                Targets(target), policy, name=PolicyName.LEVBOT_POLL, steady=scenario.steady_path
            )
        # The daemon's defaults: the backstop ladder and the streaming trigger.
        return LevbotPolicy(
            Targets(target),
            policy,
            name=name,
            backstop=scenario.backstop,
            stream=True,
            steady=scenario.steady_path,
        )
    if name == PolicyName.NONE:
        return NonePolicy()
    if name == PolicyName.AUTO_MARGIN:
        return AutoMarginPolicy(initial_margin=scenario.equity)
    if name == PolicyName.PERIODIC:
        return PeriodicPolicy(target.leverage, scenario.slippage)
    raise ScenarioError(f"--policy {name}: unknown ({', '.join(POLICY_NAMES)})")
