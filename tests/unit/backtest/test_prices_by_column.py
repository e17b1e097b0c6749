"""Price files read a column at a time give what the row-by-row reading gave: the same
bars, and for a bad file the same message naming the first bad row."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.exchange.sim.prices import Bar, PriceFileError, load_prices

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = ["1000,10,11,9,10.5,1", "2000,10.5,12,10,11,1", "3000,11,11.5,10.8,11.2,2"]
GOOD_BARS = (
    Bar(1000, Decimal("10"), Decimal("11"), Decimal("9"), Decimal("10.5")),
    Bar(2000, Decimal("10.5"), Decimal("12"), Decimal("10"), Decimal("11")),
    Bar(3000, Decimal("11"), Decimal("11.5"), Decimal("10.8"), Decimal("11.2")),
)


def write(tmp_path: Path, data: str | bytes, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    "text",
    [
        HEADER + "\n".join(GOOD) + "\n",
        HEADER + "\r\n".join(GOOD) + "\r\n",
        HEADER + "\r".join(GOOD) + "\r",
        HEADER + "\n".join(GOOD),
        HEADER + "\n".join(GOOD) + "\n\n",
        HEADER + "\n\n".join(GOOD) + "\n",
        HEADER + '"1000","10","11","9","10.5","1"\n' + "\n".join(GOOD[1:]) + "\n",
        HEADER + "\n".join(row + ",extra" for row in GOOD) + "\n",
        HEADER + GOOD[0] + ",extra\n" + "\n".join(GOOD[1:]) + "\n",
        HEADER + " 1000 , 10 ,11 ,9, 10.5,1\n" + "\n".join(GOOD[1:]) + "\n",
        "timestamp,open,high,low,close\n" + "\n".join(r.rsplit(",", 1)[0] for r in GOOD),
        "volume,close,low,high,open,timestamp\n"
        + "\n".join(",".join(reversed(r.split(","))) for r in GOOD),
        "[[1000, 10, 11, 9, 10.5, 1], [2000, 10.5, 12, 10, 11, 1], "
        "[3000, 11, 11.5, 10.8, 11.2, 2]]",
    ],
    ids=[
        "lf",
        "crlf",
        "cr",
        "no-final-newline",
        "blank-at-end",
        "blank-between",
        "quoted",
        "extra-columns",
        "one-extra-column",
        "spaces",
        "no-volume",
        "columns-reordered",
        "json",
    ],
)
def test_load_prices_when_file_is_well_formed_then_same_bars_however_written(
    tmp_path: Path, text: str
) -> None:
    name = "p.json" if text.startswith("[") else "p.csv"
    bars = load_prices(write(tmp_path, text, name)).bars
    assert bars == GOOD_BARS
    assert [str(bar.open) for bar in bars] == ["10", "10.5", "11"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # The first bad row is named, whatever is wrong further down.
        ([GOOD[0], "2000,10.5,nan,10,11,1", "3000,abc,11.5,10.8,11.2,2"], "line 3: high is 'nan'"),
        ([GOOD[0], GOOD[1], "3000,11,11.5,10.8,-1,2", "4000,x,1,1,1,1"],
         "line 4: close must be positive, got -1"),
        ([GOOD[0], "2000,10.5,12,10,Infinity,1", GOOD[2]], "line 3: close is 'Infinity'"),
        ([GOOD[0], "2000,10.5,12,10,11,1", "3000,11,1e13,10.8,11.2,2"],
         "line 4: high must be at most 1000000000000, got 1e13"),
        ([GOOD[0], "2000,10.5,12,-inf,11,1", GOOD[2]], "line 3: low is '-inf'"),
        ([GOOD[0], "2000,10.5,10.6,10,11,1", GOOD[2]],
         "line 3: high/low do not bracket open/close"),
        ([GOOD[0], "2000,10.5,12,10.7,11,1", GOOD[2]],
         "line 3: high/low do not bracket open/close"),
        ([GOOD[0], "x2000,10.5,12,10,11,1", GOOD[2]], "line 3: timestamp 'x2000' is not a number"),
        ([GOOD[0], "0,10.5,12,10,11,1", GOOD[2]], "line 3: bad timestamp '0'"),
        ([GOOD[0], "", "2000,10.5,12,nan,11,1"], "line 4: low is 'nan'"),
        ([GOOD[0], "2000,10.5,12", "3000,abc,1,1,1,1"], "line 3 has 3 fields"),
        ([GOOD[0], GOOD[2], GOOD[1]], "timestamps not sorted (2000 after 3000)"),
        ([GOOD[0], GOOD[1], GOOD[1]], "duplicate timestamp 2000"),
    ],
)  # fmt: skip
def test_load_prices_when_a_row_is_bad_then_the_first_bad_row_is_named(
    tmp_path: Path, rows: list[str], message: str
) -> None:
    with pytest.raises(PriceFileError) as caught:
        load_prices(write(tmp_path, HEADER + "\n".join(rows) + "\n"))
    assert str(caught.value) == f"{tmp_path / 'p.csv'}: {message}"


def test_load_prices_when_json_candle_bad_then_the_candle_is_named(tmp_path: Path) -> None:
    text = "[[1000, 10, 11, 9, 10.5, 1], [2000, 10.5, 12, 10, null, 1], [3000, 1, 1, 1, 1, 1]]"
    with pytest.raises(PriceFileError, match=r"p\.json: candle 1: close 'None' is not a number"):
        load_prices(write(tmp_path, text, "p.json"))


def test_load_prices_when_undecodable_after_a_short_row_then_the_short_row_is_named(
    tmp_path: Path,
) -> None:
    # Far enough down the file to be in a later read than the short row.
    more = "".join(f"{3000 + i},10,11,9,10,1\n" for i in range(5_000))
    data = (HEADER + GOOD[0] + "\n2000,10.5\n" + more).encode() + b"\xff\xfe\n"
    with pytest.raises(PriceFileError, match="line 3 has 2 fields"):
        load_prices(write(tmp_path, data))


def test_load_prices_when_undecodable_then_not_readable(tmp_path: Path) -> None:
    data = (HEADER + "\n".join(GOOD) + "\n").encode() + b"\xff\n"
    with pytest.raises(PriceFileError, match=r"not a readable text file .*can't decode byte 0xff"):
        load_prices(write(tmp_path, data))


def test_load_prices_when_a_field_is_over_the_csv_limit_then_not_readable(tmp_path: Path) -> None:
    text = HEADER + GOOD[0] + "\n2000," + "1" * 140_000 + ",12,10,11,1\n"
    with pytest.raises(PriceFileError, match=r"not a readable text file \(field larger"):
        load_prices(write(tmp_path, text))


def test_load_prices_when_neighbouring_bad_ticks_then_each_judged_in_turn(
    tmp_path: Path,
) -> None:
    # Bar 2's wick is clamped to its neighbourhood (bar 3's high); bar 3 is then judged
    # against bar 2 as clamped, and kept.
    rows = ["1000,100,101,99,100,1", "2000,100,400,99,100,1", "3000,100,130,99,100,1",
            "4000,100,101,99,100,1", "5000,100,101,20,100,1", "6000,100,101,99,100,1"]  # fmt: skip
    series = load_prices(write(tmp_path, HEADER + "\n".join(rows) + "\n"))
    assert [(bar.high, bar.low) for bar in series.bars] == [
        (101, 99), (130, 99), (130, 99), (101, 99), (101, 99), (101, 99),
    ]  # fmt: skip
    assert series.clamped == (2000, 5000)


def test_bar_ms_when_two_spacings_are_as_common_then_the_first_seen(tmp_path: Path) -> None:
    rows = ["1000,1,1,1,1,1", "3000,1,1,1,1,1", "4000,1,1,1,1,1", "6000,1,1,1,1,1",
            "7000,1,1,1,1,1"]  # fmt: skip
    assert load_prices(write(tmp_path, HEADER + "\n".join(rows))).bar_ms == 2000
