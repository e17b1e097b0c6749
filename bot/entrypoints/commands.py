"""The daemon-side `levbot` commands: run, check, plan, status, history, health."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

import typer
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from bot.app.backstops import BackstopPreview
from bot.app.config import AccountConfig, ConfigError, LevbotConfig, load_config
from bot.app.config.loading import SecretScope
from bot.app.control import (
    AccountStatus,
    account_statuses,
    backstop_notes,
    backstop_off_reason,
    change_lines,
    health,
    ladder_lines,
    recent_actions,
    resting_line,
)
from bot.app.service import AccountService
from bot.clock import utc_now
from bot.domain.actions import describe_action
from bot.domain.stops import Stop
from bot.domain.summary import account_metrics
from bot.domain.vocabulary import SUCCESSFUL_CYCLES
from bot.entrypoints.bootstrap import build_exchange, build_runtime, shared_markets
from bot.entrypoints.daemon import Daemon
from bot.exchange.port import Exchange, ExchangeError
from bot.redaction import Redactor, guard_handlers
from bot.store.engine import database_problem
from bot.store.journal import Journal, NoJournal
from bot.telegram.probe import probe

T = TypeVar("T")
ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The TOML config file.", show_default=False)
]
out = Console()
err = Console(stderr=True)
logger = logging.getLogger(__name__)
# Plain logs (no live table): a line every 5 minutes, so quiet is not mistaken for a hang.
HEARTBEAT_SECONDS = 300.0
# What a command that only reads the journal does not use.
JOURNAL_ONLY: tuple[SecretScope, ...] = ("telegram", "credentials")
# The live table asks the journal which backstops rest this often (not every refresh).
BACKSTOP_COUNT_SECONDS = 5.0


def _load(path: Path, unused_secrets: tuple[SecretScope, ...] = ()) -> LevbotConfig:
    """The config, or exit 2 with one line per problem (a missing database driver is one).

    From here on every log line is scrubbed of the config's secrets (`_guard_logs`).
    """
    if not path.exists():
        # The first thing a new user meets (the Docker image's CMD reads a file they make).
        typer.echo(f"error: {_missing_config(path)}", err=True)
        raise typer.Exit(2)
    try:
        settings = load_config(path, unused_secrets=unused_secrets)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    problem = database_problem(settings.database.url)
    if problem is not None:
        line = f"database.url: {problem} (got {settings.database.display_url})"
        typer.echo(f"error: {ConfigError(path, [line])}", err=True)
        raise typer.Exit(2)
    _guard_logs(settings)
    return settings


def _missing_config(path: Path) -> str:
    """What to create, in one line: in the image the file is made on the host and mounted."""
    if path.parts[:2] == ("/", "config"):
        return (
            f"no config at {path} (file not found): copy config/paper.toml there "
            f"(cp config/paper.toml config/{path.name}) and mount ./config at /config"
        )
    return f"no config at {path} (file not found): copy an example (cp config/paper.toml {path})"


def _guard_logs(settings: LevbotConfig) -> Redactor:
    """Scrub every secret of the config, in every form, from every record reaching the
    root handlers: ours, ccxt's and python-telegram-bot's alike."""
    redactor = Redactor(settings.secrets())
    guard_handlers(logging.getLogger().handlers, redactor)
    return redactor


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            # Already formatted (and scrubbed) by the RedactingFilter.
            line["exception"] = record.exc_text
        return json.dumps(line)


def _configure_logging(
    level: str, as_json: bool, live: bool = False, redactor: Redactor | None = None
) -> None:
    handler: logging.Handler
    if live:
        # Log lines print above the live table instead of tearing through it.
        handler = RichHandler(console=out, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        if as_json:
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
    if redactor is not None:
        guard_handlers([handler], redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless asked for.
    for noisy in ("alembic", "apscheduler", "aiosqlite", "ccxt", "httpx", "telegram"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def run(
    config: ConfigOption,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log JSON lines.")] = False,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (a live status table on a terminal)."""
    settings = _load(config)
    live = sys.stdout.isatty() and not (log_json or settings.log.json_format)
    _configure_logging(
        settings.log.level, log_json or settings.log.json_format, live,
        Redactor(settings.secrets()),
    )  # fmt: skip
    daemon = Daemon(settings)
    try:
        code = asyncio.run(_run_daemon(daemon, live))
    except PermissionError as error:
        # Mostly a host directory mounted at /data that the image's user does not own.
        typer.echo(
            f"error: cannot write {error.filename}: {error.strerror} (the data directory must "
            f'belong to the user levbot runs as; Docker: --user "$(id -u):$(id -g)")',
            err=True,
        )
        raise typer.Exit(2) from None
    raise typer.Exit(code)


async def _run_daemon(
    daemon: Daemon,
    live: bool,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    backstop_seconds: float = BACKSTOP_COUNT_SECONDS,
) -> int:
    if not live:
        beat = asyncio.create_task(_heartbeat(daemon, heartbeat_seconds))
        try:
            return await daemon.run()
        finally:
            beat.cancel()
    with Live(Table(), console=out, refresh_per_second=2, transient=False) as view:

        async def refresh() -> None:
            counts: dict[str, int] = {}
            asked: float | None = None
            loop = asyncio.get_running_loop()
            while not daemon.stop.is_set():
                due = asked is None or loop.time() - asked >= backstop_seconds
                if daemon.journal is not None and due:
                    asked = loop.time()
                    counts = await _resting_counts(daemon.journal, daemon.services, counts)
                view.update(_live_table(daemon.services, counts))
                await asyncio.sleep(min(1.0, backstop_seconds))

        task = asyncio.create_task(refresh())
        try:
            return await daemon.run()
        finally:
            task.cancel()


async def _heartbeat(daemon: Daemon, period: float) -> None:
    counts: dict[str, int] = {}
    while not daemon.stop.is_set():
        await asyncio.sleep(period)
        if not logger.isEnabledFor(logging.INFO):
            continue  # nobody reads the line: no query per account for it (10,000 of them)
        if daemon.journal is not None:
            counts = await _resting_counts(daemon.journal, daemon.services, counts)
        logger.info("%s", _heartbeat_line(daemon.services, counts))


def _heartbeat_line(
    services: list[AccountService], backstops: Mapping[str, int] | None = None
) -> str:
    """`levbot alive: 2 account(s), last cycles 1 ok, 1 failed, 0 not yet; a active 3.00x
    ok 12:00:05 backstops 3, ...`: the plain-log twin of the live table."""
    counts = backstops or {}
    reports = [service.last_report for service in services]
    ok = sum(1 for r in reports if r is not None and r.status in SUCCESSFUL_CYCLES)
    waiting = sum(1 for r in reports if r is None)
    parts = []
    for service, report in zip(services, reports, strict=True):
        state = "…" if service.state is None else service.state.value
        if report is None:
            parts.append(f"{service.name} {state} starting")
            continue
        metrics = report.after or report.before
        lev = None if metrics is None else metrics.leverage
        leverage = "n/a" if lev is None else f"{lev:.2f}x"
        parts.append(
            f"{service.name} {state} {leverage} {report.status.value} "
            f"{report.finished_at:%H:%M:%S} backstops {_backstop_cell(service, counts)}"
        )
    return (
        f"levbot alive: {len(services)} account(s), last cycles {ok} ok, "
        f"{len(services) - ok - waiting} failed, {waiting} not yet; {', '.join(parts)}"
    )


async def _resting_counts(
    journal: Journal, services: list[AccountService], last: dict[str, int]
) -> dict[str, int]:
    """Per account, how many backstops the journal believes rest; the last counts when
    the journal cannot answer (the table must not die with a busy database)."""
    try:
        return {s.name: len(await journal.resting_stops(s.name)) for s in services}
    except Exception as error:  # a display, never a reason to stop the daemon
        logger.debug("live table: backstop count unavailable: %s", error)
        return last


def _backstop_cell(service: AccountService, counts: Mapping[str, int]) -> str:
    count = counts.get(service.name)
    if not service.runtime.backstop.enabled and not count:
        return "off"
    return "…" if count is None else str(count)


def _live_table(
    services: list[AccountService], backstops: Mapping[str, int] | None = None
) -> Table:
    """`backstops`: per account, the stops the journal believes rest at the venue."""
    counts = backstops or {}
    table = Table(title=f"levbot — {utc_now():%Y-%m-%d %H:%M:%S} UTC")
    for column in ("account", "state", "equity", "leverage", "band", "margin ratio",
                   "backstops", "last cycle", "note"):  # fmt: skip
        table.add_column(column)
    for service in services:
        report = service.last_report
        target = service.runtime.targets.account
        band = f"{target.min}–{target.leverage}–{target.max}"
        stops = _backstop_cell(service, counts)
        if report is None:
            table.add_row(service.name, "…", "…", "…", band, "…", stops, "starting", "")
            continue
        metrics = report.after or report.before
        leverage = (
            "n/a" if metrics is None or metrics.leverage is None else f"{metrics.leverage:.2f}"
        )
        ratio = (
            "n/a" if metrics is None or metrics.margin_ratio is None
            else f"{metrics.margin_ratio:.3f}"
        )  # fmt: skip
        done = ", ".join(describe_action(o.action) for o in report.outcomes if o.ok)
        note = done or (report.error or "; ".join(report.notes[:1]))
        # The same state word as `levbot status` and /status (`trading_state`).
        state = "…" if service.state is None else service.state.value
        equity = "n/a" if metrics is None else f"{metrics.equity:.2f}"
        table.add_row(
            service.name, state, equity, leverage, band, ratio, stops,
            f"{report.status.value} {report.finished_at:%H:%M:%S}", note[:80],
        )  # fmt: skip
    return table


def check(
    config: ConfigOption,
    send_test: Annotated[
        bool, typer.Option("--send-test", help="Send a test message to every allowed chat.")
    ] = False,
) -> None:
    """Validate the config; with credentials, test connectivity and read the account;
    ask Telegram which bot the token belongs to."""
    settings = _load(config)
    typer.echo(f"config OK: {len(settings.accounts)} account(s)")
    scrub = Redactor(settings.secrets())
    failures = asyncio.run(_check_accounts(settings, scrub))
    failures += asyncio.run(_check_telegram(settings, scrub, send_test))
    raise typer.Exit(1 if failures else 0)


async def _check_telegram(settings: LevbotConfig, scrub: Redactor, send_test: bool) -> int:
    """getMe with the token (a dead one fails the check); with `send_test`, one message
    to every allowed chat, each reported."""
    if settings.telegram is None:
        return 0
    found = await probe(settings.telegram, send_test=send_test)
    if found.error is not None:
        typer.echo(scrub(f"  telegram: FAILED {found.error}"))
        return 1
    typer.echo(f"  telegram: OK @{found.username} ({found.bot_id})")
    for chat in found.chats:
        verdict = "sent" if chat.error is None else f"FAILED {chat.error}"
        typer.echo(scrub(f"  telegram: test message to chat {chat.chat_id}: {verdict}"))
    return sum(1 for chat in found.chats if chat.error is not None)


@runtime_checkable
class _KeyInspector(Protocol):
    """An exchange that can tell what its API key may do (the ccxt adapter)."""

    async def key_warnings(self) -> list[str]: ...


async def _check_accounts(settings: LevbotConfig, scrub: Redactor) -> int:
    try:
        journal, _ = await _look_journal(settings)
    except Exception as error:
        # The ladder is shown all the same, as for a first run (the overrides and the
        # stops levbot placed live in the journal).
        typer.echo(scrub(f"  journal: cannot open ({type(error).__name__}: {error})"))
        journal = await Journal.open("sqlite://", secrets=settings.secrets())
    try:
        return await _check_each_account(settings, scrub, journal)
    finally:
        await journal.close()


async def _check_each_account(settings: LevbotConfig, scrub: Redactor, journal: Journal) -> int:
    failures = 0
    markets = shared_markets(settings)  # one markets load per venue, as the daemon does
    for account in settings.accounts:
        label = f"{account.name} ({account.exchange}"
        label += f", {account.environment})" if account.environment else ")"
        try:
            exchange = build_exchange(account, settings, utc_now, read_only=True, markets=markets)
        except Exception as error:
            # A check reports, it does not crash: one line per account, secrets scrubbed.
            failures += 1
            typer.echo(scrub(f"  {label}: FAILED {type(error).__name__}: {error}"))
            continue
        try:
            snapshot = await exchange.fetch_snapshot()
            warnings = await exchange.key_warnings() if isinstance(exchange, _KeyInspector) else []
            ladder, ladder_failed = await _check_backstops(account, exchange, journal)
        except Exception as error:
            failures += 1
            typer.echo(scrub(f"  {label}: FAILED {type(error).__name__}: {error}"))
            continue
        finally:
            await exchange.close()
        failures += ladder_failed
        metrics = account_metrics(snapshot)
        hedged = any(p.hedged for p in snapshot.positions)
        leverage = "n/a" if metrics.leverage is None else f"{metrics.leverage:.2f}"
        typer.echo(
            f"  {label}: OK — equity {metrics.equity:.2f} {snapshot.settle}, "
            f"{len(snapshot.positions)} position(s), leverage {leverage}, "
            f"position mode {'hedge' if hedged else 'one-way'}, "
            f"margin adjust {'yes' if snapshot.can_adjust_margin else 'no'}"
        )
        for line in ladder:
            typer.echo(scrub(f"    {line}"))
        for warning in warnings:
            typer.echo(scrub(f"  {label}: WARNING {warning}"))
    return failures


async def _check_backstops(
    account: AccountConfig, exchange: Exchange, journal: Journal
) -> tuple[list[str], int]:
    """The ladder the account would rest now (level, side, amount, symbol, trigger), or
    why none; a venue that cannot show its stops fails the check (no protection)."""
    if not account.to_backstop().enabled:
        return [backstop_off_reason(account)], 0
    service = AccountService(build_runtime(account, exchange), journal, utc_now)
    try:
        preview = await service.backstop_preview()
    except Exception as error:
        return [f"backstop: FAILED {type(error).__name__}: {error}"], 1
    changes = preview.changes
    lines = ladder_lines(preview)
    if preview.resting or changes.place or changes.cancel:
        lines.append(
            f"backstop: {len(preview.resting)} resting at the venue; next cycle places "
            f"{len(changes.place)}, cancels {len(changes.cancel)}, keeps {len(changes.keep)}"
        )
    return lines, 0


def plan(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
) -> None:
    """One dry cycle: fetch, plan and print what the bot would do (sends nothing)."""
    # Plan reads the venues with their keys, and never talks to Telegram.
    settings = _load(config, unused_secrets=("telegram",))
    _require_account(settings, account)
    results = asyncio.run(_plan_accounts(settings, account))
    # An error quoted by a venue may carry a credential in any form: scrubbed at print.
    scrub = Redactor(settings.secrets())
    if as_json:
        shown = [{k: v for k, v in r.items() if k != _BACKSTOP_LINES} for r in results]
        typer.echo(scrub(json.dumps(shown, indent=2, default=_json_default)))
        return
    for result in results:
        typer.echo(scrub(f"{result['account']}: {result['summary']}"))
        for line in result["actions"]:
            typer.echo(scrub(f"  - {line['what']}: {line['why']}"))
        for note in result["notes"]:
            typer.echo(scrub(f"  note: {note}"))
        for line in result.get(_BACKSTOP_LINES, ()):
            typer.echo(scrub(f"  {line}"))


def _require_account(settings: LevbotConfig, account: str | None) -> None:
    """Exit 2 when `--account` names no account of the config: one message everywhere."""
    names = [a.name for a in settings.accounts]
    if account is not None and account not in names:
        typer.echo(f"error: --account {account}: not in the config ({', '.join(names)})", err=True)
        raise typer.Exit(2)


# The plain-text backstop lines of a plan result (not part of `--json`).
_BACKSTOP_LINES = "_backstop_lines"


async def _look_journal(settings: LevbotConfig) -> tuple[Journal, list[str]]:
    """The journal for a one-off look beside the daemon, or, before the first run, an
    empty one in memory (no file is made) and a note saying so."""
    try:
        journal = await Journal.open(
            settings.database.url, secrets=settings.secrets(), create=False
        )
    except NoJournal as missing:
        journal = await Journal.open("sqlite://", secrets=settings.secrets())
        return journal, [f"{missing} yet: planned as a first run"]
    return journal, []


async def _plan_accounts(settings: LevbotConfig, only: str | None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    journal, first_run = await _look_journal(settings)
    markets = shared_markets(settings)  # one markets load per venue, as the daemon does
    try:
        for account in settings.accounts:
            if only is not None and account.name != only:
                continue
            try:
                exchange = build_exchange(
                    account, settings, utc_now, read_only=True, markets=markets
                )
            except Exception as error:
                results.append({"account": account.name, "actions": [], "notes": [],
                                "summary": f"FAILED: {type(error).__name__}: {error}"})  # fmt: skip
                continue
            service = AccountService(build_runtime(account, exchange), journal, utc_now)
            try:
                snapshot, proposal = await service.preview()
                backstops, backstop_lines = await _plan_backstops(account, service)
            except ExchangeError as error:
                results.append({"account": account.name, "summary": f"FAILED: {error}",
                                "actions": [], "notes": []})  # fmt: skip
                continue
            finally:
                await exchange.close()
            metrics = account_metrics(snapshot)
            leverage = "n/a" if metrics.leverage is None else f"{metrics.leverage:.2f}"
            results.append({
                "account": account.name,
                "leverage": metrics.leverage,
                "margin_ratio": metrics.margin_ratio,
                "summary": (f"leverage {leverage}, "
                            f"{len(proposal.actions) or 'no'} action(s) planned"),
                "actions": [{"kind": a.kind.value, "what": describe_action(a),
                             "why": a.reason.describe(), "amount": a.amount}
                            for a in proposal.actions],
                "decisions": [asdict(d) for d in proposal.decisions],
                "notes": [*first_run, *proposal.notes,
                          *(n for d in proposal.decisions for n in d.notes)],
                "backstops": backstops,
                _BACKSTOP_LINES: backstop_lines,
            })  # fmt: skip
    finally:
        await journal.close()
    return results


async def _plan_backstops(
    account: AccountConfig, service: AccountService
) -> tuple[dict[str, Any], list[str]]:
    """The `backstops` object of `plan --json` and its text lines: the ladder wanted now,
    levbot's stops resting at the venue, and what the next cycle would place, cancel and
    keep. A venue error here is reported in the object, not as the account's failure."""
    if not account.to_backstop().enabled:
        reason = backstop_off_reason(account)
        return _backstops_json(False, None, (reason,)), [reason]
    try:
        preview = await service.backstop_preview()
    except ExchangeError as error:
        line = f"backstop: FAILED {type(error).__name__}: {error}"
        return {**_backstops_json(True, None, ()), "error": str(error)}, [line]
    lines = [f"backstop: {line}" for line in change_lines(preview)] + backstop_notes(preview)
    return _backstops_json(True, preview, preview.notes), lines


def _backstops_json(
    enabled: bool, preview: BackstopPreview | None, notes: tuple[str, ...]
) -> dict[str, Any]:
    def stop(item: Stop) -> dict[str, Any]:
        return {**asdict(item), "side": item.order_side.value}

    changes = None if preview is None else preview.changes
    return {
        "enabled": enabled,
        "desired": [] if preview is None else [stop(s) for s in preview.desired],
        "resting": [] if preview is None else [asdict(o) for o in preview.resting],
        "changes": {
            "place": [] if changes is None else [stop(s) for s in changes.place],
            "cancel": [] if changes is None else [asdict(o) for o in changes.cancel],
            "keep": [] if changes is None else [asdict(o) for o in changes.keep],
        },
        "notes": list(notes),
        "error": None,
    }


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


def status(config: ConfigOption) -> None:
    """Per account, from the journal: equity, leverage against the band, state, last cycle."""
    settings = _load(config, JOURNAL_ONLY)
    rows = _query(settings, lambda j: account_statuses(j, settings))
    table = Table(title="levbot status")
    for column in ("account", "state", "equity", "notional", "leverage", "band",
                   "margin ratio", "liq. distance", "backstops", "last cycle"):  # fmt: skip
        table.add_column(column)
    for row in rows:
        snap = row.snapshot
        table.add_row(
            row.account,
            row.state,
            "—" if snap is None else f"{snap.equity:.2f} {snap.settle}",
            "—" if snap is None else f"{snap.notional:.2f}",
            "—" if snap is None or snap.leverage is None else f"{snap.leverage:.2f}",
            f"{row.band[0]}–{row.target}–{row.band[1]}",
            "—" if snap is None or snap.margin_ratio is None else f"{snap.margin_ratio:.3f}",
            "—" if row.liquidation_distance is None else f"{row.liquidation_distance:.1%}",
            _backstop_count(row),
            "never" if row.last_cycle_at is None
            else f"{row.last_cycle_at:%Y-%m-%d %H:%M:%S} ({row.last_cycle_status})",
        )  # fmt: skip
    console = out if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    resting = [(row.account, record) for row in rows for record in row.backstops]
    if resting:
        # Below the table: a ladder is a few lines per account, too tall for a cell.
        typer.echo("backstops resting at the venue (as the journal last saw them):")
    for name, record in resting:
        typer.echo(
            f"  {name}: {resting_line(record)} (placed {record.placed_at:%Y-%m-%d %H:%M:%S})"
        )


def _backstop_count(row: AccountStatus) -> str:
    if not row.backstop_enabled and not row.backstops:
        return "off"
    return str(len(row.backstops))


def history(
    config: ConfigOption,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many actions.")] = 20,
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
) -> None:
    """The last actions, newest first, with their reasons and results."""
    settings = _load(config, JOURNAL_ONLY)
    _require_account(settings, account)
    actions = _query(settings, lambda j: recent_actions(j, account, limit))
    if not actions:
        typer.echo("no actions journaled yet")
        return
    for action in actions:
        if action.dry_run:
            result, tag = "not sent", " [dry run]"
        else:
            result = action.status.value + (f" ({action.error})" if action.error else "")
            tag = ""
        typer.echo(
            f"{action.created_at:%Y-%m-%d %H:%M:%S} {action.account} {action.kind.value} "
            f"{action.amount} {action.symbol}{tag}: {result} — {action.reason}"
        )


def health_command(config: ConfigOption) -> None:
    """Exit 1 when an account's last successful cycle is older than 3 intervals."""
    settings = _load(config, JOURNAL_ONLY)
    report = _query(settings, lambda j: health(j, settings, utc_now()))
    for item in report:
        when = "never" if item.last_success is None else item.last_success.isoformat()
        verdict = "ok" if item.healthy else "STALE"
        typer.echo(f"{item.account}: {verdict} (last successful cycle {when}, limit {item.limit})")
    raise typer.Exit(0 if all(item.healthy for item in report) else 1)


def _query(settings: LevbotConfig, query: Callable[[Journal], Awaitable[T]]) -> T:
    """`query` on the existing journal, or exit 1 with one line: a reader never makes an
    empty journal (it would only ever say "never")."""
    try:
        return asyncio.run(_with_journal(settings, query))
    except NoJournal as missing:
        typer.echo(f"error: {missing}", err=True)
        raise typer.Exit(1) from None


async def _with_journal(settings: LevbotConfig, query: Callable[[Journal], Awaitable[T]]) -> T:
    journal = await Journal.open(settings.database.url, secrets=settings.secrets(), create=False)
    try:
        return await query(journal)
    finally:
        await journal.close()
