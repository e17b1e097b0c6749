"""The paper venue's books: the replayed account (a PaperExchange) and the record of
every write it executed, each kept in a file so the venue outlives any client.

The account lives in `<state>.account.json` (PaperExchange's own format); the record
(every executed order and transfer with its ids and time, the transfer history Binance
serves, every stop order placed with its flags, and the faults injected) in `<state>`,
written atomically after every change. A stop's state (resting, triggered with the
market order it spawned, cancelled) lives in the account, which fires it as the replay
moves the mark past its trigger.
The record is what a chaos run checks the client's journal against.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.paper_venue import binance_payloads as payloads
from bot.exchange.port import MarginResult, OrderRequest, OrderResult, StopRequest
from bot.exchange.sim.paper import PaperExchange, PaperSettings

logger = logging.getLogger(__name__)


def account_file(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".account.json")


@dataclass
class VenueRecord:
    """What the venue did, in the order it did it."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    # Stop orders placed (algo orders), with the flags their replies echo; a cancel
    # through the venue adds its time.
    stops: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "orders": self.orders,
            "transfers": self.transfers,
            "stops": self.stops,
            "faults": dict(self.faults),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VenueRecord:
        return cls(
            orders=list(data.get("orders", [])),
            transfers=list(data.get("transfers", [])),
            faults=Counter(data.get("faults", {})),
            stops=list(data.get("stops", [])),
        )


class VenueBook:
    """The account behind the venue, and its record of executed writes."""

    def __init__(
        self,
        settings: PaperSettings,
        clock: Callable[[], datetime],
        state_file: Path | None,
    ) -> None:
        self._clock = clock
        self._state_file = state_file
        if state_file is not None:
            settings = _with_state(settings, account_file(state_file))
        self.paper = PaperExchange(settings, clock)
        self.settle = self.paper.sim.settle
        self.record = self._load()

    # -- reads ------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    async def snapshot(self) -> Any:
        """The account now (advancing the replay), as the simulator reports it."""
        return await self.paper.fetch_snapshot()

    @property
    def markets(self) -> dict[str, Any]:
        return self.paper.sim.markets

    async def find_order(self, symbol: str, client_id: str) -> tuple[OrderResult, int] | None:
        result = await self.paper.fetch_order_by_client_id(symbol, client_id)
        if result is None:
            return None
        at = next(
            (o["time"] for o in self.record.orders if o["client_id"] == client_id), self.now_ms()
        )
        return result, int(at)

    async def find_order_by_number(
        self, symbol: str, number: int
    ) -> tuple[OrderResult, str] | None:
        """The order with Binance orderId `number` (a stop's spawned order included),
        and its client id."""
        await self.paper.fetch_snapshot()
        found = self.paper.sim.order_by_exchange_id(f"O{number}")
        if found is None or found.symbol != symbol:
            return None
        return found, found.client_order_id

    async def find_stop(
        self, symbol: str, client_id: str | None, number: int | None
    ) -> StopOrder | None:
        """A stop by its client id or its algoId, in whatever state it is now."""
        if client_id is None:
            entry = next((e for e in self.record.stops if e["algo_id"] == str(number)), None)
            if entry is None:
                return None
            client_id = str(entry["client_id"])
        return await self.paper.fetch_stop(symbol, client_id)

    async def open_stops(self, symbols: list[str]) -> tuple[StopOrder, ...]:
        return await self.paper.fetch_stops(symbols)

    def stop_fill(self, client_id: str) -> OrderResult | None:
        return self.paper.sim.stop_fill(client_id)

    def stop_flags(self, client_id: str) -> dict[str, Any]:
        """The stop's positionSide, workingType and times (placed, last changed, fired:
        0 while it has not)."""
        entry = next((e for e in self.record.stops if e["client_id"] == client_id), {})
        placed = int(entry.get("time", self.now_ms()))
        fired = int(entry.get("fired_at", 0))
        return {
            "position_side": str(entry.get("position_side", "BOTH")),
            "working_type": str(entry.get("working_type", "MARK_PRICE")),
            "create_ms": placed,
            "update_ms": int(entry.get("canceled_at", fired or placed)),
            "trigger_ms": fired,
        }

    def note_fired(self) -> None:
        """Record the stops the replay has fired since the last look: when (the request
        that moved the replay past them), what they filled and at what price, so the
        record accounts for every contract that left the position."""
        changed = False
        for entry in self.record.stops:
            if "fired_at" in entry or "canceled_at" in entry:
                continue
            stop = self.paper.sim.stop_state(str(entry["client_id"]))
            if stop is None or stop.resting or stop.status is StopStatus.CANCELED:
                continue
            spawned = self.paper.sim.stop_fill(stop.client_order_id)
            entry.update(
                status=stop.status.value,
                filled=str(stop.filled),
                price=None if stop.average_price is None else str(stop.average_price),
                order_id=None
                if spawned is None
                else str(payloads.exchange_number(spawned.exchange_id)),
                fired_at=self.now_ms(),
            )
            changed = True
        if changed:
            self.save()

    def order_flags(self, client_id: str) -> tuple[bool, str]:
        entry = next((o for o in self.record.orders if o["client_id"] == client_id), {})
        return bool(entry.get("reduce_only", True)), str(entry.get("position_side", "BOTH"))

    def transfer_history(
        self, kind: str | None, start_ms: int | None, end_ms: int | None
    ) -> list[dict[str, Any]]:
        """Newest first, as Binance lists them."""
        rows = [
            t
            for t in self.record.transfers
            if (kind is None or t["type"] == kind)
            and (start_ms is None or t["time"] >= start_ms)
            and (end_ms is None or t["time"] <= end_ms)
        ]
        return [
            payloads.transfer_row(
                int(t["tran_id"]), t["asset"], Decimal(t["amount"]), t["type"], int(t["time"])
            )
            for t in reversed(rows)
        ]

    # -- writes (each one recorded before its reply is sent, or lost) ------------------

    async def create_order(self, request: OrderRequest, position_side: str) -> OrderResult:
        result = await self.paper.create_order(request)
        self.record.orders.append(
            {
                "client_id": request.client_order_id,
                "exchange_id": str(payloads.exchange_number(result.exchange_id)),
                "symbol": request.symbol,
                "side": request.side.value,
                "amount": str(result.amount),
                "price": str(result.average_price),
                "reduce_only": request.reduce_only,
                "position_side": position_side,
                "time": self.now_ms(),
            }
        )
        self.save()
        return result

    async def place_stop(
        self, request: StopRequest, position_side: str, working_type: str
    ) -> StopOrder:
        placed = await self.paper.place_stop(request)
        self.record.stops.append(
            {
                "client_id": placed.client_order_id,
                "algo_id": str(payloads.exchange_number(placed.exchange_id)),
                "symbol": placed.symbol,
                "side": placed.side.value,
                "amount": str(placed.amount),
                "trigger_price": str(placed.trigger_price),
                "position_side": position_side,
                "working_type": working_type,
                "time": self.now_ms(),
            }
        )
        self.save()
        return placed

    async def cancel_stop(self, stop: StopOrder) -> StopOrder:
        after = await self.paper.cancel_stop(stop)
        for entry in self.record.stops:
            if entry["client_id"] == stop.client_order_id and after.status is StopStatus.CANCELED:
                entry["canceled_at"] = self.now_ms()
        self.save()
        return after

    async def transfer(self, amount: Decimal, into_derivatives: bool) -> int:
        kind = payloads.TRANSFER_TYPES[into_derivatives]
        client_id = f"venue-{len(self.record.transfers) + 1}"
        result = await self.paper.transfer(self.settle, amount, into_derivatives, client_id)
        tran_id = payloads.exchange_number(result.transfer_id)
        self.record.transfers.append(
            {
                "tran_id": str(tran_id),
                "asset": self.settle,
                "amount": str(result.amount),
                "type": kind,
                "time": self.now_ms(),
            }
        )
        self.save()
        return tran_id

    async def adjust_margin(
        self, symbol: str, side: Any, amount: Decimal, add: bool, hedged: bool
    ) -> MarginResult:
        return await self.paper.adjust_margin(symbol, side, amount, add, hedged)

    # -- durability ---------------------------------------------------------------------

    def save(self) -> None:
        path = self._state_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w") as handle:
            json.dump(self.record.as_json(), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def _load(self) -> VenueRecord:
        path = self._state_file
        if path is None or not path.is_file():
            return VenueRecord()
        try:
            record = VenueRecord.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: unreadable paper venue record ({error})") from None
        logger.info(
            "paper venue restored from %s: %d orders, %d transfers",
            path,
            len(record.orders),
            len(record.transfers),
        )
        return record


def _with_state(settings: PaperSettings, state_file: Path) -> PaperSettings:
    from dataclasses import replace

    return replace(settings, state_file=state_file)
