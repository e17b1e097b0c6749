"""The `levbot` command (also `python -m bot`)."""

from __future__ import annotations

import logging
from importlib.metadata import version

import typer

from bot.entrypoints import commands
from bot.entrypoints.backtest_command import backtest
from bot.entrypoints.paper_exchange_command import paper_exchange

app = typer.Typer(
    name="levbot",
    help="Keeps leveraged crypto-derivative positions at the leverage their owner chose.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: readable at 80 columns, option names never cut, no `<bool>`
    # shown after a flag that takes no value.
    rich_markup_mode=None,
)
app.command("run")(commands.run)
app.command("check")(commands.check)
app.command("plan")(commands.plan)
app.command("status")(commands.status)
app.command("history")(commands.history)
app.command("health")(commands.health_command)
app.command("backtest")(backtest)
app.command("paper-exchange")(paper_exchange)


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
