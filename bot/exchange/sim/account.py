"""A simulated derivatives account: wallets, positions, marks and their margin figures.

It keeps a derivatives wallet and a source (spot/funding) wallet, cross and isolated
positions, mark prices fed from outside (a price replay), Binance USDⓈ-M maintenance
tiers, funding and liquidation. `SimulatedExchange` puts the Exchange port on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from bot.domain.leverage import liquidation_price
from bot.domain.models import (
    ZERO,
    AccountSnapshot,
    MarginMode,
    MarketRules,
    Position,
    Side,
    WalletBalance,
)
from bot.domain.stops import StopOrder
from bot.exchange.port import InsufficientFunds, InvalidOrder, OrderResult, UnknownSymbol
from bot.exchange.sim.fills import Fill
from bot.exchange.sim.positions import (
    SimPosition,
    maintenance_at,
    notional_at,
    pnl_at,
    reported_position,
)


@dataclass(slots=True)
class SimState:
    wallet: Decimal
    source: Decimal
    marks: dict[str, Decimal]
    positions: list[SimPosition]
    orders: dict[str, OrderResult]
    next_id: int
    # Stop orders by client id, in the order they were placed (any state), and the
    # client id of the market order each triggered stop spawned.
    stops: dict[str, StopOrder] = field(default_factory=dict)
    stop_fills: dict[str, str] = field(default_factory=dict)


class SimAccount:
    """An in-memory account; `clock` gives "now" (wall clock, or bar time in a replay)."""

    def __init__(
        self,
        *,
        markets: dict[str, MarketRules],
        clock: Callable[[], datetime],
        derivatives: Decimal = ZERO,
        source: Decimal = ZERO,
        settle: str = "USDT",
        account: str = "sim",
        slippage: Decimal = ZERO,
        hedge_mode: bool = False,
        leverage_setting: Decimal = Decimal(20),
        min_transfer: Decimal = ZERO,
        can_adjust_margin: bool = True,
    ) -> None:
        self.name = account
        self.markets = dict(markets)
        self.settle = settle
        self.wallet = derivatives
        self.source = source
        self.slippage = slippage
        self.hedge_mode = hedge_mode
        self.leverage_setting = leverage_setting
        self.min_transfer = min_transfer
        self.can_adjust_margin = can_adjust_margin
        self._clock = clock
        self._marks: dict[str, Decimal] = {}
        self._positions: dict[tuple[str, Side], SimPosition] = {}
        self._orders: dict[str, OrderResult] = {}
        self._stops: dict[str, StopOrder] = {}
        # Bumped whenever the stop book changes: a replay asks every bar whether it did,
        # and the book keeps every stop ever placed.
        self.stop_revision = 0
        self._stop_fills: dict[str, str] = {}
        self._next_id = 1
        self.last_fill: Fill | None = None
        self.liquidated: list[tuple[datetime, str, Side]] = []

    # -- durable state (the paper daemon survives a kill -9 like a real venue) ----

    def state(self) -> SimState:
        """Everything that must outlive the process."""
        return SimState(
            wallet=self.wallet,
            source=self.source,
            marks=dict(self._marks),
            positions=[replace(p) for p in self._positions.values()],
            orders=dict(self._orders),
            next_id=self._next_id,
            stops=dict(self._stops),
            stop_fills=dict(self._stop_fills),
        )

    def restore(self, state: SimState) -> None:
        """Put the account back as `state()` saw it."""
        self.wallet, self.source = state.wallet, state.source
        self._marks = dict(state.marks)
        self._positions = {(p.symbol, p.side): replace(p) for p in state.positions}
        self._orders = dict(state.orders)
        self._next_id = state.next_id
        self._stops = dict(state.stops)
        self.stop_revision += 1
        self._stop_fills = dict(state.stop_fills)

    def _new_id(self, prefix: str) -> str:
        value = self._next_id
        self._next_id += 1
        return f"{prefix}{value}"

    # -- feeding the simulation ---------------------------------------------------

    def set_mark(self, symbol: str, price: Decimal) -> None:
        self._rules(symbol)
        if not price.is_finite() or price <= ZERO:
            raise ValueError(f"{symbol}: mark price must be positive, got {price}")
        self._marks[symbol] = price

    def mark(self, symbol: str) -> Decimal:
        self._rules(symbol)
        try:
            return self._marks[symbol]
        except KeyError:
            raise InvalidOrder(f"{symbol}: no mark price yet") from None

    def open_position(
        self,
        symbol: str,
        side: Side,
        contracts: Decimal,
        *,
        margin_mode: MarginMode = MarginMode.CROSS,
        isolated_margin: Decimal = ZERO,
    ) -> None:
        """Open a position at the mark with no fee (the owner's own trade, not the bot's)."""
        price = self.mark(symbol)
        if margin_mode is MarginMode.ISOLATED:
            if isolated_margin > self.wallet:
                raise InsufficientFunds(f"isolated margin {isolated_margin} > wallet {self.wallet}")
            self.wallet -= isolated_margin
        self._positions[(symbol, side)] = SimPosition(
            symbol, side, contracts, price, margin_mode, isolated_margin
        )

    def positions(self) -> list[SimPosition]:
        return list(self._positions.values())

    def single_position(self) -> SimPosition | None:
        """The position when the account holds exactly one, else None (a replay asks at
        every bar whether its one position is still the same object)."""
        if len(self._positions) != 1:
            return None
        return next(iter(self._positions.values()))

    def apply_funding(self, symbol: str, rate: Decimal) -> Decimal:
        """Pay `-side * rate * notional` on every leg of `symbol`; returns the net paid in."""
        total = ZERO
        for pos in self._legs(symbol):
            amount = -pos.side.sign * rate * self._notional(pos, self.mark(symbol))
            if pos.margin_mode is MarginMode.ISOLATED:
                pos.isolated_margin += amount
            else:
                self.wallet += amount
            total += amount
        return total

    def check_liquidation(self, symbol: str, adverse: dict[Side, Decimal]) -> bool:
        """Liquidate where equity at the adverse price <= maintenance.

        `adverse` maps a side to its worst price of the bar (low for longs, high for
        shorts). An isolated leg of `symbol` goes alone; when the cross account fails
        at a cross leg's adverse price, every cross position goes with it.
        Returns True when anything was liquidated.
        """
        doomed: list[SimPosition] = []
        cross_hit = False
        for pos in self._legs(symbol):
            price = adverse[pos.side]
            if pos.margin_mode is MarginMode.ISOLATED:
                if pos.isolated_margin + self._pnl(pos, price) <= self._maintenance(pos, price):
                    doomed.append(pos)
            elif self.cross_equity({symbol: price}) <= self.cross_maintenance({symbol: price}):
                cross_hit = True
        if cross_hit:
            doomed.extend(p for p in self._positions.values() if p.margin_mode is MarginMode.CROSS)
        for pos in doomed:
            self._liquidate(pos)
        return bool(doomed)

    # -- account figures ------------------------------------------------------------

    def cross_equity(self, marks: dict[str, Decimal] | None = None) -> Decimal:
        marks = marks or {}
        return self.wallet + sum(
            (
                self._pnl(p, marks.get(p.symbol, self.mark(p.symbol)))
                for p in self._positions.values()
                if p.margin_mode is MarginMode.CROSS
            ),
            ZERO,
        )

    def cross_maintenance(self, marks: dict[str, Decimal] | None = None) -> Decimal:
        marks = marks or {}
        return sum(
            (
                self._maintenance(p, marks.get(p.symbol, self.mark(p.symbol)))
                for p in self._positions.values()
                if p.margin_mode is MarginMode.CROSS
            ),
            ZERO,
        )

    def cross_free(self) -> Decimal:
        """What may leave the derivatives wallet: equity minus initial margin, at most W."""
        initial = sum(
            (
                self._notional(p, self.mark(p.symbol)) / self.leverage_setting
                for p in self._positions.values()
                if p.margin_mode is MarginMode.CROSS
            ),
            ZERO,
        )
        return max(ZERO, min(self.wallet, self.cross_equity() - initial))

    def snapshot(self, include_source: bool = True) -> AccountSnapshot:
        """The account now; without the source wallet (`source_read` False) unless asked."""
        positions = tuple(self._to_position(p) for p in self._positions.values())
        return AccountSnapshot(
            account=self.name,
            settle=self.settle,
            taken_at=self._clock(),
            derivatives=WalletBalance(self.wallet, self.cross_free()),
            source=self.source_wallet() if include_source else None,
            positions=positions,
            markets=self.markets,
            min_transfer=self.min_transfer,
            can_adjust_margin=self.can_adjust_margin,
            source_read=include_source,
        )

    def source_wallet(self) -> WalletBalance:
        return WalletBalance(self.source, self.source)

    # -- internals --------------------------------------------------------------------

    def _liquidate(self, pos: SimPosition) -> None:
        del self._positions[(pos.symbol, pos.side)]
        if pos.margin_mode is MarginMode.CROSS:
            # The whole cross margin balance goes to the insurance fund.
            self.wallet = ZERO
        self.liquidated.append((self._clock(), pos.symbol, pos.side))

    def _to_position(self, pos: SimPosition) -> Position:
        rules = self._rules(pos.symbol)
        mark = self.mark(pos.symbol)
        maintenance = self._maintenance(pos, mark)
        if pos.margin_mode is MarginMode.ISOLATED:
            liq = liquidation_price(
                pos.side,
                pos.contracts,
                pos.entry_price,
                rules.contract_size,
                pos.isolated_margin,
                rules.tiers,
            )
        else:
            others = [
                p
                for p in self._positions.values()
                if p is not pos and p.margin_mode is MarginMode.CROSS
            ]
            liq = liquidation_price(
                pos.side,
                pos.contracts,
                pos.entry_price,
                rules.contract_size,
                self.wallet,
                rules.tiers,
                other_maintenance=sum(
                    (self._maintenance(p, self.mark(p.symbol)) for p in others), ZERO
                ),
                other_unrealized=sum((self._pnl(p, self.mark(p.symbol)) for p in others), ZERO),
            )
        return reported_position(pos, rules, mark, maintenance, liq, hedged=self.hedge_mode)

    def _rules(self, symbol: str) -> MarketRules:
        try:
            return self.markets[symbol]
        except KeyError:
            raise UnknownSymbol(f"unknown symbol {symbol}") from None

    def _position(self, symbol: str, side: Side) -> SimPosition:
        self._rules(symbol)
        try:
            return self._positions[(symbol, side)]
        except KeyError:
            raise InvalidOrder(f"no {side.value} position on {symbol}") from None

    def _legs(self, symbol: str) -> list[SimPosition]:
        return [p for p in self._positions.values() if p.symbol == symbol]

    def _notional(self, pos: SimPosition, price: Decimal) -> Decimal:
        return notional_at(pos, self.markets[pos.symbol], price)

    def _pnl(self, pos: SimPosition, price: Decimal) -> Decimal:
        return pnl_at(pos, self.markets[pos.symbol], price)

    def _maintenance(self, pos: SimPosition, price: Decimal) -> Decimal:
        return maintenance_at(pos, self.markets[pos.symbol], price)
