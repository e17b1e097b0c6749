"""SystemdNotifier against real unix datagram sockets, as systemd gives them."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from bot.entrypoints.systemd_notify import SystemdNotifier


def test_notifier_when_the_socket_is_abstract_then_sends_to_the_nul_prefixed_name() -> None:
    name = f"levbot-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        notifier = SystemdNotifier({"NOTIFY_SOCKET": f"@{name}"})

        notifier.ready("running: paper")

        assert sock.recv(4096) == b"READY=1\nSTATUS=running: paper"


def test_notifier_when_the_socket_is_a_path_then_sends_each_message(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    if len(str(path)) >= 100:
        pytest.skip("tmp path too long for a unix socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})

        notifier.watchdog()
        notifier.stopping()

        assert [sock.recv(4096), sock.recv(4096)] == [b"WATCHDOG=1", b"STOPPING=1"]


def test_notifier_when_not_under_systemd_then_does_nothing() -> None:
    notifier = SystemdNotifier({})

    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.notify("READY=1") is False


def test_notifier_when_nobody_listens_then_returns_false_without_raising(tmp_path: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})

    assert notifier.notify("READY=1") is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "60000000"}, timedelta(seconds=30)),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, timedelta(seconds=30)),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_when_systemd_sets_it_then_is_half_for_this_process_only(
    env: dict[str, str], interval: timedelta | None
) -> None:
    assert SystemdNotifier(env).watchdog_interval == interval
