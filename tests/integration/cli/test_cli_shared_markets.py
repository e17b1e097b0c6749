"""`check` and `plan` share each venue's markets and tiers between its accounts, as the
daemon does (issue 12 §3): three Binance accounts on one venue load the market list and
the leverage brackets once per command, while each still reads its own balance and
positions. Real CLI, real ccxt over HTTP to a loopback Binance USDⓈ-M."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ccxt.async_support.base.exchange import Exchange as AsyncCcxt
from typer.testing import CliRunner

from bot.entrypoints.cli import app
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import serve

RESTRICTIONS = "/sapi/v1/account/apiRestrictions"
MARKETS = "/fapi/v1/exchangeInfo"
TIERS = "/fapi/v1/leverageBracket"
# What belongs to one account: its futures balance, its positions, its spot wallet (the
# collateral source).
OWN = ("/fapi/v3/account", "/fapi/v3/positionRisk", "/api/v3/account")
# `check` reads each key's permissions: a key as levbot wants it (no warning lines).
KEY_AS_WANTED = {
    "ipRestrict": True,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableFutures": True,
    "permitsUniversalTransfer": True,
}
ACCOUNTS = ("alpha", "beta", "gamma")
ENV = {f"KEY_{name.upper()}": f"key-{name}-0001" for name in ACCOUNTS} | {
    f"SECRET_{name.upper()}": f"secret-{name}-0002" for name in ACCOUNTS
}


@pytest.fixture(autouse=True)
def clean_root_logger() -> Iterator[None]:
    """Each CLI run adds a root handler on CliRunner's stream, closed once it returns:
    start without them, and put back what was there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    """ccxt's own request throttle and close pause, off (as `venues.quicken` does for the
    adapter tests; the CLI builds its instances itself): Binance's weights would make each
    account wait 1.5 s on a loopback that needs no pacing."""

    async def no_wait(self: AsyncCcxt, cost: object = None) -> None:
        return None

    monkeypatch.setattr(AsyncCcxt, "throttle", no_wait)
    monkeypatch.setattr(AsyncCcxt, "timeout_on_exit", 0)


@pytest.fixture
async def binance() -> AsyncIterator[LoopbackVenue]:
    """A loopback Binance USDⓈ-M on this test's loop; the CLI runs in a worker thread."""
    venue = LoopbackVenue()
    await venue.start()
    serve(venue, "binanceusdm")
    venue.reply("GET", RESTRICTIONS, KEY_AS_WANTED)
    try:
        yield venue
    finally:
        await venue.close()


def three_accounts(tmp_path: Path, venue: LoopbackVenue) -> Path:
    """Three Binance accounts on the one venue, each with its own keys (no backstop or
    stream: their stop listings and websockets are not what is counted here)."""
    accounts = "".join(
        f"""
[[accounts]]
name = "{name}"
exchange = "binanceusdm"
environment = "live"
api_key = "${{KEY_{name.upper()}}}"
secret = "${{SECRET_{name.upper()}}}"
api_base_url = "{venue.url}"
[accounts.target]
leverage = 3
min = 2
max = 4
[accounts.backstop]
enabled = false
[accounts.stream]
enabled = false
"""
        for name in ACCOUNTS
    )
    path = tmp_path / "levbot.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/levbot.sqlite"\n{accounts}')
    return path


async def invoke(*args: str) -> tuple[int, str]:
    """The CLI in a worker thread: it runs its own event loop, the venue serves on ours."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=ENV)
    return result.exit_code, result.output


def requests_by_key(venue: LoopbackVenue, path: str) -> dict[str, int]:
    """How often each account (by its API key) asked for `path`."""
    counts: dict[str, int] = {}
    for request in venue.calls(path):
        key = request.headers.get("X-MBX-APIKEY", "")
        counts[key] = counts.get(key, 0) + 1
    return counts


def assert_shared(venue: LoopbackVenue) -> None:
    """The venue's markets and tiers asked for once in all; each account's own reads once
    per account, with its own key."""
    assert not venue.unmatched, venue.unmatched
    venue_wide = {path: len(venue.calls(path)) for path in (MARKETS, TIERS)}
    assert venue_wide == {MARKETS: 1, TIERS: 1}, venue_wide
    each_once = {ENV[f"KEY_{name.upper()}"]: 1 for name in ACCOUNTS}
    for path in OWN:
        assert requests_by_key(venue, path) == each_once, path


@pytest.mark.parametrize("command", [["check"], ["plan", "--json"]], ids=["check", "plan-json"])
async def test_cli_when_three_accounts_share_a_venue_then_markets_and_tiers_loaded_once(
    tmp_path: Path, binance: LoopbackVenue, command: list[str]
) -> None:
    config = three_accounts(tmp_path, binance)

    code, output = await invoke(*command, "--config", str(config))

    assert code == 0, output
    if command[0] == "plan":
        results = json.loads(output)
        assert [result["account"] for result in results] == list(ACCOUNTS)
        assert not [r["summary"] for r in results if r["summary"].startswith("FAILED")]
    else:
        assert all(f"{name} (binanceusdm, live): OK" in output for name in ACCOUNTS), output
        assert "WARNING" not in output, output
    assert_shared(binance)
