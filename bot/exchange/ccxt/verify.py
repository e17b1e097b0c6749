"""Checks on what a venue sent, before a snapshot is built from it (issue 9 §1).

A reply is data to verify, not truth: a 200 whose body was cut off, `{}` or `[]` from a
proxy, a field missing or not a number, or two views of the account that contradict
each other raise `UnverifiedData` naming the reason, so nothing is planned on them.
Pure functions over ccxt's parsed payloads; the venue-specific cross-checks are the
profiles' `verify_account` hooks, built from these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt

from bot.domain.models import ZERO, Position
from bot.exchange.ccxt.payloads import decimal_or_none
from bot.exchange.port import UnverifiedData

# No account holds this much of anything, and no price is this high: a value past it is
# a garbled reply (or a unit mix-up), not a balance.
ABSURD = Decimal("1e15")
# Two views of one figure that the venue rounds separately, or that come from two
# requests a few milliseconds apart (the mark moves in between): this close is agreement.
VIEW_TOLERANCE = Decimal("0.01")
# Below this (in the settle currency) a difference is rounding, whatever the size.
VIEW_FLOOR = Decimal("0.01")
# A second read of a mark that jumped confirms it when it is this close to the first.
MARK_CONFIRM_TOLERANCE = Decimal("0.01")


def refuse_cut_json(exchange: Any) -> None:
    """Make a ccxt instance raise `ccxt.BadResponse` for a body that starts as JSON but
    does not parse (a 200 cut short), where ccxt would hand the raw text to its parsers,
    which read it as an empty balance or no positions (or crash on it)."""
    loads = exchange.on_json_response

    def parse_json(http_response: object) -> Any:
        if not isinstance(http_response, str) or http_response[:1] not in ("{", "["):
            return None  # not JSON at all (HTML, empty): ccxt's own handling stands
        try:
            return loads(http_response)
        except ValueError:
            raise ccxt.BadResponse(f"{exchange.id}: the reply is not complete JSON") from None

    exchange.parse_json = parse_json


def number(value: object, what: str, *, positive: bool = False, signed: bool = False) -> Decimal:
    """`value` as a finite Decimal below `ABSURD` in size; non-negative unless `signed`,
    above zero when `positive`. Raises `UnverifiedData` naming `what` otherwise."""
    parsed = decimal_or_none(value)
    if parsed is None:
        raise UnverifiedData(f"{what} is {_shown(value)}, not a number")
    return _sane(parsed, what, positive=positive, signed=signed)


def optional_number(
    value: object, what: str, *, positive: bool = False, signed: bool = False
) -> Decimal | None:
    """Like `number`, but None (or '') is allowed and gives None; garbage is not."""
    if value is None or value == "":
        return None
    return number(value, what, positive=positive, signed=signed)


def _sane(parsed: Decimal, what: str, *, positive: bool, signed: bool) -> Decimal:
    if abs(parsed) >= ABSURD:
        raise UnverifiedData(f"{what} is {parsed}, beyond any real account")
    if positive and parsed <= ZERO:
        raise UnverifiedData(f"{what} is {parsed}, not positive")
    if not signed and parsed < ZERO:
        raise UnverifiedData(f"{what} is {parsed}, negative")
    return parsed


def close(first: Decimal, second: Decimal, tolerance: Decimal = VIEW_TOLERANCE) -> bool:
    """Whether two views of one figure agree (relative `tolerance`, or within `VIEW_FLOOR`)."""
    return abs(first - second) <= max(VIEW_FLOOR, tolerance * max(abs(first), abs(second)))


def agree(name: str, reported: Decimal, expected: Decimal, how: str) -> str | None:
    """None when `reported` agrees with `expected` (worked out `how`), else the reason."""
    if close(reported, expected):
        return None
    return f"{name} {reported} disagrees with {how} = {expected}"


def balance_reply(reply: object, what: str) -> Mapping[str, Any]:
    """A ccxt balance whose `info` (the venue's parsed JSON) is a non-empty object or list.

    A truncated body reaches ccxt's parser as a str and `{}` as nothing: both would read
    as a zero balance.
    """
    if not isinstance(reply, Mapping):
        raise UnverifiedData(f"{what}: the reply is {type(reply).__name__}, not a balance")
    info = reply.get("info")
    if not isinstance(info, Mapping | list) or not info:
        raise UnverifiedData(f"{what}: the reply is not a complete JSON document")
    return reply


def position_rows(reply: object) -> list[Mapping[str, Any]]:
    """ccxt's positions, each a dict with a symbol and the venue's own row in `info`."""
    if not isinstance(reply, list):
        raise UnverifiedData(f"positions: the reply is {type(reply).__name__}, not a list")
    for row in reply:
        if (
            not isinstance(row, Mapping)
            or not isinstance(row.get("symbol"), str)
            or not isinstance(row.get("info"), Mapping)
            or not row.get("info")
        ):
            raise UnverifiedData("positions: a row is not a complete position")
    return reply


def open_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows with contracts (after `position_rows`): flat ones say nothing is open."""
    return [row for row in rows if decimal_or_none(row.get("contracts")) not in (None, ZERO)]


def check_position_row(row: Mapping[str, Any], side: str | None, *, notional_at_mark: bool) -> None:
    """Every figure of one ccxt position the math needs, present and sane.

    A flat row (0 contracts) is fine; an open one needs a side and an entry price; a mark
    may be missing (the planner holds off then) but never negative, and where the venue
    reports the notional at the mark (`notional_at_mark`: a linear contract on a venue
    whose notional is) it must be amount x mark.
    """
    symbol = row.get("symbol")
    contracts = number(row.get("contracts"), f"position {symbol}: contracts", signed=True)
    if contracts == ZERO:
        return
    if side not in ("long", "short"):
        raise UnverifiedData(f"position {symbol}: {contracts} contracts but no side")
    number(row.get("entryPrice"), f"position {symbol}: entry price", positive=True)
    mark = optional_number(row.get("markPrice"), f"position {symbol}: mark price")
    optional_number(row.get("liquidationPrice"), f"position {symbol}: liquidation price")
    reported = optional_number(row.get("notional"), f"position {symbol}: notional", signed=True)
    size = optional_number(row.get("contractSize"), f"position {symbol}: contract size")
    if not notional_at_mark or mark is None or mark == ZERO or not reported:
        return
    expected = abs(contracts) * (size or Decimal(1)) * mark
    problem = agree(f"position {symbol}: notional", abs(reported), expected, "amount x mark")
    if problem is not None:
        raise UnverifiedData(problem)


def check_position(position: Position) -> None:
    """The figures the profile read from a position's own row (margins) are sane."""
    what = f"position {position.key}"
    if position.maintenance_margin is not None:
        _sane(
            position.maintenance_margin, f"{what}: maintenance margin", positive=False, signed=False
        )
    _sane(position.isolated_margin, f"{what}: isolated margin", positive=False, signed=True)


def empty_but_margined(
    rows: Sequence[Mapping[str, Any]], figures: Mapping[str, Decimal]
) -> str | None:
    """The contradiction of an account holding position margin or notional (`figures`,
    by name) while the positions reply lists no open position."""
    if open_rows(rows):
        return None
    held = {name: value for name, value in figures.items() if value > ZERO}
    if not held:
        return None
    shown = ", ".join(f"{name} {value}" for name, value in held.items())
    return f"the account reports {shown} but the positions reply lists no open position"


def confirmed_mark(
    symbol: str, first: Decimal, second: Decimal | None, moved: Decimal | None
) -> None:
    """Raise unless a second read of a mark that `moved` (a fraction; None: a mark derived
    from the account, seen for the first time) confirms the first."""
    if second is not None and close(first, second, MARK_CONFIRM_TOLERANCE):
        return
    why = "derived from the account" if moved is None else f"moved {moved:.1%} since the last"
    raise UnverifiedData(
        f"mark of {symbol} {why} snapshot ({first}) and a second read did not confirm it ({second})"
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
