"""The Grafana dashboard (deploy/grafana/levbot-dashboard.json) queries only metrics the
daemon exports, through the `${DS_PROMETHEUS}` datasource an import asks for."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.app.metrics import LevbotMetrics
from bot.domain.actions import Reason, Rule, Transfer
from bot.domain.outcomes import ActionOutcome
from bot.domain.vocabulary import AlertLevel, CycleStatus

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "levbot-dashboard.json"
METRIC = re.compile(r"\blevbot_[a-z_]+")


def exported_names() -> set[str]:
    """Every sample name the registry exports once each hook has fired."""
    metrics = LevbotMetrics()
    metrics.request("binanceusdm", "balance", 0.1, "RequestTimeout")
    metrics.cycle_ended("paper", CycleStatus.OK)
    metrics.alert_queued(AlertLevel.ACTION)
    metrics.sent(1)
    transfer = Transfer(
        amount=Decimal(1), currency="USDT", into_derivatives=True,
        reason=Reason(Rule.DELEVER, "account", None, None),
    )  # fmt: skip
    metrics.action_ended("paper", ActionOutcome(transfer, "lb1", None))
    for gauge in (metrics.leverage, metrics.target, metrics.band_min, metrics.band_max,
                  metrics.margin_ratio, metrics.liquidation_distance, metrics.equity,
                  metrics.last_success, metrics.healthy):  # fmt: skip
        gauge.labels("paper").set(1)
    metrics.state.labels("paper", "active").set(1)
    text = generate_latest(metrics.registry).decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return found


def test_dashboard_when_loaded_then_every_expr_names_an_exported_metric() -> None:
    exported = exported_names()
    seen: set[str] = set()
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            seen |= names
    # The panels the operator needs are there.
    assert {
        "levbot_leverage", "levbot_leverage_band_max", "levbot_margin_ratio", "levbot_equity",
        "levbot_cycles_total", "levbot_actions_total",
        "levbot_exchange_request_seconds_bucket", "levbot_exchange_errors_total",
    } <= seen  # fmt: skip


def test_dashboard_when_imported_then_every_query_uses_the_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in panels():
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_dashboard_when_quantiles_asked_then_p50_and_p95_of_the_latency_histogram() -> None:
    exprs = [t["expr"] for p in panels() for t in p["targets"] if "histogram_quantile" in t["expr"]]

    assert any(e.startswith("histogram_quantile(0.5,") for e in exprs)
    assert any(e.startswith("histogram_quantile(0.95,") for e in exprs)
