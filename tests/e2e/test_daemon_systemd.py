"""The real `levbot run` process under a fake systemd: the notify socket it is given hears
READY=1 once the scheduler runs, WATCHDOG=1 every WATCHDOG_USEC/2, and STOPPING=1 when a
SIGTERM starts the shutdown (deploy/levbot.service: Type=notify, WatchdogSec)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_daemon_process import STOP_TIMEOUT, PaperSetup, _env, write_config, write_feed

pytestmark = pytest.mark.e2e


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    # A unix socket path must fit in 108 bytes; tmp_path named after a long test may not.
    directory = tmp_path if len(str(tmp_path)) < 90 else Path(tempfile.mkdtemp(prefix="sd"))
    path = directory / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        yield sock, path
    path.unlink(missing_ok=True)


async def _messages(sock: socket.socket, until: str, within: float) -> list[str]:
    """Datagrams received, each one string, until one contains `until`."""
    loop = asyncio.get_running_loop()
    received: list[str] = []
    async with asyncio.timeout(within):
        while not received or until not in received[-1]:
            received.append((await loop.sock_recv(sock, 4096)).decode())
    return received


async def test_levbot_run_when_under_systemd_then_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, Path]
) -> None:
    sock, path = notify_socket
    feed = tmp_path / "btc_crash.csv"
    write_feed(feed)
    setup = PaperSetup(tmp_path, tmp_path / "levbot.toml", tmp_path / "data" / "j.sqlite", feed)
    write_config(setup.config, setup.database, feed, interval=1)
    env = {**_env(), "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    with (tmp_path / "daemon.log").open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(setup.config),
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=output, stderr=output,
        )  # fmt: skip
    try:
        ready = await _messages(sock, "READY=1", within=15)
        # Every 1 s (half of 2 s): two of them within a few seconds.
        fed = await _messages(sock, "WATCHDOG=1", within=3)
        fed += await _messages(sock, "WATCHDOG=1", within=3)
        process.send_signal(signal.SIGTERM)
        stopping = await _messages(sock, "STOPPING=1", within=STOP_TIMEOUT)
        code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    log = (tmp_path / "daemon.log").read_text(errors="replace")
    assert code == 0, log
    assert ready[-1].splitlines() == ["READY=1", "STATUS=running: paper"], log
    # Nothing but the watchdog between READY and STOPPING; it is fed before the first cycle ends.
    assert [m for m in fed if m != "WATCHDOG=1"] == []
    assert [m for m in stopping[:-1] if m != "WATCHDOG=1"] == []
    assert stopping[-1].splitlines()[0] == "STOPPING=1"
    assert sum(m == "WATCHDOG=1" for m in fed) >= 2
