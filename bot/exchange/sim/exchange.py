"""A simulated derivatives account that implements the Exchange port.

It keeps a derivatives wallet and a source (spot/funding) wallet, cross and isolated
positions, mark prices fed from outside (a price replay), Binance USDⓈ-M maintenance
tiers, taker fees, slippage, funding and liquidation. Its port methods raise the same
errors a real adapter does, so the service cannot tell it from a venue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.domain.leverage import (
    liquidation_price,
    maintenance_from_tiers,
    round_down,
)
from bot.domain.models import (
    ZERO,
    AccountSnapshot,
    MarginMode,
    MarketRules,
    OrderSide,
    Position,
    Side,
    WalletBalance,
)
from bot.exchange.port import (
    InsufficientFunds,
    InvalidOrder,
    MarginResult,
    OrderRequest,
    OrderResult,
    TransferResult,
    UnknownSymbol,
)

# Binance reports liquidation prices to 8 decimals.
LIQUIDATION_PRICE_QUANTUM = Decimal("1e-8")


@dataclass(slots=True)
class SimPosition:
    symbol: str
    side: Side
    contracts: Decimal
    entry_price: Decimal
    margin_mode: MarginMode
    isolated_margin: Decimal = ZERO


@dataclass(slots=True)
class SimState:
    wallet: Decimal
    source: Decimal
    marks: dict[str, Decimal]
    positions: list[SimPosition]
    orders: dict[str, OrderResult]
    next_id: int


@dataclass(frozen=True, slots=True)
class Fill:
    """What one executed order did to the account (for reports)."""

    price: Decimal
    notional: Decimal
    fee: Decimal
    slippage_cost: Decimal


class SimulatedExchange:
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
        )

    def restore(self, state: SimState) -> None:
        """Put the account back as `state()` saw it."""
        self.wallet, self.source = state.wallet, state.source
        self._marks = dict(state.marks)
        self._positions = {(p.symbol, p.side): replace(p) for p in state.positions}
        self._orders = dict(state.orders)
        self._next_id = state.next_id

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

    # -- the Exchange port ----------------------------------------------------------

    async def fetch_snapshot(self) -> AccountSnapshot:
        return self.snapshot()

    def snapshot(self) -> AccountSnapshot:
        positions = tuple(self._to_position(p) for p in self._positions.values())
        return AccountSnapshot(
            account=self.name,
            settle=self.settle,
            taken_at=self._clock(),
            derivatives=WalletBalance(self.wallet, self.cross_free()),
            source=WalletBalance(self.source, self.source),
            positions=positions,
            markets=self.markets,
            min_transfer=self.min_transfer,
            can_adjust_margin=self.can_adjust_margin,
        )

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        if currency != self.settle:
            raise InvalidOrder(f"transfer currency {currency} is not {self.settle}")
        if amount <= ZERO or amount < self.min_transfer:
            raise InvalidOrder(f"transfer amount {amount} is below the minimum {self.min_transfer}")
        if into_derivatives:
            if amount > self.source:
                raise InsufficientFunds(f"source wallet holds {self.source}, asked {amount}")
            self.source -= amount
            self.wallet += amount
        else:
            free = self.cross_free()
            if amount > free:
                raise InsufficientFunds(f"derivatives wallet frees {free}, asked {amount}")
            self.wallet -= amount
            self.source += amount
        return TransferResult(self._new_id("T"), currency, amount, into_derivatives)

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        pos = self._position(symbol, side)
        if pos.margin_mode is not MarginMode.ISOLATED:
            raise InvalidOrder(f"{symbol} {side.value} is not an isolated position")
        if amount <= ZERO:
            raise InvalidOrder(f"margin amount must be positive, got {amount}")
        if add:
            free = self.cross_free()
            if amount > free:
                raise InsufficientFunds(f"derivatives wallet frees {free}, asked {amount}")
            self.wallet -= amount
            pos.isolated_margin += amount
        else:
            mark = self.mark(symbol)
            initial = self._notional(pos, mark) / self.leverage_setting
            removable = min(
                pos.isolated_margin, pos.isolated_margin + self._pnl(pos, mark) - initial
            )
            if amount > removable:
                raise InsufficientFunds(f"{symbol}: at most {max(removable, ZERO)} removable")
            pos.isolated_margin -= amount
            self.wallet += amount
        return MarginResult(symbol, side, amount, add)

    async def create_order(self, request: OrderRequest) -> OrderResult:
        if request.client_order_id in self._orders:
            raise InvalidOrder(f"duplicate client order id {request.client_order_id}")
        rules = self._rules(request.symbol)
        mark = self.mark(request.symbol)
        step = rules.amount_step or ZERO
        amount = request.amount
        if amount <= ZERO or (step > ZERO and round_down(amount, step) != amount):
            raise InvalidOrder(f"{request.symbol}: amount {amount} breaks precision {step}")
        if amount < rules.min_amount:
            raise InvalidOrder(f"{request.symbol}: amount {amount} < minimum {rules.min_amount}")
        side = request.position_side
        if request.reduce_only:
            fill = self._reduce(request, rules, mark, side)
        else:
            fill = self._increase(request, rules, mark, side)
        self.last_fill = fill
        result = OrderResult(
            client_order_id=request.client_order_id,
            exchange_id=self._new_id("O"),
            symbol=request.symbol,
            side=request.side,
            amount=amount,
            filled=amount,
            average_price=fill.price,
            fee=fill.fee,
            status="closed",
        )
        self._orders[request.client_order_id] = result
        return result

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        self._rules(symbol)
        result = self._orders.get(client_order_id)
        return result if result is not None and result.symbol == symbol else None

    async def close(self) -> None:
        return None

    # -- internals --------------------------------------------------------------------

    def _reduce(self, request: OrderRequest, rules: MarketRules, mark: Decimal, side: Side) -> Fill:
        pos = self._positions.get((request.symbol, side))
        if pos is None:
            raise InvalidOrder(f"reduce-only: no {side.value} position on {request.symbol}")
        if request.side is not side.closing_order_side:
            raise InvalidOrder(f"reduce-only {request.side.value} cannot reduce a {side.value}")
        if request.amount > pos.contracts:
            raise InvalidOrder(
                f"reduce-only {request.amount} exceeds the position ({pos.contracts})"
            )
        closes = request.amount == pos.contracts
        fill = self._fill(request.side, request.amount, rules, mark, pos)
        if not closes and fill.notional < rules.min_cost:
            raise InvalidOrder(f"{request.symbol}: notional {fill.notional} < {rules.min_cost}")
        fraction = request.amount / pos.contracts
        realized = side.sign * request.amount * rules.contract_size * (fill.price - pos.entry_price)
        if pos.margin_mode is MarginMode.ISOLATED:
            released = pos.isolated_margin * fraction
            pos.isolated_margin -= released
            self.wallet += released
        self.wallet += realized - fill.fee
        pos.contracts -= request.amount
        if pos.contracts == ZERO:
            del self._positions[(request.symbol, side)]
        return fill

    def _increase(
        self, request: OrderRequest, rules: MarketRules, mark: Decimal, side: Side
    ) -> Fill:
        if request.side is not side.opening_order_side:
            raise InvalidOrder(f"{request.side.value} does not add to a {side.value}")
        pos = self._positions.get((request.symbol, side))
        opposite = self._positions.get(
            (request.symbol, Side.SHORT if side is Side.LONG else Side.LONG)
        )
        if opposite is not None and not self.hedge_mode:
            raise InvalidOrder(f"{request.symbol}: one-way mode holds a {opposite.side.value}")
        fill = self._fill(request.side, request.amount, rules, mark, pos)
        if fill.notional < rules.min_cost:
            raise InvalidOrder(f"{request.symbol}: notional {fill.notional} < {rules.min_cost}")
        needed = fill.notional / self.leverage_setting + fill.fee
        if needed > self.cross_free():
            raise InsufficientFunds(f"{request.symbol}: needs {needed} free margin")
        self.wallet -= fill.fee
        if pos is None:
            self._positions[(request.symbol, side)] = SimPosition(
                request.symbol, side, request.amount, fill.price, MarginMode.CROSS
            )
        else:
            total = pos.contracts + request.amount
            pos.entry_price = (
                pos.entry_price * pos.contracts + fill.price * request.amount
            ) / total
            pos.contracts = total
        return fill

    def _fill(
        self,
        order_side: OrderSide,
        amount: Decimal,
        rules: MarketRules,
        mark: Decimal,
        pos: SimPosition | None,
    ) -> Fill:
        direction = 1 if order_side is OrderSide.BUY else -1
        price = mark * (1 + direction * self.slippage)
        size = amount * rules.contract_size
        notional = size * price
        return Fill(
            price=price,
            notional=notional,
            fee=notional * rules.taker_fee,
            slippage_cost=abs(price - mark) * size,
        )

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
        if liq is not None:
            # Round toward the liquidated side, so that a bar reaching the reported
            # price does liquidate (28-digit division can land a hair on the safe side).
            rounding = ROUND_FLOOR if pos.side is Side.LONG else ROUND_CEILING
            liq = liq.quantize(LIQUIDATION_PRICE_QUANTUM, rounding=rounding) or None
        return Position(
            symbol=pos.symbol,
            side=pos.side,
            contracts=pos.contracts,
            entry_price=pos.entry_price,
            mark_price=mark,
            margin_mode=pos.margin_mode,
            contract_size=rules.contract_size,
            isolated_margin=pos.isolated_margin,
            maintenance_margin=maintenance,
            liquidation_price=liq,
            hedged=self.hedge_mode,
        )

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
        return pos.contracts * self.markets[pos.symbol].contract_size * price

    def _pnl(self, pos: SimPosition, price: Decimal) -> Decimal:
        size = pos.contracts * self.markets[pos.symbol].contract_size
        return pos.side.sign * size * (price - pos.entry_price)

    def _maintenance(self, pos: SimPosition, price: Decimal) -> Decimal:
        tiers = self.markets[pos.symbol].tiers
        if not tiers:
            return ZERO
        return maintenance_from_tiers(tiers, self._notional(pos, price))
