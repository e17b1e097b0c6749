"""Replay a price file through each policy on its own simulated exchange (DESIGN.md §8)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from bot.backtest.journal import MemoryJournal
from bot.backtest.policies import (
    POLICY_NAMES,
    AutoMarginPolicy,
    BacktestPolicy,
    LevbotPolicy,
    NonePolicy,
    PeriodicPolicy,
    PolicyName,
)
from bot.domain.actions import Action, ActionKind, Order
from bot.domain.leverage import maintenance_from_tiers, round_down
from bot.domain.models import ZERO, MarginMode, MarketRules, Side
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.port import OrderResult
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.exchange.sim.prices import Bar, FundingRate, PriceSeries


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

    def market(self) -> MarketRules:
        markets = binance_usdm_markets(taker_fee=self.fee)
        if self.symbol not in markets:
            raise ScenarioError(
                f"--symbol {self.symbol}: the simulator knows {', '.join(sorted(markets))}"
            )
        return markets[self.symbol]


@dataclass(frozen=True, slots=True)
class ActionRow:
    timestamp: int
    kind: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal | None
    notional: Decimal
    fee: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class TimelineRow:
    timestamp: int
    price: Decimal
    wallet: Decimal
    equity: Decimal
    notional: Decimal
    leverage: Decimal | None
    margin_ratio: Decimal | None
    source_balance: Decimal


@dataclass(slots=True)
class PolicyResult:
    name: str
    actions: list[ActionRow] = field(default_factory=list)
    timeline: list[TimelineRow] = field(default_factory=list)
    liquidation_time: int | None = None
    max_leverage: Decimal = ZERO
    bars_in_band: int = 0
    bars: int = 0
    max_margin_ratio: Decimal = ZERO
    failed_actions: int = 0
    fees_paid: Decimal = ZERO
    slippage_cost: Decimal = ZERO
    final_equity: Decimal = ZERO

    def summary(self) -> dict[str, object]:
        def count(*kinds: ActionKind) -> int:
            return sum(1 for a in self.actions if a.kind in {k.value for k in kinds})

        def total(kind: ActionKind, attr: str) -> float:
            return float(sum((getattr(a, attr) for a in self.actions if a.kind == kind), ZERO))

        return {
            "liquidated": self.liquidation_time is not None,
            "liquidation_time": _iso(self.liquidation_time),
            "max_leverage": _round(self.max_leverage),
            "time_in_band": round(self.bars_in_band / self.bars, 4) if self.bars else 0.0,
            "min_margin_headroom": _round(1 - self.max_margin_ratio),
            "transfers": count(
                ActionKind.TRANSFER_IN,
                ActionKind.TRANSFER_OUT,
                ActionKind.ADD_MARGIN,
                ActionKind.REDUCE_MARGIN,
            ),
            "orders": count(ActionKind.REDUCE_ORDER, ActionKind.INCREASE_ORDER),
            "collateral_added": round(total(ActionKind.TRANSFER_IN, "amount"), 2),
            "notional_reduced": round(total(ActionKind.REDUCE_ORDER, "notional"), 2),
            "fees_paid": _round(self.fees_paid),
            "slippage_cost": _round(self.slippage_cost),
            "final_equity": _round(self.final_equity),
            "failed_actions": self.failed_actions,
        }


def _round(value: Decimal, places: int = 4) -> float:
    return round(float(value), places)


def _iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return _time(timestamp).isoformat().replace("+00:00", "Z")


def _time(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp / 1000, UTC)


def run_backtest(
    scenario: Scenario,
    series: PriceSeries,
    funding: Sequence[FundingRate] = (),
    on_bar: Callable[[str], None] | None = None,
) -> dict[str, PolicyResult]:
    """Run every policy of the scenario over the same bars; results by policy name."""
    scenario.market()
    return asyncio.run(_run_all(scenario, series, funding, on_bar))


async def _run_all(
    scenario: Scenario,
    series: PriceSeries,
    funding: Sequence[FundingRate],
    on_bar: Callable[[str], None] | None,
) -> dict[str, PolicyResult]:
    results: dict[str, PolicyResult] = {}
    for name in scenario.policies:
        results[name] = await _Replay(scenario, series.bars, funding, name, on_bar).run()
    return results


def make_policy(name: str, scenario: Scenario) -> BacktestPolicy:
    target = scenario.target
    if name == PolicyName.LEVBOT:
        policy = Policy(
            slippage_allowance=scenario.slippage, release_excess=scenario.release_excess
        )
        return LevbotPolicy(Targets(target), policy)
    if name == PolicyName.NONE:
        return NonePolicy()
    if name == PolicyName.AUTO_MARGIN:
        return AutoMarginPolicy(initial_margin=scenario.equity)
    if name == PolicyName.PERIODIC:
        return PeriodicPolicy(target.leverage, scenario.slippage)
    raise ScenarioError(f"--policy {name}: unknown ({', '.join(POLICY_NAMES)})")


class _Replay:
    """One policy over the bars, on a fresh simulated exchange."""

    def __init__(
        self,
        scenario: Scenario,
        bars: Sequence[Bar],
        funding: Sequence[FundingRate],
        policy_name: str,
        on_bar: Callable[[str], None] | None,
    ) -> None:
        self.scenario = scenario
        self.bars = bars
        self.funding = funding
        self.policy = make_policy(policy_name, scenario)
        self.on_bar = on_bar
        self.result = PolicyResult(policy_name)
        self.log = MemoryJournal(clock=lambda: self.now)
        self.rules = scenario.market()
        self.now = _time(bars[0].timestamp)
        self.exchange = SimulatedExchange(
            markets={scenario.symbol: self.rules},
            clock=lambda: self.now,
            derivatives=scenario.equity,
            source=scenario.reserve,
            slippage=scenario.slippage,
        )

    async def run(self) -> PolicyResult:
        scenario, symbol = self.scenario, self.scenario.symbol
        first = self.bars[0]
        self._open(first)
        funding_index = 0
        while (
            funding_index < len(self.funding)
            and self.funding[funding_index].timestamp <= first.timestamp
        ):
            funding_index += 1
        next_cycle = first.timestamp
        for bar in self.bars:
            self.now = _time(bar.timestamp)
            if bar is not first:
                adverse = {Side.LONG: bar.low, Side.SHORT: bar.high}
                seen = len(self.log.outcomes)
                ratio = self._margin_ratio(adverse[scenario.side])
                await self.policy.intrabar(self.exchange, ratio, self.now, self.log)
                self._record_actions(seen, bar)
                self.result.max_margin_ratio = max(
                    self.result.max_margin_ratio, self._margin_ratio(adverse[scenario.side])
                )
                if self.exchange.check_liquidation(symbol, adverse):
                    self.result.liquidation_time = bar.timestamp
                    self._timeline(bar)
                    if self.on_bar is not None:
                        self.on_bar(self.result.name)
                    break
                self.exchange.set_mark(symbol, bar.close)
                while (
                    funding_index < len(self.funding)
                    and self.funding[funding_index].timestamp <= bar.timestamp
                ):
                    self.exchange.apply_funding(symbol, self.funding[funding_index].rate)
                    funding_index += 1
            self._track_leverage(before_cycle=True)
            if bar.timestamp >= next_cycle:
                seen = len(self.log.outcomes)
                await self.policy.cycle(self.exchange, self.now, self.log)
                self._record_actions(seen, bar)
                self._timeline(bar)
                offset = (bar.timestamp - first.timestamp) % scenario.interval_ms
                next_cycle = bar.timestamp - offset + scenario.interval_ms
            self._track_leverage(before_cycle=False)
            if self.on_bar is not None:
                self.on_bar(self.result.name)
        self.result.final_equity = self._equity() + self.exchange.source
        return self.result

    def _open(self, bar: Bar) -> None:
        scenario = self.scenario
        self.exchange.set_mark(scenario.symbol, bar.close)
        step = self.rules.amount_step or Decimal("0.001")
        contracts = round_down(
            scenario.target.leverage * scenario.equity / (bar.close * self.rules.contract_size),
            step,
        )
        if contracts <= ZERO:
            raise ScenarioError("--equity is too small to open a position of one contract")
        if scenario.margin_mode is MarginMode.ISOLATED:
            self.exchange.open_position(
                scenario.symbol,
                scenario.side,
                contracts,
                margin_mode=MarginMode.ISOLATED,
                isolated_margin=scenario.equity,
            )
        else:
            self.exchange.open_position(scenario.symbol, scenario.side, contracts)

    def _scope(self, mark: Decimal | None = None) -> tuple[Decimal, Decimal, Decimal]:
        """(equity, notional, maintenance) of the position's scope at `mark`."""
        symbol = self.scenario.symbol
        price = mark if mark is not None else self.exchange.mark(symbol)
        positions = self.exchange.positions()
        if not positions:
            return self._equity(), ZERO, ZERO
        if self.scenario.margin_mode is MarginMode.ISOLATED:
            pos = positions[0]
            size = pos.contracts * self.rules.contract_size
            equity = pos.isolated_margin + pos.side.sign * size * (price - pos.entry_price)
            maintenance = maintenance_from_tiers(self.rules.tiers, size * price)
            return equity, size * price, maintenance
        marks = {symbol: price}
        equity = self.exchange.cross_equity(marks)
        gross = sum((p.contracts * self.rules.contract_size * price for p in positions), ZERO)
        return equity, gross, self.exchange.cross_maintenance(marks)

    def _equity(self) -> Decimal:
        """Derivatives equity: cross equity plus every isolated leg's equity."""
        equity = self.exchange.cross_equity()
        for pos in self.exchange.positions():
            if pos.margin_mode is MarginMode.ISOLATED:
                mark = self.exchange.mark(pos.symbol)
                size = pos.contracts * self.rules.contract_size
                equity += pos.isolated_margin + pos.side.sign * size * (mark - pos.entry_price)
        return equity

    def _margin_ratio(self, adverse: Decimal) -> Decimal:
        """Margin ratio at the bar's adverse extreme, capped at 1 (liquidation)."""
        equity, _, maintenance = self._scope(adverse)
        if maintenance <= ZERO:
            return ZERO
        return min(maintenance / equity, Decimal(1)) if equity > ZERO else Decimal(1)

    def _track_leverage(self, *, before_cycle: bool) -> None:
        equity, gross, _ = self._scope()
        leverage = gross / equity if equity > ZERO else None
        if before_cycle:
            if leverage is not None:
                self.result.max_leverage = max(self.result.max_leverage, leverage)
            return
        self.result.bars += 1
        if leverage is not None and self.scenario.target.contains(leverage):
            self.result.bars_in_band += 1

    def _timeline(self, bar: Bar) -> None:
        equity, gross, maintenance = self._scope()
        leverage = gross / equity if equity > ZERO else None
        ratio = maintenance / equity if equity > ZERO else None
        self.result.timeline.append(
            TimelineRow(
                timestamp=bar.timestamp,
                price=bar.close,
                wallet=self.exchange.wallet,
                equity=self._equity(),
                notional=gross,
                leverage=leverage,
                margin_ratio=ratio,
                source_balance=self.exchange.source,
            )
        )

    def _record_actions(self, seen: int, bar: Bar) -> None:
        for _, outcome in self.log.outcomes[seen:]:
            if not outcome.ok:
                self.result.failed_actions += 1
                continue
            self.result.actions.append(self._row(outcome.action, outcome.receipt, bar))

    def _row(self, action: Action, receipt: object, bar: Bar) -> ActionRow:
        reason = action.reason.describe()
        if isinstance(action, Order) and isinstance(receipt, OrderResult):
            price = receipt.average_price or bar.close
            size = receipt.filled * self.rules.contract_size
            self.result.fees_paid += receipt.fee
            self.result.slippage_cost += abs(price - bar.close) * size
            return ActionRow(
                bar.timestamp,
                action.kind.value,
                action.symbol,
                receipt.side.value,
                receipt.filled,
                price,
                size * price,
                receipt.fee,
                reason,
            )
        kind = action.kind
        if kind in (ActionKind.TRANSFER_IN, ActionKind.TRANSFER_OUT):
            side = "in" if kind is ActionKind.TRANSFER_IN else "out"
            symbol = self.scenario.symbol.split(":")[-1]
        else:
            side = "add" if kind is ActionKind.ADD_MARGIN else "remove"
            symbol = self.scenario.symbol
        return ActionRow(
            bar.timestamp,
            kind.value,
            symbol,
            side,
            action.amount,
            None,
            action.amount,
            ZERO,
            reason,
        )
