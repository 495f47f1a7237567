"""The ``synth2real`` command line: one subcommand per job.

Each command only parses options, calls the library function that does the work
(imported lazily so that ``--help`` is instant) and prints what it did. Errors the user
can act on (:class:`~synth2real.errors.Synth2RealError`) are printed without a traceback.
One module per command group: ``data`` (methods, inspect), ``translate``, ``segment``
(train, evaluate), ``pilot`` (pilot, demo); ``common`` holds what they share.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from synth2real.cli import data, pilot, segment, translate
from synth2real.cli.common import console
from synth2real.errors import Synth2RealError

__all__ = ["app", "main"]

app = typer.Typer(
    name="synth2real",
    help=(
        "Make labelled synthetic images look like a few real photos, class by class, "
        "and check on real images that it helps a segmentation model."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
for _name, _command in (
    ("methods", data.methods_cmd),
    ("inspect", data.inspect_cmd),
    ("translate", translate.translate_cmd),
    ("train", segment.train_cmd),
    ("evaluate", segment.evaluate_cmd),
    ("pilot", pilot.pilot_cmd),
    ("demo", pilot.demo_cmd),
):
    app.command(_name)(_command)


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except Synth2RealError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: finished outputs are kept; rerun with --resume to continue"
        )
        sys.exit(130)
