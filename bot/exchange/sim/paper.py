"""The offline paper venue: a simulated account whose mark replays real candles in wall time.

Bar `i` of the feed becomes the mark `i * bar_seconds` after the replay started; every
bar that passes fires the resting stops it reaches, then is checked for liquidation at
its adverse extreme, as on a venue. The
account is written to a JSON file after every change, atomically, so a paper daemon
killed with -9 finds its "exchange" as it left it — the same as a real venue would be.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.domain.leverage import round_down
from bot.domain.models import AccountSnapshot, MarginMode, OrderSide, Side
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.port import (
    MarginResult,
    OrderRequest,
    OrderResult,
    OrderStatus,
    StopRequest,
    TransferResult,
)
from bot.exchange.sim.exchange import SimPosition, SimState, SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.exchange.sim.prices import Bar, load_prices

logger = logging.getLogger(__name__)

BUILTIN_FEED = Path(__file__).parent / "feeds" / "btc_1m_2021-05-19_crash.csv"


@dataclass(frozen=True, slots=True)
class PaperSettings:
    account: str
    symbol: str
    side: Side
    equity: Decimal
    reserve: Decimal
    leverage: Decimal  # of the position opened at the first bar
    margin_mode: MarginMode
    bar_seconds: float
    fee: Decimal
    slippage: Decimal
    loop: bool
    feed: Path
    state_file: Path | None


class PaperExchange:
    """Implements the Exchange port over a SimulatedExchange fed by a replay."""

    def __init__(
        self,
        settings: PaperSettings,
        clock: Callable[[], datetime],
        bars: Sequence[Bar] | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        self.name = settings.account
        self._clock = clock
        self._bars = tuple(bars) if bars is not None else load_prices(settings.feed).bars
        markets = binance_usdm_markets(taker_fee=settings.fee)
        if settings.symbol not in markets:
            raise ValueError(f"sim symbol {settings.symbol}: choose {', '.join(sorted(markets))}")
        self.sim = SimulatedExchange(
            markets={settings.symbol: markets[settings.symbol]},
            clock=clock,
            derivatives=settings.equity,
            source=settings.reserve,
            slippage=settings.slippage,
            account=settings.account,
        )
        self._cursor = 0
        self._started_at = clock()
        # Changed since the state file was last written (the replay's clock set at the
        # first look): `close` writes only then, not thousands of unchanged files.
        self._unsaved = False
        # A fresh replay starts at the daemon's first look, not while it is still
        # starting up (a slow start must not let the crash run ahead unwatched).
        self._waiting_for_first_look = not self._load()
        if self._waiting_for_first_look:
            self._open()
            self._save()

    # -- the Exchange port ------------------------------------------------------------

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        self._advance()
        return self.sim.snapshot(include_source)

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        return await self.sim.fetch_source(snapshot)

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        self._advance()
        try:
            return await self.sim.transfer(currency, amount, into_derivatives, client_id)
        finally:
            self._save()

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        self._advance()
        try:
            return await self.sim.adjust_margin(symbol, side, amount, add, hedged)
        finally:
            self._save()

    async def create_order(self, request: OrderRequest) -> OrderResult:
        self._advance()
        try:
            return await self.sim.create_order(request)
        finally:
            self._save()

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        return await self.sim.fetch_order_by_client_id(symbol, client_order_id)

    async def fetch_transfer(
        self,
        client_id: str,
        currency: str,
        amount: Decimal,
        into_derivatives: bool,
        since: datetime,
    ) -> TransferResult | None:
        return await self.sim.fetch_transfer(client_id, currency, amount, into_derivatives, since)

    async def place_stop(self, request: StopRequest) -> StopOrder:
        self._advance()
        try:
            return await self.sim.place_stop(request)
        finally:
            self._save()

    async def cancel_stop(self, order: StopOrder) -> StopOrder:
        # Advance first: a stop the replay has reached by now is triggered, not cancelled.
        self._advance()
        try:
            return await self.sim.cancel_stop(order)
        finally:
            self._save()

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        self._advance()
        return await self.sim.fetch_stops(symbols)

    async def fetch_stop(self, symbol: str, client_order_id: str) -> StopOrder | None:
        self._advance()
        return await self.sim.fetch_stop(symbol, client_order_id)

    async def close(self) -> None:
        if self._unsaved:
            self._save()

    # -- the replay ---------------------------------------------------------------------

    @property
    def bar(self) -> Bar:
        return self._bars[self._cursor]

    def _open(self) -> None:
        s = self.settings
        first = self._bars[0]
        self.sim.set_mark(s.symbol, first.close)
        rules = self.sim.markets[s.symbol]
        contracts = round_down(
            s.leverage * s.equity / (first.close * rules.contract_size),
            rules.amount_step or Decimal("0.001"),
        )
        if s.margin_mode is MarginMode.ISOLATED:
            self.sim.open_position(
                s.symbol, s.side, contracts, margin_mode=MarginMode.ISOLATED,
                isolated_margin=s.equity,
            )  # fmt: skip
        else:
            self.sim.open_position(s.symbol, s.side, contracts)

    def _advance(self) -> None:
        """Replay every bar whose time has come."""
        if self._waiting_for_first_look:
            self._waiting_for_first_look = False
            self._started_at = self._clock()
            self._unsaved = True
        elapsed = (self._clock() - self._started_at).total_seconds()
        due = int(elapsed // self.settings.bar_seconds)
        if due >= len(self._bars):
            if not self.settings.loop:
                due = len(self._bars) - 1
            else:
                laps = due // len(self._bars)
                self._started_at += timedelta(
                    seconds=laps * len(self._bars) * self.settings.bar_seconds
                )
                self._cursor = -1
                due %= len(self._bars)
        moved = False
        symbol = self.settings.symbol
        while self._cursor < due:
            self._cursor += 1
            bar = self._bars[self._cursor]
            for extreme in (bar.low, bar.high):
                for fired in self.sim.trigger_stops(symbol, bar.open, extreme):
                    logger.info(
                        "paper account %s: stop %s %s at bar %s",
                        self.name, fired.client_order_id, fired.status.value, bar.timestamp,
                    )  # fmt: skip
            if self.sim.check_liquidation(symbol, {Side.LONG: bar.low, Side.SHORT: bar.high}):
                logger.warning("paper account %s liquidated at bar %s", self.name, bar.timestamp)
            self.sim.set_mark(symbol, bar.close)
            moved = True
        if moved:
            self._save()

    # -- durability ---------------------------------------------------------------------

    def _save(self) -> None:
        path = self.settings.state_file
        if path is None or self.read_only:
            return
        # The data directory, as the journal makes it: owner only, whatever the umask.
        with contextlib.suppress(FileExistsError):
            path.parent.mkdir(parents=True, mode=0o700)
            path.parent.chmod(0o700)
        document = {
            "version": 1,
            "started_at": self._started_at.isoformat(),
            "cursor": self._cursor,
            "feed": str(self.settings.feed),
            "state": _encode_state(self.sim.state()),
            "transfers": _encode_transfers(self.sim.transfers),
        }
        temporary = path.with_suffix(path.suffix + ".tmp")
        # 0600 from the first byte (an account's state is nobody else's business); the
        # chmod covers a temporary file left by a crash with a looser mode.
        descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with open(descriptor, "w") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        self._unsaved = False

    def _load(self) -> bool:
        path = self.settings.state_file
        if path is None or not path.is_file():
            return False
        try:
            document = json.loads(path.read_text())
            state = _decode_state(document["state"])
            started_at = datetime.fromisoformat(document["started_at"])
            cursor = int(document["cursor"])
            # Absent in files written before transfers could be looked up.
            transfers = _decode_transfers(document.get("transfers", {}))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: unreadable paper account state ({error})") from None
        if document.get("feed") != str(self.settings.feed) or cursor >= len(self._bars):
            logger.warning("%s: state was for another feed; starting a fresh paper account", path)
            return False
        self.sim.restore(state)
        self.sim.transfers = transfers
        self._started_at, self._cursor = started_at, cursor
        logger.info("paper account %s restored from %s at bar %d", self.name, path, cursor)
        return True


def _encode_state(state: SimState) -> dict[str, Any]:
    return {
        "wallet": str(state.wallet),
        "source": str(state.source),
        "marks": {k: str(v) for k, v in state.marks.items()},
        "positions": [
            {
                "symbol": p.symbol, "side": p.side.value, "contracts": str(p.contracts),
                "entry_price": str(p.entry_price), "margin_mode": p.margin_mode.value,
                "isolated_margin": str(p.isolated_margin),
            }
            for p in state.positions
        ],
        "orders": {
            cid: {
                "exchange_id": o.exchange_id, "symbol": o.symbol, "side": o.side.value,
                "amount": str(o.amount), "filled": str(o.filled),
                "average_price": None if o.average_price is None else str(o.average_price),
                "fee": str(o.fee), "status": o.status,
            }
            for cid, o in state.orders.items()
        },
        "next_id": state.next_id,
        "stops": {cid: _encode_stop(s) for cid, s in state.stops.items()},
        "stop_fills": dict(state.stop_fills),
    }  # fmt: skip


def _encode_stop(stop: StopOrder) -> dict[str, Any]:
    return {key: None if value is None else str(value) for key, value in asdict(stop).items()}


def _decode_stop(data: dict[str, Any]) -> StopOrder:
    return StopOrder(
        client_order_id=data["client_order_id"], exchange_id=data["exchange_id"],
        symbol=data["symbol"], side=OrderSide(data["side"]), amount=Decimal(data["amount"]),
        trigger_price=Decimal(data["trigger_price"]), status=StopStatus(data["status"]),
        position_side=None if data["position_side"] is None else Side(data["position_side"]),
        filled=Decimal(data["filled"]),
        average_price=None if data["average_price"] is None else Decimal(data["average_price"]),
        fee=Decimal(data["fee"]),
    )  # fmt: skip


def _encode_transfers(transfers: dict[str, TransferResult]) -> dict[str, Any]:
    return {
        cid: {
            "transfer_id": t.transfer_id, "currency": t.currency, "amount": str(t.amount),
            "into_derivatives": t.into_derivatives,
        }
        for cid, t in transfers.items()
    }  # fmt: skip


def _decode_transfers(data: dict[str, Any]) -> dict[str, TransferResult]:
    return {
        cid: TransferResult(
            transfer_id=t["transfer_id"], currency=t["currency"], amount=Decimal(t["amount"]),
            into_derivatives=bool(t["into_derivatives"]),
        )
        for cid, t in data.items()
    }  # fmt: skip


def _decode_state(data: dict[str, Any]) -> SimState:
    return SimState(
        wallet=Decimal(data["wallet"]),
        source=Decimal(data["source"]),
        marks={k: Decimal(v) for k, v in data["marks"].items()},
        positions=[
            SimPosition(
                p["symbol"], Side(p["side"]), Decimal(p["contracts"]), Decimal(p["entry_price"]),
                MarginMode(p["margin_mode"]), Decimal(p["isolated_margin"]),
            )
            for p in data["positions"]
        ],
        orders={
            cid: OrderResult(
                client_order_id=cid, exchange_id=o["exchange_id"], symbol=o["symbol"],
                side=OrderSide(o["side"]), amount=Decimal(o["amount"]),
                filled=Decimal(o["filled"]),
                average_price=None if o["average_price"] is None else Decimal(o["average_price"]),
                fee=Decimal(o["fee"]), status=OrderStatus(o["status"]),
            )
            for cid, o in data["orders"].items()
        },
        next_id=int(data["next_id"]),
        # Absent in files written before stops could rest.
        stops={cid: _decode_stop(s) for cid, s in data.get("stops", {}).items()},
        stop_fills=dict(data.get("stop_fills", {})),
    )  # fmt: skip
