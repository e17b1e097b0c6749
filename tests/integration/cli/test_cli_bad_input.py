"""`levbot check` on bad config input: exit 2 with one line naming the field, never a
traceback (issue 9 §5: feed files, deep nesting, absurd numbers, a missing DB driver)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.entrypoints.cli import app

PAPER = Path(__file__).parents[3] / "config" / "paper.toml"
DATABASE = 'url = "sqlite:///data/levbot.sqlite"'


def paper(tmp_path: Path, old: str = DATABASE, new: str = DATABASE) -> Path:
    text = PAPER.read_text()
    assert text.count(old) == 1, old
    text = text.replace(old, new).replace(DATABASE, f'url = "sqlite:///{tmp_path}/db.sqlite"')
    path = tmp_path / "levbot.toml"
    path.write_text(text)
    return path


def check(path: Path) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["check", "--config", str(path)])
    return result.exit_code, result.output, result.exception


def problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  ")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00\x01\xff\xfe\x89PNG\r\n\x1a\n\x00", "not a readable text file"),
        (b"", "empty file"),
        (b"timestamp,open,high,low,close,volume\n1621418400000,1,1,1,1,1\n",
         "needs at least 2 candles"),
    ],
    ids=["binary", "empty", "one-bar"],
)  # fmt: skip
def test_check_when_feed_file_is_unusable_then_exit_2_one_line(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / "feed.csv").write_bytes(content)
    path = paper(tmp_path, 'feed = "builtin"', 'feed = "feed.csv"')

    code, output, exception = check(path)

    assert code == 2, output
    assert isinstance(exception, SystemExit)
    [line] = problem_lines(output)
    assert line.startswith("accounts[0].sim.feed: ") and reason in line
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("interval_seconds = 5 ", "interval_seconds = 1e12 ", "accounts[0].interval_seconds"),
        ("equity = 10000", "equity = 1e30", "accounts[0].sim.equity"),
        ("cooldown_seconds = 10", "cooldown_seconds = inf", "accounts[0].policy.cooldown_seconds"),
        ("cooldown_seconds = 10", "cooldown_seconds = nan", "accounts[0].policy.cooldown_seconds"),
        ("[database]", "snapshot_retention_days = 1e6\n[database]", "snapshot_retention_days"),
        ("[database]", "deep = " + "[" * 600 + "]" * 600 + "\n[database]", "(top level)"),
        ("[database]", "deep = " + "[" * 50 + "]" * 50 + "\n[database]", "deep"),
        (DATABASE, 'url = "mysql+mysqldb://levbot:db-pass@db/levbot"', "database.url"),
        # psycopg, not asyncpg: the dev install has asyncpg (the journal tests use it).
        (DATABASE, 'url = "postgresql+psycopg://levbot:db-pass@db/levbot"', "database.url"),
    ],
    ids=["interval", "equity", "inf", "nan", "retention", "deep-500", "deep-50",
         "mysql-driver", "postgres-driver"],
)  # fmt: skip
def test_check_when_config_value_is_absurd_then_exit_2_one_line_naming_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    code, output, exception = check(paper(tmp_path, old, new))

    assert code == 2, output
    assert isinstance(exception, SystemExit)
    [line] = problem_lines(output)
    assert line.startswith(field), line
    assert "Traceback" not in output
    # A database password stays hidden even in the problem line.
    assert "db-pass" not in output
