"""Replay a price file through each policy on its own simulated exchange (DESIGN.md §8).

Within a bar the price is taken to go from the open to the adverse extreme first (the
low for a long, the high for a short), then to the close. Along that path, in order:

1. the streaming trigger (policies with a stream, outside an outage): where the path
   crosses the service's trigger on the adverse side (`below` for a long, `above` for
   a short) the mark is set to the crossing (a millionth past the trigger, or the
   bar's open when the bar opened past it) and the cycle runs there, so its market
   orders fill at that mark moved by the slippage; then again from there with the
   triggers that cycle left (at most `MAX_STREAM_CYCLES` per bar; a cycle that could not
   act runs again each `RETRIGGER_STEP` further). The favourable side (re-levering
   below the band) waits for the poll: it is never urgent;
2. the resting stops (the backstop ladder) the path reaches, nearest the open first,
   interleaved with the stream by price: each fills at its trigger moved by the
   slippage, or at the open on a gap (`SimulatedExchange.trigger_stops`);
3. the liquidation check at the adverse extreme (also just before each stream cycle
   and stop fill: a position dead on the way down does not get saved further down);
4. the close: the mark, funding, and the poll cycle on its schedule.

On 1m data with a 5m cycle the stream and the stops act on every 1m bar, the poll on
every fifth. During `Scenario.outage` no policy's cycle runs (no poll, no stream): only
what rests at the exchange acts (the backstop, and the exchange's own auto-margin).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from datetime import datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

from bot.backtest.journal import MemoryJournal
from bot.backtest.results import (
    ActionRow,
    PolicyResult,
    ReplayEvent,
    TimelineRow,
    utc,
)
from bot.backtest.scenario import Scenario, ScenarioError, make_policy
from bot.domain.actions import Action, ActionKind, CancelStop, Order, PlaceStop, StopFilled
from bot.domain.leverage import maintenance_from_tiers, round_down, tier_brackets
from bot.domain.models import ZERO, MarginMode, MarketRules, Side
from bot.domain.stops import StopOrder
from bot.exchange.port import OrderResult
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.positions import SimPosition
from bot.exchange.sim.prices import Bar, FundingRate, PriceSeries

__all__ = [
    "ActionRow",
    "PolicyResult",
    "Scenario",
    "ScenarioError",
    "TimelineRow",
    "make_policy",
    "run_backtest",
]

# A bar that keeps crossing fresh triggers runs the cycle at most this often: a bound,
# not a debounce (each run needs the mark to have moved on past the last one).
MAX_STREAM_CYCLES = 50
# How far past a trigger the stream's first mark is: far below any venue's tick, so it
# moves no money, but past the band edge, where the planner acts.
PAST_TRIGGER = Decimal("0.000001")
# A cycle that could not act is run again when the mark has moved this much further.
RETRIGGER_STEP = Decimal("0.005")


def run_backtest(
    scenario: Scenario,
    series: PriceSeries,
    funding: Sequence[FundingRate] = (),
    on_bar: Callable[[str], None] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> dict[str, PolicyResult]:
    """Run every policy of the scenario over the same bars; results by policy name.

    `on_bar(policy)` is called once per bar replayed (progress); `meanwhile()` is work
    this process may do while a forked replay finishes (it may not be called at all)."""
    scenario.market()
    names = scenario.policies
    if len(names) > 1 and (os.cpu_count() or 1) > 1 and _can_fork():
        # Policies replay independently (each on its own exchange): the costliest, the
        # daemon's own cycle, runs in a forked child while this process runs the others.
        # Results are the same values either way, gathered in the scenario's order.
        heavy = next((n for n in names if n in _HEAVY), names[0])
        rest = replace(scenario, policies=tuple(n for n in names if n != heavy))
        with _Forked(scenario, series, funding, heavy, on_bar) as child:
            results = _run_all(rest, series, funding, child.tick)
            if meanwhile is not None and not child.ready():
                meanwhile()
            results[heavy] = child.result()
        return {name: results[name] for name in names}
    return _run_all(scenario, series, funding, on_bar)


# The policies that run the daemon's cycle: far costlier per bar than the baselines.
_HEAVY = ("levbot", "levbot-poll")


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class _Forked:
    """One policy replayed in a forked child.

    The child inherits the bars (a fork copies nothing until written; pickling 60,000
    bars cost more than replaying them), counts its bars in shared memory for the
    progress, and sends its result back with the timeline as columns of strings (what
    pickle makes of a Decimal anyway, without its per-row overhead).
    """

    def __init__(
        self,
        scenario: Scenario,
        series: PriceSeries,
        funding: Sequence[FundingRate],
        name: str,
        on_bar: Callable[[str], None] | None,
    ) -> None:
        context = multiprocessing.get_context("fork")
        self._name = name
        self._on_bar = on_bar
        self._done = context.Value("q", 0, lock=False)  # bars the child replayed
        self._reported = 0  # of those, passed on to on_bar
        self._own = 0  # bars this process replayed
        self._reader, writer = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_replay_child, args=(writer, self._done, scenario, series, funding, name),
            daemon=True,
        )  # fmt: skip
        self._process.start()
        writer.close()

    def __enter__(self) -> _Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._reader.close()

    def tick(self, name: str) -> None:
        """This process replayed a bar of `name`: report it, and now and then the child's."""
        if self._on_bar is None:
            return
        self._on_bar(name)
        self._own += 1
        if self._own % 500 == 0:
            self._sync()

    def _sync(self) -> None:
        if self._on_bar is None:
            return
        done = int(self._done.value)
        for _ in range(done - self._reported):
            self._on_bar(self._name)
        self._reported = done

    def ready(self) -> bool:
        """Whether the child's result (or error) is waiting to be read."""
        return self._reader.poll()

    def result(self) -> PolicyResult:
        while not self._reader.poll(0.2):
            self._sync()
            if not self._process.is_alive() and not self._reader.poll():
                raise RuntimeError(f"backtest: the replay of {self._name} died")
        self._sync()
        try:
            kind, payload = self._reader.recv()
        except EOFError:
            raise RuntimeError(f"backtest: the replay of {self._name} died") from None
        if kind == "error":
            raise payload
        return _unpack(*payload)


def _replay_child(
    writer: Connection,
    done: Synchronized[int],
    scenario: Scenario,
    series: PriceSeries,
    funding: Sequence[FundingRate],
    name: str,
) -> None:
    def tick(_: str) -> None:
        done.value += 1

    try:
        only = replace(scenario, policies=(name,))
        message: tuple[str, object] = ("result", _pack(_run_all(only, series, funding, tick)[name]))
    except BaseException as error:  # the parent raises it (a bug must not be measured around)
        message = ("error", error)
    try:
        writer.send(message)
    except Exception as unsendable:  # an exception that does not pickle: its text then
        writer.send(("error", RuntimeError(f"backtest: {name}: {message[1]!r} ({unsendable})")))
    writer.close()


_TIMELINE_FIELDS = tuple(f.name for f in fields(TimelineRow))
_Column = list[int | str | None]


def _pack(result: PolicyResult) -> tuple[PolicyResult, list[_Column]]:
    """`result` without its timeline, and the timeline as columns: an int stays an int,
    None stays None, a Decimal becomes its exact string (exponent included)."""
    rows = (tuple(getattr(row, name) for name in _TIMELINE_FIELDS) for row in result.timeline)
    columns = [
        [v if v is None or isinstance(v, int) else str(v) for v in column]
        for column in zip(*rows, strict=True)
    ]
    return replace(result, timeline=[]), columns


def _unpack(result: PolicyResult, columns: list[_Column]) -> PolicyResult:
    decoded = [[Decimal(v) if isinstance(v, str) else v for v in column] for column in columns]
    result.timeline = [TimelineRow(*values) for values in zip(*decoded, strict=True)]
    return result


def _run_all(
    scenario: Scenario,
    series: PriceSeries,
    funding: Sequence[FundingRate],
    on_bar: Callable[[str], None] | None,
) -> dict[str, PolicyResult]:
    results: dict[str, PolicyResult] = {}

    async def replay() -> None:
        # Results are handed over here, not returned: `asyncio.run` formats its main
        # task (result included) when it restores the SIGINT handler, and the repr of
        # a 60,000-row timeline cost a second.
        for name in scenario.policies:
            results[name] = await _Replay(scenario, series.bars, funding, name, on_bar).run()

    asyncio.run(replay())
    return results


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
        self.now_ms = bars[0].timestamp  # the replay's clock (`now`)
        self._now: tuple[int, datetime] | None = None
        self._scope_memo: (
            tuple[tuple[tuple[object, ...], Decimal], tuple[Decimal, Decimal, Decimal]] | None
        ) = None
        self._stops_memo: tuple[int, tuple[StopOrder, ...], Decimal | None] | None = None
        self._leg: _OneLeg | None = None
        self._leverage_memo: tuple[tuple[Decimal, Decimal, Decimal], Decimal | None] | None = None
        self.exchange = SimulatedExchange(
            markets={scenario.symbol: self.rules},
            clock=lambda: self.now,
            derivatives=scenario.equity,
            source=scenario.reserve,
            slippage=scenario.slippage,
        )

    async def run(self) -> PolicyResult:
        scenario = self.scenario
        first = self.bars[0]
        self._open(first)
        funding_index = 0
        while (
            funding_index < len(self.funding)
            and self.funding[funding_index].timestamp <= first.timestamp
        ):
            funding_index += 1
        next_cycle = first.timestamp
        previous = first.timestamp
        index = 0
        while index < len(self.bars):
            bar = self.bars[index]
            if bar is not first and self.scenario.steady_path:
                funding_at = (
                    self.funding[funding_index].timestamp
                    if funding_index < len(self.funding)
                    else None
                )
                steady = await self._steady_bars(index, next_cycle, previous, funding_at)
                if steady is not None:
                    index, next_cycle, previous = steady
                    continue
            self.now_ms = bar.timestamp
            if bar is not first:
                if await self._intrabar(bar, previous):
                    self._timeline(bar)
                    if self.on_bar is not None:
                        self.on_bar(self.result.name)
                    break
                self.exchange.set_mark(scenario.symbol, bar.close)
                while (
                    funding_index < len(self.funding)
                    and self.funding[funding_index].timestamp <= bar.timestamp
                ):
                    self.exchange.apply_funding(scenario.symbol, self.funding[funding_index].rate)
                    funding_index += 1
            self._track_leverage(before_cycle=True)
            if bar.timestamp >= next_cycle:
                # In an outage the timeline still samples on the poll's schedule (the
                # state, nothing acted): the chart shows what the dead daemon missed.
                next_cycle = self._cycle_after(bar.timestamp)
                if not scenario.in_outage(bar.timestamp):
                    await self._cycle(bar, bar.close, self._next_cycle_follows(index, next_cycle))
                self._timeline(bar)
            self._track_leverage(before_cycle=False)
            previous = bar.timestamp
            if self.on_bar is not None:
                self.on_bar(self.result.name)
            index += 1
        self.result.final_equity = self._equity() + self.exchange.source
        return self.result

    async def _steady_bars(
        self, start: int, next_cycle: int, previous: int, funding_at: int | None
    ) -> tuple[int, int, int] | None:
        """Replay bars from `start` on for as long as nothing can act in them; None when
        the bar at `start` is not one of them, else (next bar, next cycle, its previous).

        Most bars of a long replay move the mark and nothing else: the state and the
        policy's triggers stay. A bar is steady when, at the venue's state now, its path
        reaches no stream trigger and no resting stop, its adverse extreme leaves equity
        above maintenance, the policy does nothing intra-bar at that margin ratio nor
        (on a cycle bar) at the close, and no funding falls in it. Such a bar gets exactly
        the bookkeeping the full path gives it (margin ratio, leverage, timeline, the
        policy's record of a skipped cycle) without the calls that would find nothing;
        the first bar that is not steady goes the full way.
        """
        scenario = self.scenario
        policy = self.policy
        result = self.result
        exchange = self.exchange
        long = scenario.side is Side.LONG
        symbol = scenario.symbol
        leg = self._leg
        if leg is None or not leg.current(exchange):
            self._scope()  # rebuilds the calculator for the state now, if it can
            leg = self._leg
            if leg is None:
                return None
        # Nothing below changes the venue but its mark: the state holds for the run.
        policy.begin_steady(exchange)
        index = start
        while index < len(self.bars):
            bar = self.bars[index]
            stamp = bar.timestamp
            if funding_at is not None and stamp >= funding_at:
                break
            adverse = bar.low if long else bar.high
            outage = scenario.in_outage(stamp)
            if policy.streams and not outage and not policy.quiet_path(symbol, adverse):
                break
            if policy.rests_stops:
                _, nearest = await self._resting_stops()
                if nearest is not None and (nearest >= adverse if long else nearest <= adverse):
                    break
            figures = leg.figures(adverse)
            if not figures[0] > figures[2]:
                break  # the venue's liquidation check must look
            ratio = _ratio(figures)
            if not policy.quiet_intrabar(ratio):
                break
            cycle = stamp >= next_cycle
            if cycle:
                following = self._cycle_after(stamp)
                if not outage and not await policy.quiet_cycle(
                    self.exchange, self.log, stamp, symbol, bar.close,
                    self._next_cycle_follows(index, following),
                ):  # fmt: skip
                    break
            # Steady: what the full path leaves after this bar (`_track_leverage` before
            # and after the cycle, `_timeline`: the same figures, by the same calls).
            self.now_ms = stamp
            result.max_margin_ratio = max(result.max_margin_ratio, ratio)
            close = bar.close
            exchange.set_mark(symbol, close)
            at_close = leg.figures(close)
            leverage = self._leverage(at_close)
            if leverage is not None:
                result.max_leverage = max(result.max_leverage, leverage)
            if cycle:
                next_cycle = following
                if not outage:
                    policy.skip_cycle(exchange)
                equity, gross, maintenance = at_close
                result.timeline.append(
                    TimelineRow(
                        timestamp=stamp,
                        price=close,
                        wallet=exchange.wallet,
                        equity=leg.equity(close),
                        notional=gross,
                        leverage=leverage,
                        margin_ratio=maintenance / equity if equity > ZERO else None,
                        source_balance=exchange.source,
                    )
                )
            result.bars += 1
            if leverage is not None and scenario.target.contains(leverage):
                result.bars_in_band += 1
            previous = stamp
            if self.on_bar is not None:
                self.on_bar(self.result.name)
            index += 1
        return None if index == start else (index, next_cycle, previous)

    async def _intrabar(self, bar: Bar, previous: int) -> bool:
        """The path from the open to the adverse extreme; True when it liquidated.

        `previous` is the last bar's timestamp: the path runs between its close and this
        bar's, and a streamed cycle runs at the time the path reaches its mark.
        """
        side = self.scenario.side
        adverse = bar.low if side is Side.LONG else bar.high
        price = bar.open
        if self.policy.streams and not self.scenario.in_outage(bar.timestamp):
            reached = await self._stream(bar, price, adverse, previous)
            self.now_ms = bar.timestamp
            if reached is None:
                return True
            price = reached
        if self.policy.rests_stops:
            await self._fill_stops(bar, price, adverse)
        seen = len(self.log.outcomes)
        figures = self._scope(adverse)
        ratio = _ratio(figures)
        await self.policy.intrabar(self.exchange, ratio, self.now, self.log)
        self._record_actions(seen, bar, bar.close)
        # Only what the policy journaled can have changed the scope; most bars nothing
        # acts here.
        if len(self.log.outcomes) != seen:
            figures = self._scope(adverse)
            ratio = _ratio(figures)
        self.result.max_margin_ratio = max(self.result.max_margin_ratio, ratio)
        if self._leg is not None and figures[0] > figures[2]:
            # The venue's liquidation check compares these very figures (`_OneLeg`):
            # equity above maintenance at the adverse extreme liquidates nothing.
            return False
        extremes = {Side.LONG: bar.low, Side.SHORT: bar.high}
        if self.exchange.check_liquidation(self.scenario.symbol, extremes):
            self.result.liquidation_time = bar.timestamp
            return True
        return False

    async def _stream(
        self, bar: Bar, price: Decimal, adverse: Decimal, previous: int
    ) -> Decimal | None:
        """Run the cycle wherever the path crosses the service's adverse trigger; where
        the path is afterwards, or None when it liquidated on the way."""
        long = self.scenario.side is Side.LONG
        last_run: Decimal | None = None
        await self.policy.settle_trigger(self.exchange, adverse)
        for _ in range(MAX_STREAM_CYCLES):
            trigger = self.policy.trigger(self.scenario.symbol)
            if trigger is None:
                break
            level = trigger.below if long else trigger.above
            if level is None or (adverse > level if long else adverse < level):
                break
            if last_run is not None and (level >= last_run if long else level <= last_run):
                # The cycle that just ran could not bring the scope back (a cooldown, no
                # funds): its trigger is its own mark. The daemon re-runs such a cycle
                # once per (growing) debounce window while marks keep coming; here, each
                # time the mark moves `RETRIGGER_STEP` further (an emergency further down
                # acts even within a cooldown).
                step = RETRIGGER_STEP
                level = last_run * (1 - step) if long else last_run * (1 + step)
                if adverse > level if long else adverse < level:
                    break
            # The first streamed mark past the trigger (at the trigger itself the scope
            # sits exactly on its band edge, where the planner does not act yet); or the
            # mark the path is at when the bar opened past it: a gap never traded between.
            past = level * (1 - PAST_TRIGGER) if long else level * (1 + PAST_TRIGGER)
            crossing = max(min(price, past), adverse) if long else min(max(price, past), adverse)
            if self.policy.rests_stops:
                # Stops nearer the open than the trigger fire before the mark gets there.
                await self._fill_stops(bar, price, crossing)
            if self._liquidated_at(bar, crossing):
                return None
            reason = trigger.reason_below if long else trigger.reason_above
            self.result.actions.append(
                ActionRow(
                    bar.timestamp,
                    ReplayEvent.STREAM_TRIGGER.value,
                    self.scenario.symbol,
                    "below" if long else "above",
                    ZERO,
                    crossing,
                    ZERO,
                    ZERO,
                    reason,
                )
            )
            self.exchange.set_mark(self.scenario.symbol, crossing)
            self.now_ms = _path_time(bar, previous, crossing, adverse)
            await self._cycle(bar, crossing)
            self._timeline(bar, crossing)
            price = last_run = crossing
        return price

    async def _fill_stops(self, bar: Bar, price: Decimal, until: Decimal) -> None:
        """Fire the resting stops the path from `price` to `until` reaches, nearest first."""
        symbol = self.scenario.symbol
        long = self.scenario.side is Side.LONG
        resting, nearest = await self._resting_stops()
        if nearest is None or (nearest < until if long else nearest > until):
            return  # the path reaches none (most bars)
        reached = sorted(
            {s.trigger_price for s in resting if (s.trigger_price >= until if long
                                                   else s.trigger_price <= until)},
            reverse=long,
        )  # fmt: skip
        # Stops rest at the venue and fire on the same mark move that would liquidate:
        # they go first (as in the paper venue), the liquidation check comes after them.
        for trigger in reached:
            at = min(price, trigger) if long else max(price, trigger)
            for order in self.exchange.trigger_stops(symbol, price, trigger):
                self._record_stop_fill(bar, order, at)
            price = at

    async def _resting_stops(self) -> tuple[tuple[StopOrder, ...], Decimal | None]:
        """`fetch_stops` for the scenario's symbol and the trigger nearest the mark (the
        highest for a long's sell stops; None: none rests), read again only when the
        venue's book changed: most bars change none."""
        revision = self.exchange.stop_revision
        if self._stops_memo is None or self._stops_memo[0] != revision:
            resting = await self.exchange.fetch_stops([self.scenario.symbol])
            triggers = [s.trigger_price for s in resting]
            nearest = None
            if triggers:
                nearest = max(triggers) if self.scenario.side is Side.LONG else min(triggers)
            self._stops_memo = (revision, resting, nearest)
        return self._stops_memo[1], self._stops_memo[2]

    def _liquidated_at(self, bar: Bar, price: Decimal) -> bool:
        """The liquidation check at a point of the path before something acts there."""
        self.result.max_margin_ratio = max(self.result.max_margin_ratio, self._margin_ratio(price))
        if self.exchange.check_liquidation(self.scenario.symbol, {s: price for s in Side}):
            self.result.liquidation_time = bar.timestamp
            return True
        return False

    async def _cycle(self, bar: Bar, mark: Decimal, may_skip: bool = False) -> None:
        seen = len(self.log.outcomes)
        await self.policy.cycle(self.exchange, self.now, self.log, may_skip)
        self._record_actions(seen, bar, mark)

    def _cycle_after(self, stamp: int) -> int:
        """When the cycle after the one due at `stamp` is due: on the interval's grid
        from the first bar."""
        interval = self.scenario.interval_ms
        return stamp - (stamp - self.bars[0].timestamp) % interval + interval

    def _next_cycle_follows(self, index: int, next_cycle: int) -> bool:
        """Whether the next bar's stream is the next to read this cycle's triggers, with
        nothing changed before it, and that bar runs a cycle of its own at its close
        (what lets a cycle that would do nothing be skipped; see `BacktestPolicy.cycle`)."""
        if index + 1 >= len(self.bars):
            return True
        following = self.bars[index + 1].timestamp
        return following >= next_cycle and not self.scenario.in_outage(following)

    def _record_stop_fill(self, bar: Bar, order: StopOrder, reference: Decimal) -> None:
        if order.filled <= ZERO or order.average_price is None:
            return
        size = order.filled * self.rules.contract_size
        price = order.average_price
        self.result.fees_paid += order.fee
        self.result.slippage_cost += abs(price - reference) * size
        gap = " (gap: filled from the open)" if reference != order.trigger_price else ""
        self.result.actions.append(
            ActionRow(
                bar.timestamp,
                ActionKind.BACKSTOP_FILL.value,
                order.symbol,
                order.side.value,
                order.filled,
                price,
                size * price,
                order.fee,
                f"backstop: stop at {order.trigger_price} triggered{gap}",
            )
        )

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

    def _state(self) -> tuple[object, ...]:
        """What the replay's figures depend on besides the mark: the wallets and every
        leg. A bar asks for the same figures several times (before and after a cycle that
        did nothing, the timeline); they are computed once per state and mark."""
        return (
            self.exchange.wallet,
            self.exchange.source,
            tuple(
                (p.symbol, p.side, p.contracts, p.entry_price, p.margin_mode, p.isolated_margin)
                for p in self.exchange.positions()
            ),
        )

    @property
    def now(self) -> datetime:
        """The replay's clock as a datetime, made when asked (most bars nobody asks)."""
        cached = self._now
        if cached is None or cached[0] != self.now_ms:
            cached = self._now = (self.now_ms, utc(self.now_ms))
        return cached[1]

    def _mark(self) -> Decimal:
        return self.exchange.mark(self.scenario.symbol)

    def _scope(self, mark: Decimal | None = None) -> tuple[Decimal, Decimal, Decimal]:
        """(equity, notional, maintenance) of the position's scope at `mark` (default:
        the venue's mark)."""
        price = mark if mark is not None else self._mark()
        leg = self._leg
        if leg is None or not leg.current(self.exchange):
            leg = self._leg = _OneLeg.of(
                self.exchange, self.rules, self.scenario.side, self._state, leg
            )
        if leg is not None:
            return leg.figures(price)
        key = (self._state(), price)
        if self._scope_memo is not None and self._scope_memo[0] == key:
            return self._scope_memo[1]
        figures = self._scope_at(price)
        self._scope_memo = (key, figures)
        return figures

    def _scope_at(self, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        symbol = self.scenario.symbol
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
        return _ratio(self._scope(adverse))

    def _leverage(self, figures: tuple[Decimal, Decimal, Decimal]) -> Decimal | None:
        """N / E of `_scope`'s figures (None when insolvent); a bar asks up to three
        times for the same figures (the same tuple), so the last answer is kept."""
        memo = self._leverage_memo
        if memo is not None and memo[0] is figures:
            return memo[1]
        equity, gross, _ = figures
        leverage = gross / equity if equity > ZERO else None
        self._leverage_memo = (figures, leverage)
        return leverage

    def _track_leverage(self, *, before_cycle: bool) -> None:
        leverage = self._leverage(self._scope())
        if before_cycle:
            if leverage is not None:
                self.result.max_leverage = max(self.result.max_leverage, leverage)
            return
        self.result.bars += 1
        if leverage is not None and self.scenario.target.contains(leverage):
            self.result.bars_in_band += 1

    def _timeline(self, bar: Bar, mark: Decimal | None = None) -> None:
        """The state after a cycle; `mark` is where a streamed cycle ran (else the close)."""
        figures = self._scope()  # `_leg` is current after this
        equity, gross, maintenance = figures
        leverage = self._leverage(figures)
        ratio = maintenance / equity if equity > ZERO else None
        self.result.timeline.append(
            TimelineRow(
                timestamp=bar.timestamp,
                price=bar.close if mark is None else mark,
                wallet=self.exchange.wallet,
                equity=self._equity() if self._leg is None else self._leg.equity(self._mark()),
                notional=gross,
                leverage=leverage,
                margin_ratio=ratio,
                source_balance=self.exchange.source,
            )
        )

    def _record_actions(self, seen: int, bar: Bar, mark: Decimal) -> None:
        """Rows for what the cycle journaled since `seen`; `mark` is the price it ran at."""
        for _, outcome in self.log.outcomes[seen:]:
            if not outcome.ok:
                self.result.failed_actions += 1
                continue
            action = outcome.action
            if isinstance(action, PlaceStop | CancelStop):
                self.result.backstop_orders += 1
                continue
            if isinstance(action, StopFilled):
                # The cycle found a fill `_fill_stops` already recorded (with its fee).
                continue
            self.result.actions.append(self._row(action, outcome.receipt, bar, mark))

    def _row(self, action: Action, receipt: object, bar: Bar, mark: Decimal) -> ActionRow:
        reason = action.reason.describe()
        if isinstance(action, Order) and isinstance(receipt, OrderResult):
            price = receipt.average_price or mark
            size = receipt.filled * self.rules.contract_size
            self.result.fees_paid += receipt.fee
            self.result.slippage_cost += abs(price - mark) * size
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


class _OneLeg:
    """The figures of a scope of one position at any price, for one state of the venue.

    A bar asks for (equity, notional, maintenance) at its adverse extreme and its close,
    and most bars change nothing at the venue: the state's constants are taken once, and
    each figure is computed by the very operations `SimAccount.cross_equity`,
    `cross_maintenance` and `_Replay._scope_at` use, in the same order, so the values
    (exponents included) are the same ones. Valid while the venue holds the same objects
    (a changed wallet or leg is a new Decimal); the last (state, price) it answered is
    remembered like `_Replay._scope`'s memo, across a rebuild to an equal state.
    """

    __slots__ = (
        "_brackets",
        "_contracts",
        "_cross",
        "_entry",
        "_floors",
        "_margin",
        "_memo",
        "_pos",
        "_signed",
        "_size",
        "_source",
        "_wallet",
        "key",
    )  # fmt: skip

    def __init__(self, pos: SimPosition, rules: MarketRules, exchange: SimulatedExchange,
                 key: tuple[object, ...]) -> None:  # fmt: skip
        self._pos = pos
        self._wallet = exchange.wallet
        self._source = exchange.source
        self._contracts = pos.contracts
        self._entry = pos.entry_price
        self._margin = pos.isolated_margin
        self._cross = pos.margin_mode is MarginMode.CROSS
        self._size = pos.contracts * rules.contract_size
        self._signed = pos.side.sign * self._size
        self._brackets = tier_brackets(rules.tiers)
        self._floors = [bracket.floor for bracket in self._brackets]
        self.key = key
        self._memo: tuple[Decimal, tuple[Decimal, Decimal, Decimal]] | None = None

    @classmethod
    def of(
        cls,
        exchange: SimulatedExchange,
        rules: MarketRules,
        side: Side,
        state: Callable[[], tuple[object, ...]],
        previous: _OneLeg | None,
    ) -> _OneLeg | None:
        """The calculator for the venue's state now; None when it does not hold exactly
        one position of the replay's market and side, with tiers (the generic path
        serves those)."""
        positions = exchange.positions()
        if len(positions) != 1 or not rules.tiers:
            return None
        pos = positions[0]
        if exchange.markets.get(pos.symbol) is not rules or pos.side is not side:
            return None
        leg = cls(pos, rules, exchange, state())
        if previous is not None and previous.key == leg.key:
            leg._memo = previous._memo
        return leg

    def current(self, exchange: SimulatedExchange) -> bool:
        pos = self._pos
        return (
            exchange.single_position() is pos
            and exchange.wallet is self._wallet
            and exchange.source is self._source
            and pos.contracts is self._contracts
            and pos.entry_price is self._entry
            and pos.isolated_margin is self._margin
            and (pos.margin_mode is MarginMode.CROSS) == self._cross
        )

    def figures(self, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        memo = self._memo
        if memo is not None and memo[0] == price:
            return memo[1]
        pnl = self._signed * (price - self._entry)
        notional = self._size * price
        # `bracket_for`: the last tier whose floor is not above the notional (the first
        # when none is), found by bisection over the sorted floors.
        chosen = self._brackets[max(bisect_right(self._floors, notional) - 1, 0)]
        maintenance = notional * chosen.rate - chosen.cum
        if self._cross:
            figures = (self._wallet + (ZERO + pnl), ZERO + notional, ZERO + maintenance)
        else:
            figures = (self._margin + pnl, notional, maintenance)
        self._memo = (price, figures)
        return figures

    def equity(self, mark: Decimal) -> Decimal:
        """The derivatives equity at `mark` as `_Replay._equity` sums it: the cross
        wallet with its legs' PnL, plus an isolated leg's own equity."""
        equity = self.figures(mark)[0]
        return equity if self._cross else (self._wallet + ZERO) + equity


def _ratio(figures: tuple[Decimal, Decimal, Decimal]) -> Decimal:
    """The margin ratio of (equity, notional, maintenance), capped at 1 (liquidation)."""
    equity, _, maintenance = figures
    if maintenance <= ZERO:
        return ZERO
    return min(maintenance / equity, Decimal(1)) if equity > ZERO else Decimal(1)


def _path_time(bar: Bar, previous: int, mark: Decimal, adverse: Decimal) -> int:
    """When the path open -> adverse extreme -> close of `bar` first reaches `mark` (on
    its first leg), moving at a constant speed from the last close (`previous`) to this
    one (`bar.timestamp`): a cooldown that blocks a second order at one instant of a
    long bar lets it through later in that bar, as the daemon's clock would."""
    total = abs(bar.open - adverse) + abs(adverse - bar.close)
    if total <= ZERO:
        return previous
    share = min(abs(mark - bar.open) / total, Decimal(1))
    return previous + int(share * (bar.timestamp - previous))
