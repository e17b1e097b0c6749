"""Words every room shares: how a cycle ended, how loud an alert is, "every account".

One enum per vocabulary, so the service, the journal, the CLI and Telegram cannot
spell the same fact two ways.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# Every account, where one account's name is expected: what the owner types
# (`/pause all`), and a pause row that holds for every account. No account may be
# called this.
ALL_ACCOUNTS: Final = "all"


class CycleStatus(StrEnum):
    """How a cycle ended. `running` until it is finished (or forever, after a crash)."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    PAUSED = "paused"
    HALTED = "halted"
    DRY_RUN = "dry_run"


# Cycles that ran to the end: the daemon was alive and the exchange answered.
SUCCESSFUL_CYCLES = frozenset({CycleStatus.OK, CycleStatus.DRY_RUN, CycleStatus.PAUSED})


class AlertLevel(StrEnum):
    """How loud an alert is. The owner may mute any level but critical."""

    INFO = "info"
    ACTION = "action"
    WARNING = "warning"
    CRITICAL = "critical"
