"""Secrets never leave the process, in any form (issue 9 §5): an OKX passphrase with `"`
and `\\` leaked JSON-escaped into `check`/`plan` output, logs, `cycles.error` and the
alert outbox; the Telegram token appeared URL-encoded in python-telegram-bot's own log
line. Checked through the real CLI (real ccxt against a loopback OKX in a thread), the
real journal, and the logging the CLI sets up."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from typer.testing import CliRunner

from bot.domain.vocabulary import AlertLevel
from bot.entrypoints.cli import app
from bot.redaction import RedactingFilter, Redactor, guard_handlers, secret_forms
from bot.store.journal import Journal
from bot.store.records import CycleStatus
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply
from tests.integration.exchange.venues import serve

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PASSPHRASE = 'pa"ss\\word-0003'
TOKEN = "123456:AAH/token+value=="
SECRET = "okx-secret-0002"
ENV = {
    "OKX_KEY": "okx-key-0001",
    "OKX_SECRET": SECRET,
    "OKX_PASSWORD": PASSPHRASE,
    "TG_TOKEN": TOKEN,
}


def leaked_forms(secret: str) -> list[str]:
    """The forms the issue found, each of which must never be seen."""
    return [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(json.dumps(secret)[1:-1])[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        quote(secret),
    ]


def assert_clean(text: str) -> None:
    for secret in (PASSPHRASE, TOKEN, SECRET):
        for form in leaked_forms(secret):
            assert form not in text, f"{form!r} leaked"


# -- the redactor ------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [PASSPHRASE, TOKEN, SECRET, "ключ-секрет"])
def test_redactor_when_secret_in_any_form_then_replaced(secret: str) -> None:
    redactor = Redactor([secret])

    for form in leaked_forms(secret) + sorted(secret_forms(secret)):
        text = f"before {form} after"
        assert redactor(text) == "before *** after", form


def test_redactor_when_secret_too_short_or_empty_then_text_untouched() -> None:
    assert Redactor(["", "abc"])("abc def") == "abc def"
    assert repr(Redactor([PASSPHRASE])) == "Redactor(1 secret(s))"


# -- logs: the filter on the root handlers --------------------------------------------


def test_redacting_filter_when_third_party_logger_quotes_token_url_then_scrubbed() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    guard_handlers([handler], Redactor([TOKEN, PASSPHRASE]))
    logger = logging.getLogger("telegram.ext.Updater")  # python-telegram-bot's own
    logger.addHandler(handler)
    logger.propagate = False
    try:
        url = f"https://api.telegram.org/bot{quote(TOKEN, safe='')}/getUpdates"
        logger.error("Error while getting Updates: <html><p>%s</p></html>", url)
        try:
            raise RuntimeError(f"body: {json.dumps({'passphrase': PASSPHRASE})}")
        except RuntimeError:
            logger.exception("failed for bot%s", TOKEN)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    output = stream.getvalue()
    assert "getUpdates" in output and "RuntimeError" in output and "***" in output
    assert_clean(output)


def test_guard_handlers_when_called_twice_then_one_filter_per_handler() -> None:
    handler = logging.StreamHandler(io.StringIO())
    guard_handlers([handler], Redactor([TOKEN]))
    guard_handlers([handler], Redactor([PASSPHRASE]))

    filters = [f for f in handler.filters if isinstance(f, RedactingFilter)]
    assert len(filters) == 1
    assert filters[0].redactor.secrets == (PASSPHRASE,)


# -- the journal: cycle errors, notes and alerts -----------------------------------------


async def test_journal_when_opened_with_secrets_then_cycle_error_and_alerts_scrubbed(
    tmp_path: Path,
) -> None:
    escaped = json.dumps({"passphrase": PASSPHRASE})
    url = f"https://api.telegram.org/bot{quote(TOKEN, safe='')}/sendMessage"
    async with await Journal.open(
        f"sqlite:///{tmp_path / 'levbot.sqlite'}", clock=lambda: NOW,
        secrets=[PASSPHRASE, TOKEN],
    ) as journal:  # fmt: skip
        cycle = await journal.start_cycle("okx", NOW)
        await journal.finish_cycle(
            cycle, CycleStatus.FAILED, NOW, notes=[f"note {escaped}"], error=f"okx said {escaped}"
        )
        await journal.enqueue_alert(AlertLevel.WARNING, f"okx: {escaped} via {url}", NOW)
        [record] = await journal.history("okx")
        [alert] = await journal.due_alerts(NOW)

    assert record.error is not None and "***" in record.error
    assert_clean(record.error)
    assert_clean(" ".join(record.notes))
    assert "***" in alert.text
    assert_clean(alert.text)


# -- the CLI: check and plan against a venue that quotes the request -------------------


@pytest.fixture
def okx_venue() -> Iterator[LoopbackVenue]:
    """A loopback OKX on its own thread and loop (the CLI runs its own asyncio.run),
    whose account endpoint answers with an error quoting the request's headers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    venue = LoopbackVenue()
    asyncio.run_coroutine_threadsafe(venue.start(), loop).result(10)
    serve(venue, "okx")

    def quoting(request: RecordedRequest) -> Reply:
        # The way a proxy's or venue's error page quotes what it was sent: JSON-escaped.
        body = {"code": "50000", "msg": "rejected: " + json.dumps(request.headers), "data": []}
        return Reply(200, body)

    for path in ("/api/v5/account/balance", "/api/v5/asset/balances",
                 "/api/v5/account/positions"):  # fmt: skip
        venue.respond("GET", path, quoting)
    try:
        yield venue
    finally:
        asyncio.run_coroutine_threadsafe(venue.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def okx_config(tmp_path: Path, venue: LoopbackVenue) -> Path:
    path = tmp_path / "okx.toml"
    path.write_text(f"""
[database]
url = "sqlite:///{tmp_path}/levbot.sqlite"
[telegram]
token = "${{TG_TOKEN}}"
allowed_chat_ids = [1]
[[accounts]]
name = "okx"
exchange = "okx"
environment = "demo"
api_key = "${{OKX_KEY}}"
secret = "${{OKX_SECRET}}"
password = "${{OKX_PASSWORD}}"
api_base_url = "{venue.url}"
[accounts.target]
leverage = 3
min = 2
max = 4
""")
    return path


@pytest.mark.parametrize(
    "command", [["check"], ["plan"], ["plan", "--json"]], ids=["check", "plan", "plan-json"]
)
def test_cli_when_venue_error_quotes_the_passphrase_then_output_and_logs_scrubbed(
    tmp_path: Path,
    okx_venue: LoopbackVenue,
    command: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = okx_config(tmp_path, okx_venue)

    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(app, [*command, "--config", str(config)], env=ENV)
        # A third-party logger writing after the CLI set up its logging.
        logging.getLogger("telegram.ext.Updater").warning(
            "Network error: %s", f"https://api.telegram.org/bot{quote(TOKEN, safe='')}/getMe"
        )

    # The venue really did get the passphrase, and really did quote it back.
    [first, *_] = okx_venue.calls("/api/v5/account/balance")
    assert first.headers["OK-ACCESS-PASSPHRASE"] == PASSPHRASE
    assert "rejected" in result.output and "***" in result.output, result.output
    assert "Traceback" not in result.output
    assert_clean(result.output)
    assert caplog.records
    assert_clean("\n".join(record.getMessage() for record in caplog.records))
    assert_clean(caplog.text)
