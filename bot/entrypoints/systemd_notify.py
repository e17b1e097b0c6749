"""systemd's notify protocol (sd_notify), spoken directly: no dependency for one datagram.

Under `Type=notify` systemd sets `NOTIFY_SOCKET` (a unix datagram socket path, or an
abstract one written with a leading '@') and, with `WatchdogSec=`, `WATCHDOG_USEC` (and
`WATCHDOG_PID`). Outside systemd nothing is set and every call does nothing, so the
daemon calls these unconditionally. A failed send is logged, never raised: the daemon's
work matters more than its supervisor hearing about it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from datetime import timedelta

logger = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> None:
        self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def notify(self, *fields: str) -> bool:
        """Send `fields` (one `KEY=value` a line) in one datagram; True when sent."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
        except OSError as error:
            logger.warning("sd_notify %s failed: %s", fields[0] if fields else "", error)
            return False
        return True


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        # Linux abstract namespace: the name follows a NUL byte, not a file path.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # vsock and other transports systemd may name here are not spoken: stay silent.
    return None


def _watchdog_interval(env: Mapping[str, str]) -> timedelta | None:
    """How often to feed the watchdog (half its timeout, as sd_watchdog_enabled advises),
    or None when there is no watchdog or it watches another process."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return timedelta(microseconds=int(usec) / 2)
