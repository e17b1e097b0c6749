"""The deploy files, checked by reading them (no Docker engine or systemd in the suite):
docker-compose.yml parsed with PyYAML, the Dockerfile's instructions, the systemd unit
parsed as INI. Their stop timeouts must outlast the daemon's own shutdown."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import yaml

from bot.entrypoints.daemon import DRAIN_TIMEOUT

REPO = Path(__file__).resolve().parents[3]
CONFIG = "/config/levbot.toml"
# The daemon's shutdown: drain a running cycle, flush alerts (3 s), stop Telegram (5 s).
SHUTDOWN_SECONDS = DRAIN_TIMEOUT + 3 + 5


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if duration.endswith(suffix):
            return float(duration.removesuffix(suffix)) * units[suffix]
    return float(duration)


def _dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [" ".join(part.split()) for part in "\n".join(lines).replace("\\\n", " ").splitlines()]


def test_compose_when_parsed_then_levbot_has_volume_env_health_restart_and_grace() -> None:
    levbot = _compose()["services"]["levbot"]

    assert levbot["build"]["context"] == "."
    assert "levbot-data:/data" in levbot["volumes"]
    assert "./config:/config:ro" in levbot["volumes"]
    assert levbot["env_file"] == ".env"
    assert levbot["healthcheck"]["test"] == ["CMD", "levbot", "health", "--config", CONFIG]
    assert levbot["restart"] == "unless-stopped"
    assert levbot["stop_signal"] == "SIGTERM"
    assert _seconds(levbot["stop_grace_period"]) > SHUTDOWN_SECONDS
    assert levbot["command"][:4] == ["levbot", "run", "--config", CONFIG]
    assert "levbot-data" in _compose()["volumes"]


def test_compose_when_parsed_then_postgres_is_optional_with_its_own_volume() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]

    assert postgres["profiles"] == ["postgres"]
    assert "profiles" not in compose["services"]["levbot"]
    (volume,) = postgres["volumes"]
    assert volume.split(":") == ["levbot-postgres", "/var/lib/postgresql/data"]
    assert "levbot-postgres" in compose["volumes"]
    # A required (`:?`) variable would break every compose command without the profile.
    assert [value for value in _strings(compose) if ":?" in value] == []
    # The driver the scale-out URL needs can be built into the image.
    assert "EXTRA_PACKAGES" in compose["services"]["levbot"]["build"]["args"]


def test_dockerfile_when_read_then_runs_the_mounted_config_as_a_user_and_stops_on_sigterm() -> None:
    instructions = _dockerfile()

    assert not any(line.startswith("COPY config") for line in instructions)
    assert "USER levbot" in instructions
    assert "STOPSIGNAL SIGTERM" in instructions
    assert f'CMD ["levbot", "run", "--config", "{CONFIG}", "--log-json"]' in instructions
    (health,) = [line for line in instructions if line.startswith("HEALTHCHECK")]
    assert health.endswith(f'CMD ["levbot", "health", "--config", "{CONFIG}"]')
    assert 'VOLUME ["/data"]' in instructions
    # The documented stop timeout outlasts the shutdown.
    assert "--stop-timeout 30" in (REPO / "Dockerfile").read_text()
    assert SHUTDOWN_SECONDS < 30


def test_dockerignore_when_read_then_the_context_never_carries_secrets_or_the_journal() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()

    assert lines[lines.index("*")] == "*"  # everything out, then only what the build needs
    assert [line for line in lines if line.startswith("!")] == [
        "!pyproject.toml", "!README.md", "!LICENSE", "!bot/"
    ]  # fmt: skip


def test_systemd_unit_when_parsed_then_notify_with_watchdog_as_a_user_restarting_on_failure() -> (
    None
):
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "deploy" / "levbot.service")
    service = unit["Service"]

    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["User"] == "levbot"
    assert service["Restart"] == "on-failure"
    assert 10 <= _seconds(service["WatchdogSec"]) <= 300
    assert _seconds(service["TimeoutStopSec"]) > SHUTDOWN_SECONDS
    assert service["ExecStart"].split()[:2] == ["/opt/levbot/levbot/.venv/bin/levbot", "run"]
    assert "--config" in service["ExecStart"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
