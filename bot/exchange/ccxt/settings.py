"""How to reach one account on a real venue through ccxt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

from bot.domain.models import MarginMode

Environment = Literal["live", "testnet", "demo"]
CollateralSource = Literal["spot", "funding"]


@dataclass(frozen=True, slots=True)
class CcxtSettings:
    """One account: venue, environment, credentials and what to watch.

    `credentials` maps the names the venue's profile declares (`api_key`, `secret`,
    `wallet_address`, ...) to their values; they never appear in `repr` (and so never in
    a log line or a traceback's locals).
    `api_base_url` replaces the scheme and host of every ccxt API URL: a proxy, or a
    loopback fake in tests. `symbols` empty means every open position in `settle` is acted
    on; every position is read either way (a cross account's legs share its collateral).
    `max_mark_move` is the largest fraction a mark may move between two snapshots before
    the adapter reads it again to confirm it.
    """

    account: str
    exchange_id: str
    environment: Environment
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    settle: str = "USDT"
    margin_mode: MarginMode = MarginMode.CROSS
    collateral_source: CollateralSource = "spot"
    api_base_url: str | None = None
    hedged: bool = False
    symbols: tuple[str, ...] = ()
    max_mark_move: Decimal = Decimal("0.3")

    def __post_init__(self) -> None:
        if not Decimal(0) < self.max_mark_move <= Decimal(1):
            raise ValueError(f"max_mark_move must be in (0, 1], got {self.max_mark_move}")
        if self.api_base_url is not None:
            parts = urlsplit(self.api_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"api_base_url must be an http(s) URL, got {self.api_base_url!r}")

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential values, for scrubbing them out of messages."""
        return tuple(value for value in self.credentials.values() if value)
