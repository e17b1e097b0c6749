"""Exchange request metrics: the real ccxt adapter, talking real HTTP to the loopback
venue, tells `LevbotMetrics` about every request (count, latency, error class)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.app.metrics import LevbotMetrics
from bot.exchange.ccxt.adapter import CcxtExchange
from bot.exchange.ccxt.profiles import profile_for
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import FAST_RETRY, quicken, serve, settings_for

VENUE = "binanceusdm"


@pytest.fixture
async def venue() -> AsyncIterator[LoopbackVenue]:
    server = LoopbackVenue()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def observed_adapter(venue: LoopbackVenue, metrics: LevbotMetrics) -> CcxtExchange:
    settings = settings_for(VENUE, venue)
    profile = profile_for(VENUE)
    exchange = quicken(profile.build(settings))
    source = profile.build_source(settings)
    if source is not None:
        quicken(source)
    return CcxtExchange(
        settings, profile, exchange=exchange, source_exchange=source, retry=FAST_RETRY,
        observer=metrics,
    )  # fmt: skip


def scraped(metrics: LevbotMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_request_metrics_when_a_snapshot_is_read_then_each_read_is_counted_and_timed(
    venue: LoopbackVenue,
) -> None:
    serve(venue, VENUE)
    metrics = LevbotMetrics()
    async with observed_adapter(venue, metrics) as exchange:
        await exchange.fetch_snapshot()

    found = scraped(metrics)
    for kind in ("balance", "positions", "source wallet"):
        labels = frozenset({("venue", VENUE), ("kind", kind)})
        assert found[("levbot_exchange_requests_total", labels)] == 1, kind
        assert found[("levbot_exchange_request_seconds_count", labels)] == 1, kind
        assert 0 < found[("levbot_exchange_request_seconds_sum", labels)] < 10, kind
    assert not [key for key in found if key[0] == "levbot_exchange_errors_total"]


async def test_request_metrics_when_a_read_fails_then_the_error_class_is_counted(
    venue: LoopbackVenue,
) -> None:
    serve(venue, VENUE)
    venue.reply_once("GET", "/fapi/v3/positionRisk", {"code": -1001, "msg": "busy"}, status=503)
    metrics = LevbotMetrics()
    async with observed_adapter(venue, metrics) as exchange:
        await exchange.fetch_snapshot()  # the retry reads it again

    found = scraped(metrics)
    errors = {
        dict(labels)["error"]: value
        for (name, labels), value in found.items()
        if name == "levbot_exchange_errors_total" and ("kind", "positions") in labels
    }
    assert list(errors.values()) == [1], errors
    positions = frozenset({("venue", VENUE), ("kind", "positions")})
    assert found[("levbot_exchange_requests_total", positions)] == 2
