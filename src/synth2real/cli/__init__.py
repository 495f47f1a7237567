"""The ``synth2real`` command line: one subcommand per job.

Each command only parses options, calls the library function that does the work
(imported lazily so that ``--help`` is instant) and prints what it did. Errors the user
can act on (:class:`~synth2real.errors.Synth2RealError`) are printed without a traceback.
One module per command group: ``data`` (methods, inspect), ``translate``, ``segment``
(train, evaluate), ``pilot`` (pilot, demo); ``common`` holds what they share.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from synth2real.cli import data, pilot, segment, translate
from synth2real.cli.common import Interrupted, command, console, plain_warnings
from synth2real.errors import Synth2RealError

__all__ = ["app", "main"]

#: below this many columns rich's option tables cut the option names ("--sour…"), so
#: ``--help`` falls back to click's plain layout, which wraps the descriptions instead
PLAIN_HELP_BELOW = 60


class _NarrowHelp:
    """Plain help below :data:`PLAIN_HELP_BELOW` columns (typer's own switch: no rich
    markup mode), rich tables otherwise."""

    rich_markup_mode: str | None

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's own click types
        mode = self.rich_markup_mode
        if shutil.get_terminal_size().columns < PLAIN_HELP_BELOW:
            self.rich_markup_mode = None
        try:
            super().format_help(ctx, formatter)  # type: ignore[misc]
        finally:
            self.rich_markup_mode = mode


class _Group(_NarrowHelp, TyperGroup):
    pass


class _Command(_NarrowHelp, TyperCommand):
    pass


app = typer.Typer(
    name="synth2real",  # its help is the docstring of _root below
    cls=_Group,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
_RESUME = "rerun with --resume to continue"
_AGAIN = "rerun the same command to continue"
#: (name, function, its output parameter, what Ctrl-C keeps, how to continue)
_COMMANDS = (
    ("methods", data.methods_cmd, None, "", ""),
    ("inspect", data.inspect_cmd, None, "", ""),
    ("translate", translate.translate_cmd, "out", "finished images are kept", _RESUME),
    ("train", segment.train_cmd, "out", "the last saved training state is kept", _AGAIN),
    ("evaluate", segment.evaluate_cmd, "save_predictions", "", ""),
    ("pilot", pilot.pilot_cmd, "out", "finished runs and translations are kept", _RESUME),
    ("demo", pilot.demo_cmd, "out", "finished runs are kept", _AGAIN),
)


def _version(value: bool) -> None:
    if value:
        from synth2real import __version__

        typer.echo(f"synth2real {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """Make labelled synthetic images look like a few real photos, class by class, and
    check on real images that it helps a segmentation model."""


for _name, _fn, _out, _kept, _how in _COMMANDS:
    _hint = f"interrupted: {_kept}; {_how}" if _kept else "interrupted"
    app.command(_name, cls=_Command)(command(_fn, out=_out, hint=_hint, resume=_how))


def main() -> None:
    """Entry point of the console script."""
    plain_warnings()
    try:
        app()
    except Synth2RealError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}")
        sys.exit(2)
    except Interrupted as e:  # a command's own hint, printed once
        console.print(f"[yellow]{escape(e.hint)}[/]")
        sys.exit(130)
    except KeyboardInterrupt:  # before a command started
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit as e:
        if e.code == 130:  # typer turned a Ctrl-C outside a command into a silent exit
            console.print("[yellow]interrupted[/]")
        raise
