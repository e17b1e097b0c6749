"""Price and funding files for the backtest: CSV or freqtrade JSON candles, funding CSV.

Bad input is a `PriceFileError` naming the file and the row, never a traceback.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from operator import eq, ge, gt, le, lt, mul, or_, sub
from pathlib import Path

logger = logging.getLogger(__name__)

# A wick further than this from the bar's body and from both neighbours' extremes is a
# one-off print. Exchanges liquidate on the mark price (an index across venues), which
# such a print never reaches, so the wick is clamped to the neighbourhood's extreme.
BAD_TICK_RATIO = Decimal("0.5")
# Bounds that keep a garbled file from reaching the arithmetic: a price above 1e12 (no
# asset trades there) overflows Decimal's context in the sums, and a timestamp past
# year 9999 is no datetime.
MAX_PRICE = Decimal("1e12")
MAX_TIMESTAMP_MS = 253_402_300_799_999
# Seconds since the epoch for any date from 1973 on lie in [1e8, 1e11); read as ms they
# fall before 1973-03-03, when no crypto venue traded: such a file is in seconds. Small
# synthetic stamps (1, 2, ...) stay accepted.
SECONDS_RANGE = (100_000_000, 100_000_000_000)


class PriceFileError(ValueError):
    """The file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Bar:
    timestamp: int  # ms since epoch, UTC: the file's own timestamp
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


@dataclass(frozen=True, slots=True)
class FundingRate:
    timestamp: int
    rate: Decimal


@dataclass(frozen=True, slots=True)
class PriceSeries:
    bars: tuple[Bar, ...]
    clamped: tuple[int, ...]  # timestamps of bars whose wick was a bad tick

    @property
    def bar_ms(self) -> int:
        """The most common spacing between bars."""
        if len(self.bars) < 2:
            return 0
        stamps = [bar.timestamp for bar in self.bars]
        # Counted in first-seen order, so a tie goes to the gap seen first.
        gaps: Counter[int] = Counter(map(sub, stamps[1:], stamps[:-1]))
        return max(gaps, key=lambda gap: gaps[gap])


def load_prices(path: Path) -> PriceSeries:
    """Read `timestamp,open,high,low,close,volume` CSV or freqtrade JSON candles."""
    _check_is_file(path)
    try:
        rows = _read_json(path) if path.suffix.lower() == ".json" else _read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PriceFileError(f"{path}: not a readable text file ({error})") from None
    if len(rows) < 2:
        raise PriceFileError(f"{path}: needs at least 2 candles, found {len(rows)}")
    # A year of 5m bars is 100k rows: they are read a column at a time, and only a file
    # that fails a check is read again row by row, for the message naming the first bad row.
    bars = _bars_by_column(rows)
    if bars is None:
        bars = [_bar(path, where, row) for where, row in rows]
    stamps = [bar.timestamp for bar in bars]
    if not all(map(lt, stamps, stamps[1:])):
        for previous, bar in itertools.pairwise(bars):
            if bar.timestamp == previous.timestamp:
                raise PriceFileError(f"{path}: duplicate timestamp {bar.timestamp}")
            if bar.timestamp < previous.timestamp:
                raise PriceFileError(
                    f"{path}: timestamps not sorted ({bar.timestamp} after {previous.timestamp})"
                )
    _check_milliseconds(path, bars[-1].timestamp)
    return _clamp_bad_ticks(bars)


def load_funding(path: Path) -> tuple[FundingRate, ...]:
    """Read a `timestamp,funding_rate` CSV, sorted by time."""
    _check_is_file(path)
    rates: list[FundingRate] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"timestamp", "funding_rate"} - set(reader.fieldnames or ())
        if missing:
            raise PriceFileError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            timestamp = _timestamp(path, f"line {line}", row["timestamp"])
            rate = _number(path, f"line {line}", "funding_rate", row["funding_rate"])
            rates.append(FundingRate(timestamp, rate))
    rates.sort(key=lambda r: r.timestamp)
    if rates:
        _check_milliseconds(path, rates[-1].timestamp)
    return tuple(rates)


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise PriceFileError(f"{path}: is a directory; give the CSV or JSON file inside it")
    if not path.is_file():
        raise PriceFileError(f"{path}: no such file")


def _check_milliseconds(path: Path, latest: int) -> None:
    if SECONDS_RANGE[0] <= latest < SECONDS_RANGE[1]:
        as_seconds = datetime.fromtimestamp(latest, UTC).strftime("%Y-%m-%d")
        raise PriceFileError(
            f"{path}: timestamps look like seconds (last {latest} = {as_seconds} in seconds), "
            "the file needs milliseconds since the epoch, UTC: multiply the timestamp column "
            "by 1000"
        )


@dataclass(frozen=True, slots=True)
class _Rows:
    """A file's candles as text columns (timestamp, open, high, low, close), and where
    each row is in the file."""

    unit: str  # "line" or "candle"
    numbers: Sequence[int]
    columns: tuple[Sequence[str], ...]

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self) -> Iterator[tuple[str, list[str]]]:
        for number, *row in zip(self.numbers, *self.columns, strict=True):
            yield f"{self.unit} {number}", row


def _read_csv(path: Path) -> _Rows:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise PriceFileError(f"{path}: empty file")
        names = [h.strip().lower() for h in header]
        wanted = ["timestamp", "open", "high", "low", "close"]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise PriceFileError(f"{path}: missing column(s) {', '.join(missing)}")
        index = [names.index(w) for w in wanted]
        try:
            lines = _plain_lines(handle.read(), len(names))
        except UnicodeDecodeError:
            lines = None
    if lines is not None:
        cells = ",".join(lines).split(",")
        columns = tuple(cells[i :: len(names)] for i in index)
        return _Rows("line", range(2, len(lines) + 2), columns)
    # Read again by the csv module, row by row, so the problem met first is the one named.
    numbers: list[int] = []
    rows: list[list[str]] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for line, raw in enumerate(reader, start=2):
            if not raw:
                continue
            if len(raw) < len(names):
                raise PriceFileError(f"{path}: line {line} has {len(raw)} fields")
            numbers.append(line)
            rows.append([raw[i] for i in index])
    return _Rows("line", numbers, tuple(zip(*rows, strict=True)) if rows else ((),) * 5)


def _plain_lines(text: str, fields: int) -> list[str] | None:
    """The lines after the header when each is `fields` plain values (no quotes, blank
    lines, NULs or lone CRs, no value over the csv module's size limit): split the way
    `csv.reader` would split them. None for anything else, which the csv module reads."""
    if '"' in text or "\0" in text:
        return None
    text = text.replace("\r\n", "\n")
    if "\r" in text:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or max(map(len, lines)) > csv.field_size_limit():
        return None
    if not all(map(eq, map(str.count, lines, itertools.repeat(",")), itertools.repeat(fields - 1))):
        return None
    return lines


def _read_json(path: Path) -> _Rows:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PriceFileError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise PriceFileError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, list):
        raise PriceFileError(f"{path}: expected a list of [ms, o, h, l, c, v] candles")
    rows: list[list[str]] = []
    for i, candle in enumerate(data):
        if not isinstance(candle, list) or len(candle) < 5:
            raise PriceFileError(f"{path}: candle {i} is not [ms, o, h, l, c, v]")
        rows.append([str(v) for v in candle[:5]])
    return _Rows("candle", range(len(rows)), tuple(zip(*rows, strict=True)) if rows else ((),) * 5)


def _bars_by_column(rows: _Rows) -> list[Bar] | None:
    """The bars `_bar` makes of every row (two or more), or None if any row fails one of
    its checks."""
    stamp_texts, *price_texts = rows.columns
    try:
        stamps = list(map(float, stamp_texts))
        # Decimal ignores the spaces around a number as `_number`'s strip() does.
        o, h, low, c = (list(map(Decimal, texts)) for texts in price_texts)
        # `_bar`'s bracket check (high >= low follows from these). Every price takes part
        # in a comparison, and comparing a NaN raises InvalidOperation.
        brackets = (map(ge, h, o), map(ge, h, c), map(le, low, o), map(le, low, c))
        if not all(itertools.chain(*brackets)):
            return None
    except (ValueError, InvalidOperation):
        return None
    # Bracketed, every price lies in [min(low), max(high)]: an infinity is out of these
    # bounds too.
    if min(low) <= 0 or max(h) > MAX_PRICE:
        return None
    if not all(map(math.isfinite, stamps)) or not (
        min(stamps) > 0 and max(stamps) <= MAX_TIMESTAMP_MS
    ):
        return None
    return list(map(Bar, map(int, stamps), o, h, low, c))


def _bar(path: Path, where: str, row: list[str]) -> Bar:
    timestamp = _timestamp(path, where, row[0])
    o, h, low, c = (
        _price(path, where, name, value)
        for name, value in zip(("open", "high", "low", "close"), row[1:5], strict=True)
    )
    if h < max(o, c, low) or low > min(o, c, h):
        raise PriceFileError(f"{path}: {where}: high/low do not bracket open/close")
    return Bar(timestamp, o, h, low, c)


def _timestamp(path: Path, where: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise PriceFileError(f"{path}: {where}: timestamp {text!r} is not a number") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMESTAMP_MS:
        raise PriceFileError(f"{path}: {where}: bad timestamp {text!r}")
    return int(value)


def _number(path: Path, where: str, name: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise PriceFileError(f"{path}: {where}: {name} {text!r} is not a number") from None
    if not value.is_finite():
        raise PriceFileError(f"{path}: {where}: {name} is {text!r}")
    return value


def _price(path: Path, where: str, name: str, text: str) -> Decimal:
    value = _number(path, where, name, text)
    if value <= 0:
        raise PriceFileError(f"{path}: {where}: {name} must be positive, got {text}")
    if value > MAX_PRICE:
        raise PriceFileError(f"{path}: {where}: {name} must be at most {MAX_PRICE:f}, got {text}")
    return value


def _clamp_bad_ticks(bars: list[Bar]) -> PriceSeries:
    clamped: list[int] = []
    for i in _wick_suspects(bars):
        bar = bars[i]
        neighbours = bars[max(0, i - 1) : i] + bars[i + 1 : i + 2]
        body_high, body_low = max(bar.open, bar.close), min(bar.open, bar.close)
        ceiling = max([body_high, *(n.high for n in neighbours)])
        floor = min([body_low, *(n.low for n in neighbours)])
        high, low = bar.high, bar.low
        if high > body_high * (1 + BAD_TICK_RATIO) and high > ceiling * (1 + BAD_TICK_RATIO):
            high = ceiling
        if low < body_low * (1 - BAD_TICK_RATIO) and low < floor * (1 - BAD_TICK_RATIO):
            low = floor
        if (high, low) != (bar.high, bar.low):
            logger.warning(
                "bad tick at %s: high %s low %s clamped to %s / %s",
                bar.timestamp,
                bar.high,
                bar.low,
                high,
                low,
            )
            clamped.append(bar.timestamp)
            bars[i] = replace(bar, high=high, low=low)
    return PriceSeries(tuple(bars), tuple(clamped))


def _wick_suspects(bars: list[Bar]) -> list[int]:
    """Indexes of the bars whose wick reaches past the ratio from their own body: the
    first half of each test in `_clamp_bad_ticks`, which no other bar can pass. Taken a
    column at a time (the same Decimal products), in order, so a clamped bar is still
    the neighbour the next suspect sees."""
    opens = [bar.open for bar in bars]
    closes = [bar.close for bar in bars]
    tops = map(mul, map(max, opens, closes), itertools.repeat(1 + BAD_TICK_RATIO))
    bottoms = map(mul, map(min, opens, closes), itertools.repeat(1 - BAD_TICK_RATIO))
    high_wick = map(gt, [bar.high for bar in bars], tops)
    low_wick = map(lt, [bar.low for bar in bars], bottoms)
    return list(itertools.compress(itertools.count(), map(or_, high_wick, low_wick)))
