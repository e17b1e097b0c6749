"""`levbot paper-exchange`: a loopback Binance USDⓈ-M venue that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import logging
import signal
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

from bot.clock import utc_now
from bot.domain.models import MarginMode, Side
from bot.exchange.paper_venue import (
    FaultPlan,
    FaultSpecError,
    PaperVenue,
    Signer,
    VenueBook,
    VenueOptions,
    serve,
)
from bot.exchange.paper_venue.faults import ENDPOINTS, FaultKind
from bot.exchange.sim.paper import BUILTIN_FEED, PaperSettings
from bot.exchange.sim.prices import PriceFileError

FAULTS_HELP = (
    "Faults to inject: ITEM[,ITEM...], ITEM = WHERE:[KIND=]RATE. WHERE is all, reads, "
    f"writes or an endpoint ({', '.join(ENDPOINTS)}); KIND is one of "
    f"{', '.join(k.value for k in FaultKind)} (none: any kind that fits the endpoint; "
    "'lost' = a write applied, its reply dropped or answered 502); RATE is 0 to 1. "
    "Examples: all:0.3  |  order:lost=0.1,account:truncated=0.2. Empty: no faults. "
    'POST /paper/faults {"spec": ...} changes them while running; GET /paper/record '
    "returns the record of executed orders and transfers and the faults injected."
)


def _decimal(flag: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r} is not a number", param_hint=flag) from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter(f"{text!r} must be a finite number >= 0", param_hint=flag)
    return value


def paper_exchange(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0: any free port).")],
    prices: Annotated[
        Path | None,
        typer.Option(help="Candles to replay (CSV timestamp,open,high,low,close,volume, ms)."),
    ] = None,
    faults: Annotated[str, typer.Option(help=FAULTS_HELP)] = "",
    seed: Annotated[int | None, typer.Option(help="Seed for the fault RNG (reproducible).")] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Record file (executed orders and transfers, faults); the account is kept "
            "beside it as FILE.account.json. Restarting with the same file resumes."
        ),
    ] = None,
    equity: Annotated[str, typer.Option(help="Futures wallet at the start (USDT).")] = "10000",
    reserve: Annotated[str, typer.Option(help="Spot wallet at the start (USDT).")] = "5000",
    symbol: Annotated[str, typer.Option(help="The position's market.")] = "BTC/USDT:USDT",
    side: Annotated[Side, typer.Option(help="The position's side.")] = Side.LONG,
    leverage: Annotated[str, typer.Option(help="Leverage the position opens at.")] = "4",
    bar_seconds: Annotated[
        float, typer.Option(help="Wall-clock seconds per replayed candle.")
    ] = 1.0,
    fee: Annotated[str, typer.Option(help="Taker fee rate.")] = "0.0005",
    slippage: Annotated[str, typer.Option(help="Market-order slippage rate.")] = "0.0005",
    loop: Annotated[bool, typer.Option(help="Start the replay again at its end.")] = False,
    api_key: Annotated[
        str, typer.Option(envvar="PAPER_EXCHANGE_API_KEY", help="The API key ccxt must send.")
    ] = "paper-api-key",
    secret: Annotated[
        str,
        typer.Option(envvar="PAPER_EXCHANGE_SECRET", help="The HMAC secret ccxt signs with."),
    ] = "paper-secret",  # noqa: S107 - a paper venue's well-known default
    hold_seconds: Annotated[
        float,
        typer.Option(help="How long a 'timeout' fault holds the connection before closing it."),
    ] = 12.0,
    max_latency: Annotated[
        float, typer.Option(help="Longest delay of a 'latency' fault, in seconds.")
    ] = 1.5,
) -> None:
    """Serve the Binance USDⓈ-M and spot API subset levbot uses, over a paper account.

    Point an account at it with exchange = "binanceusdm", environment = "live" and
    api_base_url = "http://127.0.0.1:PORT".
    """
    try:
        plan = FaultPlan(faults, seed)
    except FaultSpecError as error:
        raise typer.BadParameter(str(error), param_hint="--faults") from None
    settings = PaperSettings(
        account="paper-venue",
        symbol=symbol,
        side=side,
        equity=_decimal("--equity", equity),
        reserve=_decimal("--reserve", reserve),
        leverage=_decimal("--leverage", leverage),
        margin_mode=MarginMode.CROSS,
        bar_seconds=bar_seconds,
        fee=_decimal("--fee", fee),
        slippage=_decimal("--slippage", slippage),
        loop=loop,
        feed=prices or BUILTIN_FEED,
        state_file=None,
    )
    logging.getLogger("bot").setLevel(logging.INFO)
    try:
        book = VenueBook(settings, utc_now, state)
    except (PriceFileError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    venue = PaperVenue(book, plan, Signer(api_key, secret), VenueOptions(hold_seconds, max_latency))
    asyncio.run(_run(venue, port))


async def _run(venue: PaperVenue, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    typer.echo(f"paper exchange on http://127.0.0.1:{port}", err=True)
    await serve(venue, "127.0.0.1", port, stop)
