"""The ``synth2real`` command line: one subcommand per job.

Each command only parses options and calls the library function that does the work
(imported lazily so that ``--help`` is instant). Errors the user can act on
(:class:`~synth2real.errors.Synth2RealError`) are printed without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from synth2real.errors import Synth2RealError

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
console = Console(stderr=True)

# Options shared by every command that opens a dataset.
FormatOpt = Annotated[
    Optional[str],
    typer.Option(
        "--format",
        help="Dataset format (generic, supervisely, cityscapes, gta5, camvid, images); detected when omitted.",
    ),
]
ClassesOpt = Annotated[
    Optional[Path],
    typer.Option("--classes", help="Class spec YAML (names, optional colours, ignore_index)."),
]
ClassMapOpt = Annotated[
    Optional[Path],
    typer.Option("--class-map", help="Class-map YAML mapping this dataset's raw ids/colours onto your classes."),
]


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except Synth2RealError as e:
        console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished outputs are kept; rerun with --resume to continue")
        sys.exit(130)


# ---------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------
@app.command("methods")
def methods_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Show one method's parameters.")] = None,
) -> None:
    """List the translation methods, or one method's parameters and defaults."""
    from rich.table import Table

    from synth2real.methods import describe, list_methods

    out = Console()
    if name is None:
        table = Table(title="translation methods", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("family")
        table.add_column("what it does")
        for n in list_methods():
            from synth2real.methods.registry import get_entry

            e = get_entry(n)
            table.add_row(n, e.family, e.summary)
        out.print(table)
        out.print("[dim]synth2real methods NAME shows a method's parameters[/]")
        return
    entry, params = describe(name)
    out.print(f"[bold]{name}[/] ({entry.family}): {entry.summary}")
    table = Table(show_lines=False)
    table.add_column("parameter", style="bold")
    table.add_column("default")
    table.add_column("type")
    table.add_column("meaning")
    for p in params:
        table.add_row(p.name, repr(p.default), p.annotation, p.doc)
    out.print(table)


# ---------------------------------------------------------------------------------------
# inspect  (data layer)
# ---------------------------------------------------------------------------------------
@app.command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="Dataset folder.")],
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """What a dataset holds: format, samples, sizes, class shares, problems."""
    raise NotImplementedError("inspect: implemented in the data layer")


# ---------------------------------------------------------------------------------------
# translate  (methods + translate runner)
# ---------------------------------------------------------------------------------------
@app.command("translate")
def translate_cmd() -> None:
    """Translate a synthetic dataset towards real reference images."""
    raise NotImplementedError("translate: implemented with the translate runner")


# ---------------------------------------------------------------------------------------
# train / evaluate  (segment)
# ---------------------------------------------------------------------------------------
@app.command("train")
def train_cmd() -> None:
    """Train a segmentation model on a dataset (optionally mixed with real references)."""
    raise NotImplementedError("train: implemented in segment/")


@app.command("evaluate")
def evaluate_cmd() -> None:
    """Score a checkpoint on a labelled real set: per-class IoU, mIoU, confusion matrix."""
    raise NotImplementedError("evaluate: implemented in segment/")


# ---------------------------------------------------------------------------------------
# pilot / demo  (pilot)
# ---------------------------------------------------------------------------------------
@app.command("pilot")
def pilot_cmd() -> None:
    """Run the pilot: translate, train and score every setting, write the HTML report."""
    raise NotImplementedError("pilot: implemented in pilot/")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/demo"),
) -> None:
    """Run the pilot on the embedded toy data (no download, a few minutes on CPU)."""
    raise NotImplementedError("demo: implemented in pilot/")


# ---------------------------------------------------------------------------------------
if __name__ == "__main__":  # pragma: no cover
    main()
