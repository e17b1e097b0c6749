"""The `levbot` command (also `python -m bot`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    # The Click that typer vendors: what `typer.main.get_command` returns.
    from typer._click import Command

Handler = Callable[..., Any]


# Each command's module is imported only when that command is asked for: `levbot
# backtest` must not pay ~2.5 s for the daemon's stack (SQLAlchemy, alembic, Telegram,
# ccxt, aiohttp) that a replay never uses. Plain imports in functions, so the layout
# test still sees (and checks) every one of them.
def _run() -> Handler:
    from bot.entrypoints.commands import run

    return run


def _check() -> Handler:
    from bot.entrypoints.commands import check

    return check


def _plan() -> Handler:
    from bot.entrypoints.commands import plan

    return plan


def _status() -> Handler:
    from bot.entrypoints.commands import status

    return status


def _history() -> Handler:
    from bot.entrypoints.commands import history

    return history


def _health() -> Handler:
    from bot.entrypoints.commands import health_command

    return health_command


def _backtest() -> Handler:
    from bot.entrypoints.backtest_command import backtest

    return backtest


def _paper_exchange() -> Handler:
    from bot.entrypoints.paper_exchange_command import paper_exchange

    return paper_exchange


# In the order `levbot --help` lists them.
COMMANDS: dict[str, Callable[[], Handler]] = {
    "run": _run,
    "check": _check,
    "plan": _plan,
    "status": _status,
    "history": _history,
    "health": _health,
    "backtest": _backtest,
    "paper-exchange": _paper_exchange,
}


class _LazyCommands(MutableMapping[str, "Command"]):
    """The group's command table: every name is known at once (for `Did you mean`),
    a command is built from its module the first time it is looked up."""

    def __init__(self, loaders: Mapping[str, Callable[[], Handler]]) -> None:
        self._loaders = dict(loaders)
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            handler = self._loaders[name]()
            single = typer.Typer(rich_markup_mode=None, add_completion=False)
            single.command(name)(handler)
            self._built[name] = typer.main.get_command(single)
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command
        self._loaders.setdefault(name, _already_built)

    def __delitem__(self, name: str) -> None:
        del self._loaders[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def _already_built() -> Handler:
    raise AssertionError("a command added as a Click command is never loaded")


class _LazyGroup(TyperGroup):
    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(COMMANDS)


app = typer.Typer(
    name="levbot",
    help="Keeps leveraged crypto-derivative positions at the leverage their owner chose.",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: readable at 80 columns, option names never cut, no `<bool>`
    # shown after a flag that takes no value.
    rich_markup_mode=None,
)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"levbot {version('levbot')}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug lines."),
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    app()
