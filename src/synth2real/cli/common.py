"""What the commands of the CLI share: the error console, the dataset options, helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

#: status lines and errors, on stderr; never wrapped, so a path in a message stays whole
#: whatever the terminal's width
console = Console(stderr=True, soft_wrap=True)

# Options shared by every command that opens a dataset.
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Dataset format (generic, supervisely, cityscapes, gta5, camvid, images); detected when omitted.",
    ),
]
ClassesOpt = Annotated[
    Path | None,
    typer.Option("--classes", help="Class spec YAML (names, optional colours, ignore_index)."),
]
ClassMapOpt = Annotated[
    Path | None,
    typer.Option(
        "--class-map",
        help="Class-map YAML mapping this dataset's raw ids/colours onto your classes.",
    ),
]


def show_library_log() -> None:
    """Print the library's log lines (``synth2real.*``, INFO and up) on the console:
    e.g. which device, dtype and model a diffusion method loaded, once, and a warning
    when it runs on the CPU."""
    import logging

    from rich.markup import escape

    class _ConsoleHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = escape(record.getMessage())
            if record.levelno >= logging.WARNING:
                console.print(f"[bold yellow]warning:[/] {msg}")
            else:
                console.print(f"[dim]{msg}[/]")

    logger = logging.getLogger("synth2real")
    if not any(type(h).__name__ == "_ConsoleHandler" for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def omp_passive() -> None:
    """Let idle OpenMP threads sleep instead of spinning (set before torch loads).

    On CPUs shared with other jobs, spinning threads slow torch down by 10-50x; on a
    quiet machine the cost is a few percent. ``OMP_WAIT_POLICY`` set by the user wins.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
