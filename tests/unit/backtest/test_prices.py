"""Price and funding files: what is accepted, what is refused with a clear message."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.exchange.sim.prices import PriceFileError, load_funding, load_prices

FIXTURES = Path(__file__).parents[2] / "fixtures" / "prices"
HEADER = "timestamp,open,high,low,close,volume\n"


def write(tmp_path: Path, text: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_prices_when_real_csv_then_bars_in_order_with_bar_size() -> None:
    series = load_prices(FIXTURES / "btc_1m_2021-05-19.csv")
    assert len(series.bars) == 1440
    assert series.bar_ms == 60_000
    assert series.bars[0].timestamp < series.bars[-1].timestamp
    assert series.clamped == ()


def test_load_prices_when_freqtrade_json_then_same_shape_as_csv() -> None:
    series = load_prices(FIXTURES / "freqtrade_BTC_USDT-5m_2021-05-19.json")
    assert len(series.bars) == 288
    assert series.bar_ms == 300_000
    assert all(bar.low <= bar.close <= bar.high for bar in series.bars)


def test_load_prices_when_missing_file_then_error_names_path(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match=r"nope\.csv: no such file"):
        load_prices(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,10,11,9,10,1\n1,10,11,9,10,1\n", "duplicate timestamp 1"),
        ("2,10,11,9,10,1\n1,10,11,9,10,1\n", "not sorted"),
        ("1,10,11,9,nan,1\n2,10,11,9,10,1\n", "close is 'nan'"),
        ("1,10,11,9,0,1\n2,10,11,9,10,1\n", "close must be positive"),
        ("1,10,11,9,-3,1\n2,10,11,9,10,1\n", "close must be positive"),
        ("1,10,11,9,abc,1\n2,10,11,9,10,1\n", "close 'abc' is not a number"),
        ("1,10,9,11,10,1\n2,10,11,9,10,1\n", "high/low do not bracket"),
        ("1,10,11,9,10,1\n", "at least 2 candles"),
    ],
)
def test_load_prices_when_bad_rows_then_error_names_the_problem(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(PriceFileError, match=message):
        load_prices(write(tmp_path, HEADER + body))


def test_load_prices_when_column_missing_then_error_lists_it(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match=r"missing column.*close"):
        load_prices(write(tmp_path, "timestamp,open,high,low\n1,1,1,1\n"))


def test_load_prices_when_json_is_not_candles_then_error(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="candle 0"):
        load_prices(write(tmp_path, '[{"a": 1}]', "p.json"))
    with pytest.raises(PriceFileError, match="not valid JSON"):
        load_prices(write(tmp_path, "[[1, 2", "q.json"))


def test_load_prices_when_real_eth_bad_tick_then_wick_clamped_to_neighbourhood() -> None:
    # ETH perp 1h, 2020-03-13 02:00 UTC: high 323.0 on a ~110 bar, a one-off print.
    series = load_prices(FIXTURES / "eth_perp_1h_2020-03-12_03-14.csv")
    bad = 1584064800000
    assert series.clamped == (bad,)
    bar = next(b for b in series.bars if b.timestamp == bad)
    assert bar.high == Decimal("140.0")  # the next bar's high, the neighbourhood's extreme
    assert bar.low == Decimal("84.23")  # the real low of the crash is kept


def test_load_funding_when_real_file_then_sorted_rates() -> None:
    rates = load_funding(FIXTURES / "eth_perp_funding_2022-06-10_06-20.csv")
    assert len(rates) == 30
    assert [r.timestamp for r in rates] == sorted(r.timestamp for r in rates)


def test_load_funding_when_bad_rate_then_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,funding_rate\n1,0.0001\n2,x\n", "f.csv")
    with pytest.raises(PriceFileError, match="line 3: funding_rate 'x'"):
        load_funding(path)


def test_load_prices_when_timestamps_look_like_seconds_then_error_says_milliseconds(
    tmp_path: Path,
) -> None:
    body = "1621382400,10,11,9,10,1\n1621382460,10,11,9,10,1\n"  # 2021-05-19 in seconds
    path = write(tmp_path, HEADER + body)
    with pytest.raises(PriceFileError, match=r"p\.csv: timestamps look like seconds") as caught:
        load_prices(path)
    assert "milliseconds" in str(caught.value) and "1000" in str(caught.value)


def test_load_funding_when_timestamps_look_like_seconds_then_error(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,funding_rate\n1621382400,0.0001\n", "f.csv")
    with pytest.raises(PriceFileError, match=r"f\.csv: timestamps look like seconds"):
        load_funding(path)


def test_load_prices_when_path_is_a_directory_then_error_says_so(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match=f"{tmp_path}: is a directory"):
        load_prices(tmp_path)
    with pytest.raises(PriceFileError, match=f"{tmp_path}: is a directory"):
        load_funding(tmp_path)
