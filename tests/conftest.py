"""Suite-wide hygiene: a test leaves the root logger as it found it.

`levbot`'s CLI sets up root log handlers (and a secret filter on them) the way a real
process does; under typer's CliRunner those handlers would outlive the test's stream and
break every later test that logs ("I/O operation on closed file").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

# The session's real PostgreSQL server (started only when a test asks for it).
pytest_plugins = ["tests.support.postgres"]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        # pytest's own capture handlers come and go per phase: not ours to touch.
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
