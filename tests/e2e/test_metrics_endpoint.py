"""The real `levbot run` process with `[metrics] listen`: /metrics scraped once over HTTP
after its first cycle, /healthz answers ok, and SIGTERM still exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def cycles_of(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "levbot_cycles_total" and sample.labels.get("account") == "paper"
    )


async def test_levbot_run_when_metrics_listen_is_set_then_metrics_are_scraped(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "levbot.toml"
    config.write_text(
        f"""\
[database]
url = "sqlite:///{tmp_path / "data" / "levbot.sqlite"}"

[metrics]
listen = "127.0.0.1:{port}"

[[accounts]]
name = "paper"
exchange = "sim"
interval_seconds = 60

[accounts.target]
leverage = 3
min = 2.5
max = 3.5

[accounts.sim]
feed = "builtin"
"""
    )
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    log = tmp_path / "daemon.log"
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(config),
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": path}, stdin=asyncio.subprocess.DEVNULL,
            stdout=output, stderr=output,
        )  # fmt: skip
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        text = ""
        while True:
            assert process.returncode is None, log.read_text()
            try:
                status, text = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
            except OSError:
                status = 0  # not listening yet
            # Under load the first cycle may not be the one that journals a snapshot: wait
            # for a cycle and the account's leverage gauge, both from the real process.
            if (
                status == 200
                and cycles_of(text) >= 1
                and 'levbot_leverage{account="paper"}' in text
            ):
                break
            assert loop.time() < deadline, f"no cycle on /metrics:\n{log.read_text()[-3000:]}"
            await asyncio.sleep(0.1)

        assert 'levbot_leverage{account="paper"}' in text
        assert await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), STOP_TIMEOUT) == 0, log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
