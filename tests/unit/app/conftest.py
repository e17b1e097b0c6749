"""Config tests: write a TOML file in tmp_path and load it with a fake environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from bot.app.config import ConfigError, LevbotConfig, load_config

_PAPER_ACCOUNT = """
[[accounts]]
name = "paper"
exchange = "sim"
margin_mode = "cross"
interval_seconds = 2
[accounts.target]
leverage = 3
min = 2.5
max = 3.5
[accounts.sim]
feed = "builtin"
symbol = "BTC/USDT:USDT"
side = "long"
equity = 10000
reserve = 5000
leverage = 4
bar_seconds = 2
"""

LoadText = Callable[..., LevbotConfig]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stray .env in the real working directory must not leak into these tests.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def paper_account() -> str:
    """The sim account config/paper.toml uses."""
    return _PAPER_ACCOUNT


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def load_text(config_dir: Path) -> LoadText:
    def load(text: str, env: Mapping[str, str] | None = None) -> LevbotConfig:
        path = config_dir / "levbot.toml"
        path.write_text(text, encoding="utf-8")
        return load_config(path, env={} if env is None else env)

    return load


@pytest.fixture
def problems_of(load_text: LoadText) -> Callable[..., tuple[str, ...]]:
    def problems(text: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
        with pytest.raises(ConfigError) as caught:
            load_text(text, env)
        return caught.value.problems

    return problems
